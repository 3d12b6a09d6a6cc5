"""Spectral Signatures: poisoned training samples stand out along the top singular direction.

Tran, Li & Madry, "Spectral Signatures in Backdoor Attacks", NeurIPS 2018. Algorithm 1 (Sec. 4):
for each label ``y``, take the learned representations ``R`` of the samples labelled ``y`` (here the
last hidden layer: the input of the final Linear layer), centre them, compute the top right singular
vector ``v`` of the centred matrix, score every sample by its squared projection
``tau_i = ((R_i - mean(R)) . v)^2``, and remove the ``1.5 * eps * n_y`` samples with the highest
scores; retrain on the rest.

``eps`` is the defender's assumed upper bound on the fraction of poisoned samples *within a class*,
as in the paper (which poisons 5% or 10% of the target class and removes 1.5x that many). With an
all-to-one attack that poisons a fraction ``r`` of the whole training set of ``K`` balanced classes,
the target class holds ``r K / (1 + r K)`` poisons (0.5 for ``r = 0.1``, ``K = 10``); pass that as
``eps``. The method's guarantee needs the poisons to be a minority of their class: near 50% the two
halves project symmetrically and the squared score cannot tell them apart (docs/defenses.md).

Default budget (``eps="auto"``, with ``orient="loss"``): the paper's budget, ``eps = 0.1``, in
every class where nothing marks the class, and ``eps = 0.5`` in a class where the loss rule fires
(below): an all-to-one attack on 10% of a 10-class set -- the project's default attack run and
poison-rate convention -- puts 50% poison in its target class, which no fixed 0.1 budget can remove
(the old default, ``eps=0.1, orient="none"``, left the default run's ASR at 0.993). The loss rule's
threshold (0.45) was calibrated on clean models only, for Activation Clustering's clusters; on this
split (top singular direction) it was checked on clean models as well (docs/defenses.md, "Defaults
on the default run"), where no class reached it, so every class gets the paper's budget. Pass a number as ``eps`` for the
paper's fixed per-class budget (``eps=0.1, orient="none"`` is the paper's form; ``eps="auto"`` with
``orient="none"`` keeps the paper's squared score and uses the loss rule for the budget only). The result's
``verdict`` says where the rule fired and which budget was used, or that it found nothing.

Deviations: ``labels="predicted"`` groups by the model's predictions instead of the given labels;
the representation layer can be the last conv map (``layer="features"``). ``orient="loss"`` (ours,
the default) handles poisons that are half of their class: the projections on ``v`` are split
in two by 1-D 2-means, and when the two groups' median loss quantiles (each sample's training loss
ranked in the whole set, :func:`.features.loss_quantiles`) differ by at least ``loss_gap`` (the
threshold calibrated for Activation Clustering's loss rule), the score becomes the *signed*
projection pointing at the tightly fitted group -- backdoor samples are fitted far tighter than
clean ones (Li et al., NeurIPS 2021). Otherwise the paper's squared score is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...data.core import ImageData
from ...errors import ConfigError
from ..base import DEFENSES, BudgetSanitizer
from ..features import (
    class_groups,
)
from .activation_clustering import LOSS_GAP, kmeans

ORIENTS = ("none", "loss")
# Budgets of eps="auto" (per class, as a fraction of the class): the paper's 10% where nothing marks a
# class, and the project's poison-rate convention where the loss rule marks one: an all-to-one attack
# on 10% of a 10-class set puts r K / (1 + r K) = 50% poison in its target class (docs/defenses.md).


def loss_split(
    p: torch.Tensor, quantiles: torch.Tensor, loss_gap: float = LOSS_GAP
) -> tuple[torch.Tensor | None, float]:
    """1-D 2-means of projections ``p`` ``(n,)``; the low-loss side (bool ``(n,)``) if the two sides'
    median loss quantiles differ by at least ``loss_gap`` (else ``None``), and that difference."""
    if len(p) < 4:
        return None, 0.0
    side, _ = kmeans(p.unsqueeze(1), 2, n_init=2)
    if not (bool((side == 0).any()) and bool((side == 1).any())):
        return None, 0.0
    q0, q1 = (float(quantiles[side == j].median()) for j in (0, 1))
    gap = abs(q0 - q1)
    if gap < loss_gap:
        return None, gap
    return side == int(q1 < q0), gap


def top_projection(reps: torch.Tensor) -> torch.Tensor:
    """Projection ``(n,)`` of centred representations ``(n, D)`` on their top right singular vector."""
    r = reps.double() - reps.double().mean(0, keepdim=True)
    _, _, vh = torch.linalg.svd(r, full_matrices=False)
    return r @ vh[0]


def spectral_scores_and_gap(
    reps: torch.Tensor,
    quantiles: torch.Tensor | None = None,
    loss_gap: float = LOSS_GAP,
    orient: bool = True,
) -> tuple[torch.Tensor, bool, float]:
    """Spectral scores ``(n,)``, whether the loss rule fired, and the two sides' loss gap.

    With ``orient`` the scores are oriented towards the low-loss side where the rule fires;
    without, the rule is only reported (the paper's squared score is kept).
    """
    if len(reps) < 2:
        return torch.zeros(len(reps)), False, 0.0
    p = top_projection(reps)
    if quantiles is not None:
        low, gap = loss_split(p, quantiles, loss_gap)
        if low is not None and not orient:
            return (p**2).float(), True, gap
        if low is not None:
            sign = 1.0 if float(p[low].mean()) > float(p[~low].mean()) else -1.0
            sp = sign * p
            return ((sp - sp.min()) ** 2).float(), True, gap
        return (p**2).float(), False, gap
    return (p**2).float(), False, 0.0


def spectral_scores(
    reps: torch.Tensor, quantiles: torch.Tensor | None = None, loss_gap: float = LOSS_GAP
) -> torch.Tensor:
    """Squared projection ``(n,)`` of centred representations ``(n, D)`` on their top right singular vector.

    With per-sample loss ``quantiles`` ``(n,)``: the signed projection towards the lower-loss side
    (shifted to be >= 0, then squared) when the two sides' median quantiles differ by ``loss_gap``.
    """
    return spectral_scores_and_gap(reps, quantiles, loss_gap)[0]


@DEFENSES.register(
    "spectral-signatures",
    "Spectral Signatures (Tran et al. NeurIPS 2018): squared top-singular-vector projection, data sanitiser",
    paper='Tran, Li & Madry, "Spectral Signatures in Backdoor Attacks", NeurIPS 2018',
    aliases=("ss", "spectral"),
)
@dataclass(kw_only=True)
class SpectralSignatures(BudgetSanitizer):
    """Tran et al. 2018: per class, remove the 1.5*eps*n samples with the largest spectral score.

    Options: ``eps``, ``removal_factor`` (:class:`BudgetSanitizer`), ``layer``, ``labels``,
    ``batch_size`` (:class:`SanitizerOptions`), and ``orient``, ``loss_gap`` below.
    """

    orient: str = "loss"
    loss_gap: float = LOSS_GAP
    name = "spectral-signatures"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.orient not in ORIENTS:
            raise ConfigError(
                f"spectral-signatures: bad orient {self.orient!r}: expected one of {', '.join(ORIENTS)}"
            )
        self.loss_gap = float(self.loss_gap)

    def _scored(self, model: nn.Module, train: ImageData) -> tuple[torch.Tensor, torch.Tensor]:
        """Spectral scores (divided by their class median) and the labels they were grouped by."""
        need_q = self.orient == "loss" or self.eps_given is None  # the loss rule orients or budgets
        reps, labels, q = self.features(model, train, need_q)
        out = torch.zeros(len(train))
        self.report = {}
        for idx in class_groups(labels):
            s, fired, gap = spectral_scores_and_gap(
                reps[idx], None if q is None else q[idx], self.loss_gap, self.orient == "loss"
            )
            out[idx] = s / s.median().clamp_min(1e-12)
            self.report[str(int(labels[idx[0]]))] = {"loss_rule": float(fired), "loss_gap": gap}
        return out, labels

    def loss_rule_checked(self) -> bool:
        """The loss rule runs when it orients the scores or sets the budget."""
        return self.orient == "loss" or self.eps_given is None

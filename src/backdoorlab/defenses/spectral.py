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

Deviations: ``labels="predicted"`` groups by the model's predictions instead of the given labels;
the representation layer can be the last conv map (``layer="features"``).
"""

from __future__ import annotations

import torch
from torch import nn

from ..data.core import ImageData
from ..errors import ConfigError
from .base import DEFENSES, DataSanitizer
from .features import activations, budget_keep_mask, class_groups, sanitizer_labels


def spectral_scores(reps: torch.Tensor) -> torch.Tensor:
    """Squared projection ``(n,)`` of centred representations ``(n, D)`` on their top right singular vector."""
    if len(reps) < 2:
        return torch.zeros(len(reps))
    r = reps.double() - reps.double().mean(0, keepdim=True)
    _, _, vh = torch.linalg.svd(r, full_matrices=False)
    return ((r @ vh[0]) ** 2).float()


@DEFENSES.register(
    "spectral-signatures",
    "Spectral Signatures (Tran et al. NeurIPS 2018): squared top-singular-vector projection, data sanitiser",
)
class SpectralSignatures(DataSanitizer):
    """Tran et al. 2018: per class, remove the 1.5*eps*n samples with the largest spectral score."""

    name = "spectral-signatures"

    def __init__(
        self,
        eps: float = 0.1,
        removal_factor: float = 1.5,
        layer: str = "hidden",
        labels: str = "given",
        batch_size: int = 1024,
    ) -> None:
        if not 0 < eps <= 1:
            raise ConfigError(f"spectral-signatures: eps must be in (0, 1], got {eps}")
        if removal_factor <= 0:
            raise ConfigError(
                f"spectral-signatures: removal_factor must be > 0, got {removal_factor}"
            )
        self.eps = float(eps)
        self.removal_factor = float(removal_factor)
        self.layer = layer
        self.labels = labels
        self.batch_size = int(batch_size)

    def _scored(self, model: nn.Module, train: ImageData) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores and the labels they were grouped by (one pass for both)."""
        reps = activations(model, train.x, self.layer, self.batch_size)
        labels = sanitizer_labels(model, train, self.labels, self.batch_size)
        out = torch.zeros(len(train))
        for idx in class_groups(labels):
            s = spectral_scores(reps[idx])
            out[idx] = s / s.median().clamp_min(1e-12)
        return out, labels

    def score(self, model: nn.Module, train: ImageData) -> torch.Tensor:
        """Per-sample score ``(N,)``: the squared projection, divided by its class median for comparability."""
        return self._scored(model, train)[0]

    def keep_mask(self, model: nn.Module, train: ImageData) -> torch.Tensor:
        """Bool ``(N,)``: drop the ``ceil(removal_factor * eps * n_c)`` top scores of each class."""
        scores, labels = self._scored(model, train)
        return budget_keep_mask(scores, labels, min(1.0, self.removal_factor * self.eps))

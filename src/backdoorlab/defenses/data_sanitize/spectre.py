"""SPECTRE: robust whitening plus quantum-entropy (QUE) outlier scores for poisoned samples.

Hayase, Kong, Somani & Oh, "SPECTRE: Defending Against Backdoor Attacks Using Robust Statistics",
ICML 2021. Per label (Algorithm 1, Sec. 3):

1. *Dimensionality reduction*: project the centred representations (last hidden layer) on their top
   ``k`` right singular vectors.
2. *Robust covariance estimation* (Sec. 3.2): estimate the mean ``mu`` and covariance ``Sigma`` of
   the clean part despite an ``eps`` fraction of outliers.
3. *Whitening*: ``z_i = Sigma^{-1/2} (h_i - mu)``; the clean part becomes isotropic while the
   poison's direction keeps excess variance (the spectral signature is amplified).
4. *QUE score* (Sec. 3.3, from Dong, Hopkins & Li, NeurIPS 2019): with ``S`` the second moment of
   the whitened data, ``Q = exp(alpha (S - I) / (||S||_2 - 1))`` and
   ``tau_i = z_i^T Q z_i / tr(Q)``; ``alpha = 4`` as in the paper (``alpha = 0`` gives the
   Mahalanobis norm, ``alpha -> inf`` the squared projection on the top direction).
5. Remove the ``1.5 * eps * n`` samples with the highest scores.

``eps`` is, as in the paper and in Spectral Signatures, the assumed fraction of poisoned samples
within a class (see :mod:`.spectral` for the conversion from a training-set poison rate).

Default budget (``eps="auto"``): as for :mod:`.spectral`, ``eps = 0.1`` (the papers' rate) in
every class, except ``eps = 0.5`` (robust trimming capped at 0.49, budget 75% of the class) in a
class whose top singular direction splits it into two sides with median training-loss quantiles
at least 0.45 apart (the loss rule of Activation Clustering and Spectral Signatures, calibrated on
clean models only): the project's convention (10% of the set, all-to-one = half of the target
class). With the old fixed ``eps=0.1`` the default run kept its backdoor (ASR 0.993 after
retraining). A number as ``eps`` restores the paper's fixed per-class budget.

Deviations: the robust estimator is an iterative trimming (concentration steps of the minimum
covariance determinant, Rousseeuw & Van Driessen 1999): start from the coordinate-wise median and
the full covariance, keep the ``(1 - 1.5 eps) n`` points of smallest Mahalanobis distance, re-estimate,
repeat ``robust_iters`` times; the paper uses the filtering algorithm of Diakonikolas et al. (2017).
``k`` defaults to 32 (our choice; the paper treats the projection dimension as a parameter). No estimator of this kind
works once the poisons are half of their class (breakdown point 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...data.core import ImageData
from ...errors import ConfigError
from ..base import DEFENSES, EPS_HALF, EPS_PAPER, BudgetSanitizer
from ..features import (
    class_groups,
)
from .activation_clustering import LOSS_GAP
from .spectral import loss_split, top_projection


def _sym_pow(m: torch.Tensor, p: float, floor: float = 1e-8) -> torch.Tensor:
    """``m ** p`` of a symmetric positive semi-definite matrix via its eigendecomposition."""
    w, v = torch.linalg.eigh(m)
    return (v * w.clamp_min(floor * w.abs().max().clamp_min(1e-30)).pow(p)) @ v.T


def robust_mean_cov(
    z: torch.Tensor, trim: float, iters: int = 10
) -> tuple[torch.Tensor, torch.Tensor]:
    """Trimmed (MCD concentration-step) estimate of mean ``(k,)`` and covariance ``(k, k)`` of ``z``."""
    n, k = z.shape
    h = max(k + 1, round((1 - trim) * n))
    mu = z.median(0).values
    cov = torch.cov(z.T).reshape(k, k)
    for _ in range(iters):
        inv = _sym_pow(cov + 1e-6 * torch.eye(k, dtype=z.dtype), -1.0)
        d = ((z - mu) @ inv * (z - mu)).sum(1)
        keep = torch.topk(-d, min(h, n)).indices
        sub = z[keep]
        mu = sub.mean(0)
        cov = torch.cov(sub.T).reshape(k, k)
    return mu, cov


def que_scores(z: torch.Tensor, alpha: float = 4.0) -> torch.Tensor:
    """Quantum-entropy outlier scores ``(n,)`` of whitened points ``z`` ``(n, k)``."""
    n, k = z.shape
    s = z.T @ z / max(n, 1)
    if alpha == 0:
        return (z * z).sum(1) / k
    top = torch.linalg.eigvalsh(s)[-1]
    m = alpha * (s - torch.eye(k, dtype=z.dtype)) / (top - 1).clamp_min(1e-6)
    q = torch.linalg.matrix_exp(m)
    return ((z @ q) * z).sum(1) / torch.trace(q)


def spectre_scores(
    reps: torch.Tensor,
    eps: float,
    k: int = 32,
    alpha: float = 4.0,
    removal_factor: float = 1.5,
    iters: int = 10,
) -> torch.Tensor:
    """SPECTRE QUE scores ``(n,)`` for the representations ``(n, D)`` of one class."""
    n = len(reps)
    if n < 3:
        return torch.zeros(n)
    r = reps.double() - reps.double().mean(0, keepdim=True)
    kk = max(1, min(k, n - 2, r.shape[1]))
    _, _, vh = torch.linalg.svd(r, full_matrices=False)
    z = r @ vh[:kk].T
    mu, cov = robust_mean_cov(z, min(0.49, removal_factor * eps), iters)
    zw = (z - mu) @ _sym_pow(
        cov + 1e-9 * torch.eye(kk, dtype=z.dtype) * cov.diagonal().mean(), -0.5
    )
    return que_scores(zw, alpha).float()


@DEFENSES.register(
    "spectre",
    "SPECTRE (Hayase et al. ICML 2021): robust whitening + QUE scores, data sanitiser",
    paper='Hayase, Kong, Somani & Oh, "SPECTRE: Defending Against Backdoor Attacks Using Robust Statistics", ICML 2021',
)
@dataclass(kw_only=True)
class Spectre(BudgetSanitizer):
    """Hayase et al. 2021 SPECTRE: per class, remove the 1.5*eps*n samples with the largest QUE score.

    Options: ``eps``, ``removal_factor`` (:class:`BudgetSanitizer`), ``layer``, ``labels``,
    ``batch_size`` (:class:`SanitizerOptions`), and ``k``, ``alpha``, ``robust_iters``, ``loss_gap`` (of ``eps="auto"``) below.
    """

    k: int = 32
    alpha: float = 4.0
    robust_iters: int = 10
    loss_gap: float = LOSS_GAP
    name = "spectre"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.k < 1:
            raise ConfigError(f"spectre: k must be >= 1, got {self.k}")
        if self.alpha < 0:
            raise ConfigError(f"spectre: alpha must be >= 0, got {self.alpha}")
        self.k = int(self.k)
        self.alpha = float(self.alpha)
        self.robust_iters = int(self.robust_iters)
        self.loss_gap = float(self.loss_gap)

    def _scored(self, model: nn.Module, train: ImageData) -> tuple[torch.Tensor, torch.Tensor]:
        """QUE scores (divided by their class median) and the labels they were grouped by.

        With ``eps="auto"`` each class's ``eps`` (robust trimming and budget) is ``EPS_HALF`` where
        the loss rule fires on its top singular direction (:func:`.spectral.loss_split`), else
        ``EPS_PAPER``.
        """
        reps, labels, q = self.features(model, train, self.eps_given is None)
        out = torch.zeros(len(train))
        self.report = {}
        for idx in class_groups(labels):
            fired, gap = False, 0.0
            if q is not None and len(idx) >= 4:
                low, gap = loss_split(top_projection(reps[idx]), q[idx], self.loss_gap)
                fired = low is not None
            e = self.eps_given if self.eps_given is not None else (EPS_HALF if fired else EPS_PAPER)
            s = spectre_scores(
                reps[idx], e, self.k, self.alpha, self.removal_factor, self.robust_iters
            )
            out[idx] = s / s.median().clamp_min(1e-12)
            self.report[str(int(labels[idx[0]]))] = {
                "loss_rule": float(fired),
                "loss_gap": gap,
                "budget_eps": e,
            }
        return out, labels

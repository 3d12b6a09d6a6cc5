"""The four defense protocols, one per point where a defender can act.

A defense knows only what a real defender has: the model, the clean samples it is given and, for
sanitisers, the (possibly poisoned) training set. It never sees the trigger, poisoned test data or
the true poison indices; those are only for scoring it afterwards (``metrics.detection``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from ..data.core import ImageData
from ..records import ScanResult
from ..registry import Registry
from ..train.loop import TrainSpec

DEFENSES: Registry[Any] = Registry("defenses")


class ModelDetector:
    """Scan a model with a few clean samples: is it backdoored, and towards which class?"""

    family: ClassVar[str] = "model-scan"
    name = "model-detector"

    def scan(self, model: nn.Module, clean: ImageData) -> ScanResult:
        """Return a ``ScanResult``; ``clean`` holds a few clean images per class (labels may be predictions)."""
        raise NotImplementedError


class InputDetector:
    """Flag triggered inputs at run time. ``fit`` on clean data sets the threshold at a chosen FRR."""

    family: ClassVar[str] = "input-detection"
    name = "input-detector"
    threshold: float | None = None

    def fit(self, model: nn.Module, clean: ImageData, frr: float = 0.01) -> InputDetector:
        """Prepare on clean samples; sets ``threshold`` so that a fraction ``frr`` of them is flagged."""
        raise NotImplementedError

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Suspicion ``(N,)`` of inputs ``x``; higher means more likely triggered."""
        raise NotImplementedError

    def flag(self, x: torch.Tensor) -> torch.Tensor:
        """Bool ``(N,)``: score above the threshold set by ``fit``."""
        if self.threshold is None:
            raise RuntimeError(f"{self.name}: call fit() before flag()")
        return self.score(x) > self.threshold


class DataSanitizer:
    """Score every training sample for suspicion and propose a keep-mask."""

    family: ClassVar[str] = "data-sanitize"
    name = "data-sanitizer"

    def score(self, model: nn.Module, train: ImageData) -> torch.Tensor:
        """Suspicion ``(N,)`` per training sample; higher means more likely poisoned."""
        raise NotImplementedError

    def keep_mask(self, model: nn.Module, train: ImageData) -> torch.Tensor:
        """Bool ``(N,)`` of samples to keep."""
        raise NotImplementedError

    def score_and_keep(
        self, model: nn.Module, train: ImageData
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores and keep-mask together; sanitisers whose mask follows from their scores do the work once."""
        return self.score(model, train), self.keep_mask(model, train)


class BudgetSanitizer(DataSanitizer):
    """A sanitiser that scores per class and drops the ``ceil(removal_factor * eps * n_c)`` top scores.

    Subclasses set ``eps`` and ``removal_factor`` and implement ``_scored`` (scores and the labels
    they were grouped by, from one pass over the training set).
    """

    eps: float
    removal_factor: float

    def _scored(self, model: nn.Module, train: ImageData) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def score(self, model: nn.Module, train: ImageData) -> torch.Tensor:
        """Per-sample score ``(N,)``, divided by its class median for comparability."""
        return self._scored(model, train)[0]

    def keep_mask(self, model: nn.Module, train: ImageData) -> torch.Tensor:
        """Bool ``(N,)``: drop the ``ceil(removal_factor * eps * n_c)`` top scores of each class."""
        return self.score_and_keep(model, train)[1]

    def score_and_keep(
        self, model: nn.Module, train: ImageData
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores and the budget keep-mask from one scoring pass."""
        from .features import budget_keep_mask

        scores, labels = self._scored(model, train)
        return scores, budget_keep_mask(scores, labels, min(1.0, self.removal_factor * self.eps))


class ModelRepair:
    """Remove a backdoor from a model using a few clean samples."""

    family: ClassVar[str] = "model-repair"
    name = "model-repair"

    def repair(self, model: nn.Module, clean: ImageData) -> nn.Module:
        """Return a repaired copy of ``model`` (the input is left untouched)."""
        raise NotImplementedError


def finetune_spec(defense: Any, epochs: int) -> TrainSpec:
    """The ``TrainSpec`` of a repair's fine-tuning from its ``lr``, ``batch_size``, ``optimizer``,
    ``seed`` and ``device`` options (the schedule is ``TrainSpec``'s default), without a progress bar."""
    return TrainSpec(
        epochs=epochs,
        batch_size=defense.batch_size,
        lr=defense.lr,
        optimizer=defense.optimizer,
        seed=defense.seed,
        device=defense.device,
        progress=False,
    )

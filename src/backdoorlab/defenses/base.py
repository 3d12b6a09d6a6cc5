"""The four defense protocols, one per point where a defender can act.

A defense knows only what a real defender has: the model, the clean samples it is given and, for
sanitisers, the (possibly poisoned) training set. It never sees the trigger, poisoned test data or
the true poison indices; those are only for scoring it afterwards (``metrics.detection``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ..config import Configurable
from ..data.core import ImageData
from ..errors import ConfigError
from ..records import ScanResult
from ..registry import Registry
from ..train.loop import TrainSpec
from .features import EPS_HALF, EPS_PAPER, auto_budget_keep, budget_verdict

DEFENSES: Registry[Any] = Registry("defenses")


class ModelDetector(Configurable):
    """Scan a model with a few clean samples: is it backdoored, and towards which class?"""

    family: ClassVar[str] = "model-scan"
    name = "model-detector"

    def scan(self, model: nn.Module, clean: ImageData) -> ScanResult:
        """Return a ``ScanResult``; ``clean`` holds a few clean images per class (labels may be predictions)."""
        raise NotImplementedError


class InputDetector(Configurable):
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


class DataSanitizer(Configurable):
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


def parse_eps(name: str, eps: float | str | None) -> float | None:
    """``eps`` option: ``"auto"`` (``None``) or a number in (0, 1]; a clear error otherwise."""
    if eps is None or (isinstance(eps, str) and eps.strip().lower() == "auto"):
        return None
    try:
        e = float(eps)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{name}: eps must be 'auto' or a number in (0, 1], got {eps!r}"
        ) from None
    if not 0 < e <= 1:
        raise ConfigError(f"{name}: eps must be in (0, 1], got {e}")
    return e


@dataclass(kw_only=True)
class SanitizerOptions:
    """Options every feature-based sanitiser shares: which ``layer``'s activations, which
    ``labels`` group the samples ("given" or "predicted"), and the forward ``batch_size``."""

    layer: str = "hidden"
    labels: str = "given"
    batch_size: int = 1024


@dataclass(kw_only=True)
class BudgetSanitizer(SanitizerOptions, DataSanitizer):
    """A sanitiser that scores per class and drops the ``ceil(removal_factor * eps * n_c)`` top scores.

    Options: ``eps`` (the assumed poison fraction) and ``removal_factor``, checked here. Subclasses
    implement ``_scored`` (scores and the labels they were grouped by, from one pass over the
    training set).
    """

    eps: float | str = "auto"
    removal_factor: float = 1.5
    eps_given: float | None = field(default=None, init=False, repr=False, compare=False)
    report: dict[str, dict[str, float]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    verdict: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.eps_given = parse_eps(self.name, self.eps)
        self.eps = "auto" if self.eps_given is None else self.eps_given
        if self.removal_factor <= 0:
            raise ConfigError(f"{self.name}: removal_factor must be > 0, got {self.removal_factor}")
        self.removal_factor = float(self.removal_factor)
        self.batch_size = int(self.batch_size)

    def _scored(self, model: nn.Module, train: ImageData) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def score(self, model: nn.Module, train: ImageData) -> torch.Tensor:
        """Per-sample score ``(N,)``, divided by its class median for comparability."""
        return self._scored(model, train)[0]

    def keep_mask(self, model: nn.Module, train: ImageData) -> torch.Tensor:
        """Bool ``(N,)``: drop the ``ceil(removal_factor * eps * n_c)`` top scores of each class."""
        return self.score_and_keep(model, train)[1]

    def features(
        self, model: nn.Module, train: ImageData, need_loss: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Representations ``(N, D)``, the labels they are grouped by, and (``need_loss``) each
        sample's training-loss quantile, from one forward pass."""
        from .features import activations, loss_quantiles, reps_and_logits, sanitizer_labels

        if need_loss or self.labels == "predicted":
            reps, logits = reps_and_logits(model, train.x, self.layer, self.batch_size)
            labels = sanitizer_labels(model, train, self.labels, self.batch_size, logits)
            q = loss_quantiles(logits, train.y)[1] if need_loss else None
            return reps, labels, q
        reps = activations(model, train.x, self.layer, self.batch_size)
        return reps, sanitizer_labels(model, train, self.labels, self.batch_size), None

    def loss_rule_checked(self) -> bool:
        """Whether the loss rule ran (it sets ``eps="auto"``'s per-class budget)."""
        return self.eps_given is None

    def score_and_keep(
        self, model: nn.Module, train: ImageData
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores and the keep-mask (per-class budget: fixed ``eps``, or ``"auto"``) from one pass;
        ``report`` gets each class's budget and ``verdict`` one sentence."""
        scores, labels = self._scored(model, train)
        fired = {int(c): bool(r.get("loss_rule")) for c, r in self.report.items()}
        keep = auto_budget_keep(scores, labels, fired, self.eps_given, self.removal_factor)
        for c, r in self.report.items():
            r["budget_eps"] = self.eps_given or (EPS_HALF if fired[int(c)] else EPS_PAPER)
        n_removed = int((~keep).sum())
        checked = self.loss_rule_checked()
        self.verdict = budget_verdict(self.name, self.eps_given, self.report, n_removed, checked)
        return scores, keep


class ModelRepair(Configurable):
    """Remove a backdoor from a model using a few clean samples."""

    family: ClassVar[str] = "model-repair"
    name = "model-repair"

    def repair(self, model: nn.Module, clean: ImageData) -> nn.Module:
        """Return a repaired copy of ``model`` (the input is left untouched)."""
        raise NotImplementedError


@dataclass(kw_only=True)
class RepairOptions:
    """Options every training-based repair shares: mini-``batch_size``, ``seed`` and ``device``."""

    batch_size: int = 32
    seed: int = 0
    device: str = "auto"


@dataclass(kw_only=True)
class FinetuneOptions(RepairOptions):
    """Options of a repair that fine-tunes the model on the clean samples: ``lr`` and ``optimizer``
    besides batch size, seed and device (the schedule is ``TrainSpec``'s default)."""

    lr: float = 1e-2
    optimizer: str = "adam"

    def finetune_spec(self, epochs: int, **overrides: Any) -> TrainSpec:
        """The ``TrainSpec`` of ``epochs`` of fine-tuning with these options, without a progress
        bar; ``overrides`` replace other ``TrainSpec`` fields (e.g. ``scheduler``)."""
        spec: dict[str, Any] = dict(
            epochs=epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            optimizer=self.optimizer,
            seed=self.seed,
            device=self.device,
            progress=False,
        )
        spec.update(overrides)
        return TrainSpec(**spec)

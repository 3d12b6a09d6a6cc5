"""Data-poisoning attacks: target mappings, the ``PoisonedData`` result and the generic poisoner.

Terminology follows the survey "Deep Learning Backdoors" (Li, Ma, Xue, Zhao): all-to-one,
all-to-all (``y -> (y + 1) mod K``) and source-specific targets; dirty-label (relabel the poisoned
samples) and clean-label (poison only target-class samples, keep their labels).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from ..config import Configurable, nested, resolve_nested
from ..data.core import ImageData
from ..errors import ConfigError
from ..registry import Registry
from ..triggers.base import TRIGGERS, Trigger
from ..triggers.patch import PatchTrigger
from ..utils import make_generator

ATTACKS: Registry[Any] = Registry("attacks")

MODES = ("all-to-one", "all-to-all", "source-specific")


@dataclass(frozen=True)
class TargetMap:
    """Which test labels the backdoor should produce: ``target(y)``, and which samples it applies to.

    Example:
        >>> tm = TargetMap("all-to-all", num_classes=3)
        >>> tm(torch.tensor([0, 1, 2])).tolist()
        [1, 2, 0]
    """

    mode: str = "all-to-one"
    target: int = 0
    num_classes: int = 10
    sources: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"bad target mode {self.mode!r}: expected one of {', '.join(MODES)}")
        if self.num_classes < 2:
            raise ConfigError(f"need at least 2 classes, got {self.num_classes}")
        if self.mode != "all-to-all" and not 0 <= self.target < self.num_classes:
            raise ConfigError(
                f"target {self.target} out of range: the data has classes 0..{self.num_classes - 1}"
            )
        if self.mode == "source-specific":
            if not self.sources:
                raise ConfigError("source-specific mode needs at least one source class")
            bad = [s for s in self.sources if not 0 <= s < self.num_classes or s == self.target]
            if bad:
                raise ConfigError(
                    f"bad source classes {bad}: need 0..{self.num_classes - 1}, not the target {self.target}"
                )

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        """The backdoor's label for each true label in ``y``."""
        if self.mode == "all-to-all":
            return (y + 1) % self.num_classes
        return torch.full_like(y, self.target)

    def eligible(self, y: torch.Tensor) -> torch.Tensor:
        """Bool mask of samples the backdoor should flip (true label differs from its target)."""
        if self.mode == "all-to-all":
            return torch.ones_like(y, dtype=torch.bool)
        ok = y != self.target
        if self.mode == "source-specific":
            ok &= torch.isin(y, torch.tensor(self.sources, dtype=y.dtype))
        return ok

    def describe(self) -> dict[str, Any]:
        """JSON-friendly description."""
        d: dict[str, Any] = {"mode": self.mode}
        if self.mode != "all-to-all":
            d["target"] = self.target
        if self.sources:
            d["sources"] = list(self.sources)
        return d


@dataclass
class PoisonedData:
    """The result of poisoning: the full training set with poisoned samples in place, and their indices."""

    data: ImageData
    indices: torch.Tensor
    attack: PoisoningAttack
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def is_poisoned(self) -> torch.Tensor:
        """Bool mask ``(N,)`` of poisoned samples (ground truth, for scoring sanitisers)."""
        m = torch.zeros(len(self.data), dtype=torch.bool)
        m[self.indices] = True
        return m


@dataclass
class PoisoningAttack(Configurable):
    """Stamp ``trigger`` on a seeded random subset of training samples and relabel them.

    ``rate`` is a fraction of the training set (or ``count`` an absolute number) of poisoned samples.
    Dirty-label: candidates are samples the target map applies to; labels become the target.
    Clean-label (``clean_label = True`` in a subclass): candidates are target-class samples only;
    labels are unchanged (subclasses may add a perturbation with :meth:`prepare`).

    The options are the dataclass fields, shared by every poisoning attack; ``trigger`` is any
    registered trigger (default: BadNets' 3x3 white patch) and may also be given as a trigger name
    or as ``{"name": ..., "options": {...}}``, which is how ``config()`` writes it.
    """

    trigger: Trigger = nested(TRIGGERS, PatchTrigger)
    target: int = 0
    mode: str = "all-to-one"
    rate: float = 0.1
    count: int | None = None
    sources: tuple[int, ...] = ()
    name: ClassVar[str] = "poison"
    clean_label: ClassVar[bool] = False
    kind: ClassVar[str] = "poisoning"

    def __post_init__(self) -> None:
        if self.trigger is None:
            self.trigger = PatchTrigger()
        resolve_nested(self)
        if not isinstance(self.trigger, Trigger):
            got = type(self.trigger).__name__
            raise ConfigError(
                f"{self.name}: trigger must be a Trigger or a trigger name, got {got}"
            )
        if self.mode not in MODES:
            raise ConfigError(f"bad target mode {self.mode!r}: expected one of {', '.join(MODES)}")
        if self.count is None and not (0 < float(self.rate) <= 1):
            raise ConfigError(f"poison rate must be in (0, 1], got {self.rate}")
        if self.count is not None and int(self.count) < 1:
            raise ConfigError(f"poison count must be >= 1, got {self.count}")
        if self.clean_label and self.mode == "all-to-all":
            raise ConfigError("clean-label poisoning needs a single target class, not all-to-all")
        self.target = int(self.target)
        self.rate = float(self.rate)
        self.count = None if self.count is None else int(self.count)
        self.sources = tuple(int(s) for s in self.sources)

    def target_map(self, num_classes: int) -> TargetMap:
        """The ``TargetMap`` for data with ``num_classes`` classes (validates the target)."""
        return TargetMap(self.mode, self.target, num_classes, self.sources)

    def num_poison(self, n_total: int) -> int:
        """How many samples to poison out of ``n_total``."""
        return self.count if self.count is not None else max(1, round(self.rate * n_total))

    def candidates(self, data: ImageData, tmap: TargetMap) -> torch.Tensor:
        """Indices that may be poisoned."""
        mask = (data.y == tmap.target) if self.clean_label else tmap.eligible(data.y)
        return torch.nonzero(mask).flatten()

    def prepare(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Hook for clean-label attacks: transform the selected images before the trigger."""
        return x

    def poison(self, train: ImageData, seed: int | torch.Generator = 0) -> PoisonedData:
        """Poison a seeded subset of ``train``; returns the new data and the poisoned indices."""
        g = make_generator(seed)
        tmap = self.target_map(train.num_classes)
        cand = self.candidates(train, tmap)
        k = self.num_poison(len(train))
        if k > len(cand):
            what = "target-class samples" if self.clean_label else "eligible samples"
            raise ConfigError(
                f"asked to poison {k} samples but the training set has only {len(cand)} {what}"
            )
        idx = torch.sort(cand[torch.randperm(len(cand), generator=g)[:k]]).values
        x = train.x.clone()
        y = train.y.clone()
        xs = self.prepare(x[idx], y[idx], g)
        x[idx] = self.trigger(xs, g).clamp_(0, 1)
        if not self.clean_label:
            y[idx] = tmap(y[idx])
        data = train.with_(x=x, y=y, name=f"{train.name}+{self.name}")
        info = {
            "attack": self.name,
            "poisoned": int(k),
            "rate": k / len(train),
            "clean_label": self.clean_label,
            **tmap.describe(),
        }
        return PoisonedData(data=data, indices=idx, attack=self, info=info)

    def triggered_test(self, test: ImageData, seed: int | torch.Generator = 1) -> ImageData:
        """Test images the backdoor applies to, triggered and labelled with the backdoor's target."""
        tmap = self.target_map(test.num_classes)
        keep = tmap.eligible(test.y)
        g = make_generator(seed)
        xs = self.trigger(test.x[keep], g).clamp_(0, 1)
        return test.with_(x=xs, y=tmap(test.y[keep]), name=f"{test.name}+{self.name}")

    def describe(self) -> dict[str, Any]:
        """JSON-friendly description of the attack and its trigger."""
        d = {
            "name": self.name,
            "mode": self.mode,
            "rate": self.rate,
            "clean_label": self.clean_label,
            "trigger": self.trigger.describe(),
        }
        if self.mode != "all-to-all":
            d["target"] = self.target
        if self.count is not None:
            d["count"] = self.count
        if self.sources:
            d["sources"] = list(self.sources)
        return d

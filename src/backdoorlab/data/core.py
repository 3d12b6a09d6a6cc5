"""The in-memory data set every part of the toolkit passes around."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..utils import make_generator


@dataclass
class ImageData:
    """Images ``x`` float ``(N, C, H, W)`` in [0, 1], labels ``y`` long ``(N,)``, class names.

    Example:
        >>> d = ImageData(torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 1]), classes=["a", "b", "c"])
        >>> len(d), d.shape, d.num_classes
        (4, (1, 28, 28), 3)
    """

    x: torch.Tensor
    y: torch.Tensor
    classes: list[str] = field(default_factory=list)
    name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.x, torch.Tensor) or self.x.dim() != 4:
            got = tuple(self.x.shape) if isinstance(self.x, torch.Tensor) else type(self.x).__name__
            raise DataError(f"{self.name or 'data'}: x must be a (N, C, H, W) tensor, got {got}")
        if not self.x.is_floating_point():
            raise DataError(
                f"{self.name or 'data'}: x must be float in [0, 1], got dtype {self.x.dtype}"
            )
        if self.y.dim() != 1 or self.y.shape[0] != self.x.shape[0]:
            raise DataError(
                f"{self.name or 'data'}: {self.x.shape[0]} images but labels of shape {tuple(self.y.shape)}"
            )
        self.y = self.y.long()
        if not self.classes:
            k = int(self.y.max().item()) + 1 if self.y.numel() else 0
            self.classes = [str(i) for i in range(k)]
        if self.y.numel() and (int(self.y.min()) < 0 or int(self.y.max()) >= len(self.classes)):
            raise DataError(
                f"{self.name or 'data'}: labels must lie in [0, {len(self.classes) - 1}], "
                f"got [{int(self.y.min())}, {int(self.y.max())}]"
            )

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        c, h, w = self.x.shape[1:]
        return int(c), int(h), int(w)

    @property
    def num_classes(self) -> int:
        """Number of classes (length of ``classes``)."""
        return len(self.classes)

    def subset(self, index: torch.Tensor | Sequence[int] | slice) -> ImageData:
        """A new ``ImageData`` with the selected samples (index tensor, list, bool mask or slice)."""
        if not isinstance(index, slice):
            index = torch.as_tensor(index)
        return replace(self, x=self.x[index], y=self.y[index])

    def with_(self, **changes: object) -> ImageData:
        """A copy with some fields replaced (``x``, ``y``, ``classes``, ``name``)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def per_class(self, n: int, seed: int | torch.Generator | None = 0) -> ImageData:
        """At most ``n`` samples of each class, chosen at random with ``seed``."""
        g = make_generator(seed)
        perm = torch.randperm(len(self), generator=g)
        y = self.y[perm]
        # rank of each sample within its class in the shuffled order, vectorised
        order = torch.argsort(y, stable=True)
        ys = y[order]
        starts = torch.searchsorted(ys, ys, side="left")
        rank = torch.arange(len(ys)) - starts
        keep = perm[order[rank < n]]
        return self.subset(torch.sort(keep).values)

    def split(
        self, fractions: Sequence[float], seed: int | torch.Generator | None = 0
    ) -> list[ImageData]:
        """Random disjoint splits with the given fractions (e.g. ``[0.9, 0.1]``), seeded."""
        if any(f < 0 for f in fractions) or sum(fractions) > 1 + 1e-9:
            raise DataError(f"split fractions must be >= 0 and sum to <= 1, got {list(fractions)}")
        g = make_generator(seed)
        perm = torch.randperm(len(self), generator=g)
        out, start = [], 0
        for i, f in enumerate(fractions):
            n = (
                len(self) - start
                if i == len(fractions) - 1 and abs(sum(fractions) - 1) < 1e-9
                else round(f * len(self))
            )
            out.append(self.subset(torch.sort(perm[start : start + n]).values))
            start += n
        return out

    def split_balanced(
        self, fraction: float, seed: int | torch.Generator | None = 0
    ) -> tuple[ImageData, ImageData]:
        """Seeded class-balanced split: ``round(fraction * n_c)`` of each class, and the disjoint rest.

        Used for the defender's clean part of a test split and the evaluation part it never sees.
        """
        if not 0 < fraction < 1:
            raise ConfigError(f"--clean-fraction must be in (0, 1), got {fraction}")
        g = make_generator(seed)
        perm = torch.randperm(len(self), generator=g)
        y = self.y[perm]
        order = torch.argsort(y, stable=True)
        ys = y[order]
        rank = torch.arange(len(ys)) - torch.searchsorted(ys, ys, side="left")
        counts = torch.bincount(ys, minlength=self.num_classes)
        take = torch.round(counts.double() * fraction).long()[ys]
        pick = torch.zeros(len(self), dtype=torch.bool)
        pick[perm[order[rank < take]]] = True
        if not pick.any() or pick.all():
            raise ConfigError(
                f"--clean-fraction {fraction}: leaves no defender or no evaluation samples out of {len(self)}"
            )
        first = self.subset(pick).with_(name=f"{self.name}[defender]")
        rest = self.subset(~pick).with_(name=f"{self.name}[eval]")
        return first, rest

    def to_uint8(self) -> np.ndarray:
        """Images as a uint8 array ``(N, H, W, C)`` for writing files."""
        return to_uint8(self.x)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Float ``(N, C, H, W)`` in [0, 1] -> uint8 ``(N, H, W, C)`` (round to nearest)."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def from_uint8(a: np.ndarray | torch.Tensor, layout: str = "NHWC") -> torch.Tensor:
    """uint8 images -> float ``(N, C, H, W)`` in [0, 1]; ``layout`` is "NHWC", "NCHW" or "NHW"."""
    t = torch.from_numpy(np.array(a, copy=True)) if isinstance(a, np.ndarray) else a
    if layout == "NHW":
        t = t.unsqueeze(1)
    elif layout == "NHWC":
        t = t.permute(0, 3, 1, 2)
    elif layout != "NCHW":
        raise DataError(f"unknown layout {layout!r}; expected NHWC, NCHW or NHW")
    return t.contiguous().float().div_(255.0)


@dataclass
class Splits:
    """A train / validation / test triple of ``ImageData``."""

    train: ImageData
    test: ImageData
    val: ImageData | None = None

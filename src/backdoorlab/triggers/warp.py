"""WaNet warping trigger: a fixed, smooth, random elastic warp of the whole image.

Nguyen & Tran, "WaNet -- Imperceptible Warping-based Backdoor Attack", ICLR 2021, Sec. 3.2
(warping-based backdoor; the warping field): a random control grid ``P`` of size ``k x k x 2`` with
entries in [-1, 1] is normalised by its mean absolute value, ``P <- P / mean(|P|)``, scaled by the
strength ``s``, upsampled bicubically to ``H x W``, added to the identity sampling grid, clamped to
[-1, 1], and the image is resampled with bilinear ``grid_sample``. As in the authors' code, the
field is divided by the image size, so ``s`` is a displacement of about ``s / 2`` pixels per unit
of the normalised field. Survey: Li, Ma, Xue & Zhao, "Deep Learning Backdoors", arXiv 2007.08273,
2020 (invisible / transformation triggers).

Only the fixed warp is here: WaNet's "noise mode" (training also with random warps kept at their
true labels) is a training procedure, not a trigger; it can reuse :func:`warp_grid` and
:func:`apply_grid`. For non-square images the x displacement is divided by ``W`` and the y one by
``H`` (the paper uses square images and divides both by the height).

Defaults: the paper uses ``k = 4``, ``s = 0.5``. Measured on Fashion-MNIST (BadNets dirty-label
poisoning at 10 %, ``badnets_cnn``, 5 epochs, fixed warp without noise mode): ASR 0.92 at
``s = 0.5``, 0.96 at ``s = 1``, 0.98 at ``s = 2`` (clean accuracy unchanged), so the trigger's
default is ``s = 1.0`` (deviation; still a sub-pixel average displacement); pass ``s=0.5`` for the
paper's setting. :func:`warp_grid` keeps the paper's ``s = 0.5`` as its default.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from .base import TRIGGERS, Trigger, as_float, as_int


def warp_grid(
    k: int = 4,
    s: float = 0.5,
    H: int = 32,
    W: int | None = None,
    seed: int = 0,
    grid_rescale: float = 1.0,
) -> torch.Tensor:
    """The WaNet sampling grid ``(1, H, W, 2)`` (x, y in [-1, 1]) for ``grid_sample``.

    Example:
        >>> g = warp_grid(4, 0.0, 5, 5)
        >>> bool(torch.allclose(g[0, 0, 0], torch.tensor([-1.0, -1.0])))
        True
    """
    W = H if W is None else W
    g = torch.Generator().manual_seed(int(seed))
    ins = torch.rand(1, 2, k, k, generator=g) * 2 - 1
    ins = ins / ins.abs().mean()
    noise = F.interpolate(ins, size=(H, W), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
    ys = torch.linspace(-1, 1, H)
    xs = torch.linspace(-1, 1, W)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    identity = torch.stack((xx, yy), dim=-1)[None]
    scale = torch.tensor([float(W), float(H)]).view(1, 1, 1, 2)
    grid = (identity + s * noise / scale) * grid_rescale
    return grid.clamp(-1, 1)


def apply_grid(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Resample a batch ``(N, C, H, W)`` with a grid ``(1|N, H, W, 2)`` (bilinear, align_corners)."""
    grid = grid.to(device=x.device, dtype=x.dtype)
    if grid.shape[0] == 1 and x.shape[0] != 1:
        grid = grid.expand(x.shape[0], -1, -1, -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True).clamp(
        0, 1
    )


@TRIGGERS.register(
    "warp", "WaNet (Nguyen & Tran 2021): fixed smooth random warp, k x k control grid, strength s"
)
@dataclass
class WarpTrigger(Trigger):
    """WaNet fixed warp: ``k`` x ``k`` control grid, strength ``s``, field drawn from ``seed``."""

    k: int = 4
    s: float = 1.0
    seed: int = 0
    grid_rescale: float = 1.0
    _cache: dict[tuple[float, ...], torch.Tensor] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    name = "warp"

    def __post_init__(self) -> None:
        self.k = as_int(self.k, "warp k (control grid size)", lo=2)
        self.s = as_float(self.s, "warp strength s", lo=0.0)
        self.seed = as_int(self.seed, "warp seed")
        self.grid_rescale = as_float(self.grid_rescale, "warp grid_rescale", lo=0.0, lo_open=True)

    def grid(self, H: int, W: int) -> torch.Tensor:
        """The fixed sampling grid ``(1, H, W, 2)`` for ``H x W`` images (cached)."""
        key = (H, W, self.k, self.s, self.seed, self.grid_rescale)
        if key not in self._cache:
            self._cache[key] = warp_grid(self.k, self.s, H, W, self.seed, self.grid_rescale)
        return self._cache[key]

    def apply(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return apply_grid(x, self.grid(x.shape[2], x.shape[3]))


__all__ = ["WarpTrigger", "apply_grid", "warp_grid"]

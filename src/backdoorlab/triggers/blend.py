"""Perturbation triggers over the whole image: blending, norm-bounded noise, and SIG signals.

Survey: Li, Ma, Xue & Zhao, "Deep Learning Backdoors", arXiv 2007.08273, 2020 (invisible /
perturbation triggers).

* ``blend`` -- Chen, Liu, Li, Lu & Song, "Targeted Backdoor Attacks on Deep Learning Systems Using
  Data Poisoning", arXiv 1712.05526, 2017, pattern-key attacks, "blended injection strategy":
  ``x' = (1 - alpha) * x + alpha * k`` with a key pattern ``k`` that is either a random pattern
  (each pixel drawn uniformly, here a fixed pattern from ``seed``) or a picture (their Hello Kitty
  image; here any file or tensor, resized to the image size, its alpha ignored). The paper
  poisons with ``alpha = 0.2`` (default) and studies smaller values at test time.
* ``noise-linf`` / ``noise-l2`` -- a fixed, seeded additive pattern scaled to exactly the budget
  ``eps``: L-inf: every entry is ``+-eps`` (``distribution="sign"``, default) or a uniform pattern
  rescaled so its largest entry is ``eps``; L2: a Gaussian pattern rescaled to L2 norm ``eps`` over
  the ``C x H x W`` entries of one image. ``x' = clamp(x + delta, 0, 1)``; clamping can only shrink
  the change, so the budget holds for the output. (A generic "invisible additive noise" trigger as
  discussed in the survey, not tied to one paper.)
* ``sig`` -- Barni, Kallas & Tondi, "A New Backdoor Attack in CNNs by Training Set Corruption Without
  Label Poisoning", ICIP 2019 (the two backdoor signals of the method section): ``x' = clamp(x + v)`` with the horizontal sinusoid
  ``v(i, j) = Delta * sin(2 pi j f / m)`` (``signal="sine"``) or the ramp ``v(i, j) = j Delta / m``
  (``signal="ramp"``), ``j = 1..m`` the column, ``m`` the image width, the same ``v`` on every row
  and channel. Defaults ``Delta = 20/255``, ``f = 6`` as in the paper's sinusoid experiments
  (pixel values there are 0..255). The paper's attack is clean-label (only target-class images are
  corrupted); here ``sig`` is only the trigger, the attack decides which images get it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.nn import functional as F

from .base import TRIGGERS, Trigger, as_choice, as_float, as_int
from .shapes import load_rgba, rgb_to_channels


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def blend_pattern(
    shape: tuple[int, int, int], seed: int = 0, image: torch.Tensor | None = None
) -> torch.Tensor:
    """The key pattern ``(C, H, W)``: seeded uniform noise, or an RGBA picture resized (alpha ignored)."""
    c, h, w = shape
    if image is None:
        return torch.rand(c, h, w, generator=_seeded(seed))
    rgb = image[:3]
    if tuple(rgb.shape[1:]) != (h, w):
        rgb = F.interpolate(
            rgb[None], size=(h, w), mode="bilinear", align_corners=False, antialias=True
        )[0].clamp(0, 1)
    return rgb_to_channels(rgb, c)


@TRIGGERS.register(
    "blend",
    "blended injection (Chen et al. 2017): x' = (1-alpha) x + alpha k, k seeded noise or a picture",
)
@dataclass
class BlendTrigger(Trigger):
    """Chen et al. 2017 blended injection with key ``image`` (path/tensor) or seeded uniform noise."""

    alpha: float = 0.2
    image: Any = None
    seed: int = 0
    _rgba: torch.Tensor | None = field(default=None, init=False, repr=False, compare=False)
    name = "blend"

    def __post_init__(self) -> None:
        self.alpha = as_float(self.alpha, "blend alpha", lo=0.0, hi=1.0)
        self.seed = as_int(self.seed, "blend seed")
        if isinstance(self.image, os.PathLike):
            self.image = str(self.image)
        self._rgba = None if self.image is None else load_rgba(self.image)

    def pattern(self, shape: tuple[int, int, int]) -> torch.Tensor:
        """The key ``k`` for images of ``shape`` ``(C, H, W)``."""
        return blend_pattern(shape, self.seed, self._rgba)

    def apply(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        k = self.pattern(tuple(x.shape[1:])).to(device=x.device, dtype=x.dtype)  # type: ignore[arg-type]
        return torch.lerp(x, k.expand_as(x), self.alpha)


NOISE_DISTRIBUTIONS = ("sign", "uniform", "gaussian")


def noise_pattern(
    shape: tuple[int, int, int], eps: float, norm: str, distribution: str, seed: int = 0
) -> torch.Tensor:
    """A fixed ``(C, H, W)`` pattern with ``||delta||_norm == eps`` exactly (``norm`` "linf" or "l2").

    Example:
        >>> d = noise_pattern((1, 4, 4), 0.1, "linf", "uniform")
        >>> round(float(d.abs().max()), 6)
        0.1
    """
    g = _seeded(seed)
    if distribution == "sign":
        d = torch.randint(0, 2, shape, generator=g).float() * 2 - 1
    elif distribution == "uniform":
        d = torch.rand(shape, generator=g) * 2 - 1
    else:
        d = torch.randn(shape, generator=g)
    if norm == "linf":
        return d * (eps / d.abs().max().clamp_min(1e-12))
    return d * (eps / d.norm().clamp_min(1e-12))


@dataclass
class _NoiseTrigger(Trigger):
    eps: float = 8 / 255
    distribution: str = "sign"
    seed: int = 0
    norm = "linf"

    def __post_init__(self) -> None:
        self.eps = as_float(
            self.eps,
            f"{self.name} eps",
            lo=0.0,
            lo_open=True,
            hi=1.0 if self.norm == "linf" else None,
        )
        self.distribution = as_choice(
            self.distribution, f"{self.name} distribution", NOISE_DISTRIBUTIONS
        )
        self.seed = as_int(self.seed, f"{self.name} seed")

    def pattern(self, shape: tuple[int, int, int]) -> torch.Tensor:
        """The additive ``delta`` ``(C, H, W)`` for images of ``shape``."""
        return noise_pattern(shape, self.eps, self.norm, self.distribution, self.seed)

    def apply(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        d = self.pattern(tuple(x.shape[1:])).to(device=x.device, dtype=x.dtype)  # type: ignore[arg-type]
        return (x + d).clamp(0, 1)


@TRIGGERS.register(
    "noise-linf",
    "fixed seeded additive noise with L-inf norm exactly eps (default 8/255, +-eps signs)",
)
@dataclass
class NoiseLinfTrigger(_NoiseTrigger):
    """``x' = clamp(x + delta)``, ``delta`` a fixed seeded pattern with ``max |delta| = eps``."""

    eps: float = 8 / 255
    distribution: str = "sign"
    name = "noise-linf"
    norm = "linf"


@TRIGGERS.register(
    "noise-l2",
    "fixed seeded Gaussian additive noise with L2 norm exactly eps per image (default 2.0)",
)
@dataclass
class NoiseL2Trigger(_NoiseTrigger):
    """``x' = clamp(x + delta)``, ``delta`` a fixed seeded pattern with ``||delta||_2 = eps`` per image."""

    eps: float = 2.0
    distribution: str = "gaussian"
    name = "noise-l2"
    norm = "l2"


SIG_SIGNALS = ("sine", "ramp")


def sig_signal(
    h: int,
    w: int,
    delta: float = 20 / 255,
    f: float = 6.0,
    signal: str = "sine",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Barni et al. 2019 signal ``v`` ``(h, w)``: ``Delta sin(2 pi j f / m)`` or ``j Delta / m``, j = 1..m.

    Example:
        >>> v = sig_signal(1, 4, delta=1.0, f=1.0)
        >>> [round(float(t), 6) for t in v[0]]
        [1.0, 0.0, -1.0, -0.0]
    """
    j = torch.arange(1, w + 1, dtype=torch.float64)
    row = delta * torch.sin(2 * math.pi * j * f / w) if signal == "sine" else j * delta / w
    return row.to(dtype).view(1, w).expand(h, w)


@TRIGGERS.register(
    "sig",
    "SIG (Barni et al. 2019): additive horizontal sinusoid Delta sin(2 pi j f/m) (or ramp), Delta=20/255, f=6",
)
@dataclass
class SigTrigger(Trigger):
    """``x' = clamp(x + v)``, ``v`` the horizontal sinusoid (or ramp) of Barni et al. 2019."""

    delta: float = 20 / 255
    f: float = 6.0
    signal: str = "sine"
    name = "sig"

    def __post_init__(self) -> None:
        self.delta = as_float(self.delta, "sig delta", lo=0.0, hi=1.0, lo_open=True)
        self.f = as_float(self.f, "sig frequency f", lo=0.0, lo_open=True)
        self.signal = as_choice(self.signal, "sig signal", SIG_SIGNALS)

    def apply(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        v = sig_signal(x.shape[2], x.shape[3], self.delta, self.f, self.signal, x.dtype).to(
            x.device
        )
        return (x + v).clamp(0, 1)


__all__ = [
    "NOISE_DISTRIBUTIONS",
    "SIG_SIGNALS",
    "BlendTrigger",
    "NoiseL2Trigger",
    "NoiseLinfTrigger",
    "SigTrigger",
    "blend_pattern",
    "noise_pattern",
    "sig_signal",
]

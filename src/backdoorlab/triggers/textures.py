"""Logo triggers: textured shapes (``logo``) and picture logos with an alpha mask (``logo-image``).

Survey: Li, Ma, Xue & Zhao, "Deep Learning Backdoors", arXiv 2007.08273, 2020 (trigger forms: logo
and watermark triggers). Logo triggers come from Liu, Ma, Aafer, Lee, Zhai, Wang & Zhang, "Trojaning
Attack on Neural Networks", NDSS 2018, whose trigger masks include a logo and a watermark, and
Chen, Liu, Li, Lu & Song, "Targeted Backdoor Attacks on Deep Learning Systems Using Data
Poisoning", arXiv 1712.05526, 2017 (accessory and pattern triggers).

Replace triggers ``x' = (1 - m) * x + m * p``:

* ``logo`` -- a procedural logo: the mask is a shape from :mod:`.shapes` (anti-aliased), the pattern
  a texture between ``color1`` and ``color2``: ``stripes`` (period ``period`` px at ``angle``
  degrees), ``checker`` (cells of ``period / 2`` px), ``noise`` (seeded uniform mix per pixel),
  ``gradient`` (linear along ``angle``) or ``solid`` (``color1``). Needs no file.
* ``logo-image`` -- a picture (file path or tensor): its alpha times ``opacity`` is the mask, so a
  translucent watermark-like logo is ``opacity < 1``. With no ``image`` a built-in badge is used (a
  striped disc with a star cut out).

Deviations: the papers use specific bitmaps (an Apple logo, a watermark text); the procedural logo
and the built-in badge stand in for them, any picture can be passed instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from .base import TRIGGERS, ReplaceTrigger, as_choice, as_float, as_int, parse_color
from .shapes import (
    SHAPES,
    SUPERSAMPLE,
    ImagePatchTrigger,
    _check_common,
    _downsample,
    _grid,
    _in_disc,
    _in_polygon,
    shape_mask,
    star_vertices,
)

TEXTURES = ("stripes", "checker", "noise", "gradient", "solid")


def texture(
    kind: str,
    h: int,
    w: int,
    color1: torch.Tensor,
    color2: torch.Tensor,
    period: float = 2.0,
    angle: float = 45.0,
    seed: int = 0,
) -> torch.Tensor:
    """A ``(C, h, w)`` texture mixing ``color1`` and ``color2`` (each ``(C,)``).

    Example:
        >>> t = texture("checker", 2, 2, torch.ones(1), torch.zeros(1), period=2)
        >>> t[0].tolist()
        [[1.0, 0.0], [0.0, 1.0]]
    """
    kind = as_choice(kind, "texture", TEXTURES)
    ii = torch.arange(h, dtype=torch.float32).view(h, 1)
    jj = torch.arange(w, dtype=torch.float32).view(1, w)
    th = math.radians(angle)
    if kind == "solid":
        t = torch.zeros(h, w)
    elif kind == "stripes":
        proj = jj * math.cos(th) + ii * math.sin(th)
        t = (torch.floor(proj / (period / 2) + 1e-6) % 2).expand(h, w)
    elif kind == "checker":
        cell = max(period / 2, 1.0)
        t = ((torch.floor(ii / cell) + torch.floor(jj / cell)) % 2).expand(h, w)
    elif kind == "noise":
        t = torch.rand(h, w, generator=torch.Generator().manual_seed(seed))
    else:  # gradient from color1 to color2 along the direction ``angle``
        proj = (jj * math.cos(th) + ii * math.sin(th)).expand(h, w)
        lo, hi = proj.min(), proj.max()
        t = (proj - lo) / (hi - lo) if float(hi - lo) > 0 else torch.zeros(h, w)
    c = color1.numel()
    return torch.lerp(
        color1.view(c, 1, 1).expand(c, h, w),
        color2.view(c, 1, 1).expand(c, h, w),
        t.expand(c, h, w),
    )


def sample_badge_rgba(size: int = 32) -> torch.Tensor:
    """A built-in RGBA ``(4, size, size)`` logo: a blue/white striped disc with a star cut out."""
    ss = SUPERSAMPLE
    u, v = _grid(size, size, ss)
    disc = _in_disc(u, v, 0.0, 0.0, 1.0)
    star = _in_polygon(u / 0.6, v / 0.6, star_vertices())  # the star at 60 % size, centred
    alpha = _downsample(disc & ~star, ss)
    rgb = texture(
        "stripes",
        size,
        size,
        torch.tensor([0.1, 0.25, 0.85]),
        torch.tensor([1.0, 1.0, 1.0]),
        period=6.0,
        angle=45.0,
    )
    return torch.cat([rgb, alpha[None]])


@TRIGGERS.register(
    "logo",
    "procedural textured logo (Liu et al. 2018 logo trigger): a shape filled with stripes/checker/noise/gradient",
)
@dataclass
class LogoTrigger(ReplaceTrigger):
    """A ``shape`` mask filled with a ``texture`` of ``color1``/``color2``, pasted at ``position``."""

    shape: str = "circle"
    size: int = 8
    texture: str = "stripes"
    color1: Any = "red"
    color2: Any = "yellow"
    period: float = 2.0
    angle: float = 45.0
    position: Any = "bottom-right"
    margin: int = 1
    antialias: bool = True
    seed: int = 0
    name = "logo"

    def __post_init__(self) -> None:
        self.shape = as_choice(self.shape, "logo shape", SHAPES)
        self.texture = as_choice(self.texture, "logo texture", TEXTURES)
        _check_common(self, "logo")
        self.period = as_float(self.period, "logo period", lo=1.0)
        self.angle = as_float(self.angle, "logo angle")
        self.seed = as_int(self.seed, "logo seed")
        parse_color(self.color1, 3)
        parse_color(self.color2, 3)

    def mask_pattern(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        c = x.shape[1]
        s = self.size
        m = shape_mask(self.shape, s, s, self.antialias)
        tex = texture(
            self.texture,
            s,
            s,
            parse_color(self.color1, c),
            parse_color(self.color2, c),
            self.period,
            self.angle,
            self.seed,
        )
        return self.place_object(m, tex, x, generator)


@TRIGGERS.register(
    "logo-image",
    "a logo picture (path or tensor; alpha x opacity = mask), e.g. a translucent watermark",
)
@dataclass
class LogoImageTrigger(ImagePatchTrigger):
    """A logo picture whose alpha times ``opacity`` is the mask; ``image=None``: a built-in badge."""

    opacity: float = 1.0
    name = "logo-image"

    def __post_init__(self) -> None:
        self.opacity = as_float(self.opacity, "logo-image opacity", lo=0.0, hi=1.0, lo_open=True)
        super().__post_init__()

    def default_image(self) -> torch.Tensor:
        return sample_badge_rgba()

    def _alpha(self) -> torch.Tensor:
        return self._rgba[3] * self.opacity


__all__ = ["TEXTURES", "LogoImageTrigger", "LogoTrigger", "sample_badge_rgba", "texture"]

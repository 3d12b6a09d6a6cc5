"""Object-shaped replace triggers: procedural shapes, a yellow sticker, and an image patch.

Survey: Li, Ma, Xue & Zhao, "Deep Learning Backdoors", arXiv 2007.08273, 2020 (the section on
trigger forms: pixel patterns, stickers, object-shaped and logo triggers). The object triggers come
from

* Gu, Dolan-Gavitt & Garg, "BadNets: Identifying Vulnerabilities in the Machine Learning Model
  Supply Chain", arXiv 1708.06733, 2017 (IEEE Access 2019), Sec. 5: a yellow square sticker, a bomb
  and a flower stuck on US traffic signs (Fig. 7);
* Liu, Ma, Aafer, Lee, Zhai, Wang & Zhang, "Trojaning Attack on Neural Networks", NDSS 2018,
  (trojan trigger masks: a square, a logo and a watermark; ``image-patch`` and ``logo-image`` take
  any such picture).

All are replace triggers ``x' = (1 - m) * x + m * p``. The shapes are drawn procedurally from
coordinate grids (no image files): the object box is mapped to ``u, v`` in [-1, 1] (``u`` to the
right, ``v`` down), each shape is an inside test on that grid (disc, polygon by crossing number,
thick segments), and ``antialias=True`` averages the test over 4 x 4 sub-pixel samples so edges get
fractional mask values (``False`` gives a binary mask). Pixels outside the object box keep their
exact values.

Deviations: the papers photograph physical stickers or paste bitmaps; here the bomb and flower are
simple glyphs (disc + fuse + spark; six petals around a disc) that read as such at 8-16 pixels.
``image-patch`` with no ``image`` uses a built-in 32 x 32 RGBA flower picture so that every
registered trigger can be built without options.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from ..errors import ConfigError
from .base import (
    TRIGGERS,
    ReplaceTrigger,
    as_bool,
    as_choice,
    as_float,
    as_int,
    parse_color,
    parse_position,
)

SHAPES = ("square", "circle", "triangle", "star", "bomb", "flower")
SUPERSAMPLE = 4


# --- geometry on coordinate grids ----------------------------------------------------------------


def _grid(h: int, w: int, ss: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample coordinates ``u`` (right), ``v`` (down) in [-1, 1], ``(h*ss, w*ss)``, at sub-pixel centres."""
    v = (torch.arange(h * ss, dtype=torch.float32) + 0.5) / (h * ss) * 2 - 1
    u = (torch.arange(w * ss, dtype=torch.float32) + 0.5) / (w * ss) * 2 - 1
    return u.view(1, -1).expand(h * ss, w * ss), v.view(-1, 1).expand(h * ss, w * ss)


def _in_disc(u: torch.Tensor, v: torch.Tensor, cu: float, cv: float, r: float) -> torch.Tensor:
    return (u - cu) ** 2 + (v - cv) ** 2 <= r * r


def _in_polygon(u: torch.Tensor, v: torch.Tensor, verts: list[tuple[float, float]]) -> torch.Tensor:
    """Even-odd (crossing-number) inside test of every grid point against all edges at once."""
    p = torch.tensor(verts, dtype=torch.float32)
    a, b = p, p.roll(-1, 0)  # edges a -> b, (E, 2)
    pu, pv = u.unsqueeze(-1), v.unsqueeze(-1)  # (..., 1)
    straddle = (a[:, 1] > pv) != (b[:, 1] > pv)
    dv = b[:, 1] - a[:, 1]
    dv = torch.where(dv == 0, torch.ones_like(dv), dv)
    cross_u = a[:, 0] + (pv - a[:, 1]) * (b[:, 0] - a[:, 0]) / dv
    return ((straddle & (pu < cross_u)).sum(-1) % 2) == 1


def _near_segment(
    u: torch.Tensor,
    v: torch.Tensor,
    a: tuple[float, float],
    b: tuple[float, float],
    half_width: float,
) -> torch.Tensor:
    """Points within ``half_width`` of the segment a-b (a thick stroke with round caps)."""
    au, av = a
    du, dv = b[0] - au, b[1] - av
    t = (((u - au) * du + (v - av) * dv) / (du * du + dv * dv)).clamp(0, 1)
    return (u - au - t * du) ** 2 + (v - av - t * dv) ** 2 <= half_width**2


def star_vertices(
    points: int = 5,
    inner: float = 0.4,
    radius: float = 1.0,
    center: tuple[float, float] = (0.0, 0.095),
) -> list[tuple[float, float]]:
    """Vertices of a star polygon pointing up, alternating outer ``radius`` and ``inner * radius``."""
    out = []
    for k in range(2 * points):
        r = radius if k % 2 == 0 else radius * inner
        ang = -math.pi / 2 + k * math.pi / points
        out.append((center[0] + r * math.cos(ang), center[1] + r * math.sin(ang)))
    return out


def _inside(shape: str, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    if shape == "square":
        return torch.ones_like(u, dtype=torch.bool)
    if shape == "circle":
        return _in_disc(u, v, 0.0, 0.0, 1.0)
    if shape == "triangle":
        return _in_polygon(u, v, [(0.0, -1.0), (1.0, 1.0), (-1.0, 1.0)])
    if shape == "star":
        return _in_polygon(u, v, star_vertices())
    if shape == "bomb":  # round body, a cap, a fuse and a spark at its tip
        body = _in_disc(u, v, -0.18, 0.22, 0.76)
        cap = _near_segment(u, v, (0.3, -0.28), (0.44, -0.44), 0.2)
        fuse = _near_segment(u, v, (0.44, -0.44), (0.72, -0.78), 0.08)
        spark = _in_disc(u, v, 0.8, -0.84, 0.16)
        return body | cap | fuse | spark
    if shape == "flower":  # six petals around a central disc
        m = _in_disc(u, v, 0.0, 0.0, 0.32)
        for k in range(6):
            ang = -math.pi / 2 + k * math.pi / 3
            m |= _in_disc(u, v, 0.7 * math.cos(ang), 0.7 * math.sin(ang), 0.29)
        return m
    raise ConfigError(f"bad shape {shape!r}: expected one of {', '.join(SHAPES)}")


def _downsample(hi: torch.Tensor, ss: int) -> torch.Tensor:
    """Average ``(h*ss, w*ss)`` sub-pixel values into ``(h, w)`` pixel coverage."""
    if ss == 1:
        return hi.float()
    return F.avg_pool2d(hi.float()[None, None], ss)[0, 0]


def shape_mask_hi(shape: str, h: int, w: int, antialias: bool = True) -> tuple[torch.Tensor, int]:
    """The boolean inside test at sub-pixel resolution and the supersampling factor used."""
    ss = SUPERSAMPLE if antialias else 1
    u, v = _grid(h, w, ss)
    return _inside(shape, u, v), ss


def shape_mask(shape: str, h: int, w: int | None = None, antialias: bool = True) -> torch.Tensor:
    """Coverage mask ``(h, w)`` in [0, 1] of ``shape`` filling an ``h`` x ``w`` box.

    Example:
        >>> m = shape_mask("circle", 9, antialias=False)
        >>> int(m[4, 4]), int(m[0, 0])
        (1, 0)
    """
    w = h if w is None else w
    hi, ss = shape_mask_hi(shape, h, w, antialias)
    return _downsample(hi, ss)


def _erode(hi: torch.Tensor, r: int) -> torch.Tensor:
    """Binary erosion by a ``(2r+1)`` square (outside the box counts as empty)."""
    if r <= 0:
        return hi
    x = F.pad(hi.float()[None, None], (r, r, r, r), value=0.0)
    return (-F.max_pool2d(-x, 2 * r + 1, stride=1))[0, 0] > 0.5


def outlined_shape(
    shape: str,
    h: int,
    w: int,
    fill: torch.Tensor,
    outline: torch.Tensor,
    width: float,
    antialias: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask ``(h, w)`` and content ``(C, h, w)`` of a ``fill``-coloured shape with an ``outline`` band.

    The band is the shape minus its erosion by ``width`` pixels (on the sub-pixel grid).
    """
    hi, ss = shape_mask_hi(shape, h, w, antialias)
    inner = _erode(hi, round(width * ss))
    cov = _downsample(hi, ss)
    cov_fill = _downsample(inner, ss)
    cov_line = cov - cov_fill
    c = fill.numel()
    safe = torch.where(cov > 0, cov, torch.ones_like(cov))
    content = (fill.view(c, 1, 1) * cov_fill + outline.view(c, 1, 1) * cov_line) / safe
    content = torch.where(cov > 0, content, fill.view(c, 1, 1).expand(c, h, w))
    return cov, content


# --- images (files or tensors) as RGBA --------------------------------------------------------------


def sample_flower_rgba(size: int = 32) -> torch.Tensor:
    """A built-in RGBA ``(4, size, size)`` picture: red petals, a yellow centre, transparent outside."""
    hi, ss = shape_mask_hi("flower", size, size, True)
    u, v = _grid(size, size, ss)
    centre = _in_disc(u, v, 0.0, 0.0, 0.32)
    alpha = _downsample(hi, ss)
    cov_c = _downsample(centre, ss)
    red = torch.tensor([0.85, 0.1, 0.15]).view(3, 1, 1)
    yellow = torch.tensor([1.0, 0.85, 0.1]).view(3, 1, 1)
    safe = torch.where(alpha > 0, alpha, torch.ones_like(alpha))
    rgb = (red * (alpha - cov_c) + yellow * cov_c) / safe
    return torch.cat([rgb.clamp(0, 1), alpha[None]])


def load_rgba(image: Any) -> torch.Tensor:
    """A picture as float RGBA ``(4, h, w)`` in [0, 1].

    ``image`` is a file path (PNG/JPG/... read with Pillow; an alpha channel becomes the mask, and
    images without one are fully opaque) or a tensor / nested list ``(h, w)``, ``(1|3|4, h, w)``
    in [0, 1] (or uint8).
    """
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        try:
            from PIL import Image, UnidentifiedImageError
        except ImportError as e:  # pragma: no cover - pillow is a dependency
            raise ConfigError("reading trigger images needs Pillow") from e
        if not path.is_file():
            raise ConfigError(f"trigger image {str(path)!r} not found")
        try:
            with Image.open(path) as im:
                rgba = im.convert("RGBA")
                data = torch.frombuffer(bytearray(rgba.tobytes()), dtype=torch.uint8)
                t = data.view(rgba.height, rgba.width, 4).permute(2, 0, 1).float() / 255
        except (UnidentifiedImageError, OSError) as e:
            raise ConfigError(
                f"trigger image {str(path)!r}: cannot read it as an image ({e})"
            ) from None
        return t
    try:
        t = torch.as_tensor(image)
    except (TypeError, ValueError, RuntimeError):
        raise ConfigError(
            f"trigger image must be a file path or an image tensor, got {type(image).__name__}"
        ) from None
    if t.dtype == torch.uint8:
        t = t.float() / 255
    t = t.float()
    if t.dim() == 2:
        t = t[None]
    if t.dim() != 3 or t.shape[0] not in (1, 3, 4) or t.shape[1] < 1 or t.shape[2] < 1:
        raise ConfigError(
            f"trigger image tensor must be (h, w) or (1|3|4, h, w), got {tuple(t.shape)}"
        )
    if not bool(torch.isfinite(t).all()) or float(t.min()) < 0 or float(t.max()) > 1:
        raise ConfigError("trigger image tensor values must lie in [0, 1]")
    if t.shape[0] == 1:
        t = torch.cat([t.expand(3, -1, -1), torch.ones_like(t)])
    elif t.shape[0] == 3:
        t = torch.cat([t, torch.ones_like(t[:1])])
    return t.contiguous()


def resize_rgba(rgba: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize RGBA with premultiplied alpha (no dark fringes) and antialiasing."""
    h, w = size
    if tuple(rgba.shape[1:]) == (h, w):
        return rgba.clone()
    a = rgba[3:]
    pre = torch.cat([rgba[:3] * a, a])[None]
    out = F.interpolate(pre, size=(h, w), mode="bilinear", align_corners=False, antialias=True)[
        0
    ].clamp(0, 1)
    a2 = out[3:]
    rgb = torch.where(a2 > 0, out[:3] / a2.clamp_min(1e-8), torch.zeros_like(out[:3])).clamp(0, 1)
    return torch.cat([rgb, a2])


def fit_size(shape: tuple[int, int], longest: int) -> tuple[int, int]:
    """``(h, w)`` with the longest side ``longest``, keeping the aspect ratio."""
    h, w = shape
    if h >= w:
        return longest, max(1, round(w * longest / h))
    return max(1, round(h * longest / w)), longest


def rgb_to_channels(rgb: torch.Tensor, channels: int) -> torch.Tensor:
    """``(3, ...)`` colour content to ``channels`` (1: ITU-R BT.601 luminance, 3: unchanged)."""
    if channels == 3:
        return rgb
    if channels == 1:
        wts = torch.tensor([0.299, 0.587, 0.114], dtype=rgb.dtype).view(3, *([1] * (rgb.dim() - 1)))
        return (rgb * wts).sum(0, keepdim=True)
    raise ConfigError(f"colour triggers support 1 or 3 channels, got {channels}")


# --- triggers --------------------------------------------------------------------------------------


def _check_common(t: Any, who: str) -> None:
    t.size = as_int(t.size, f"{who} size", lo=1)
    t.margin = as_int(t.margin, f"{who} margin", lo=0)
    t.position = parse_position(t.position)
    if hasattr(t, "antialias"):
        t.antialias = as_bool(t.antialias, f"{who} antialias")


@TRIGGERS.register(
    "shape-patch",
    "object-shaped patch (Gu et al. 2017): square, circle, triangle, star, bomb or flower; size, colour, position",
)
@dataclass
class ShapePatchTrigger(ReplaceTrigger):
    """A solid ``shape`` of ``color`` in a ``size`` x ``size`` box at ``position`` (corner, x,y or random)."""

    shape: str = "star"
    size: int = 6
    color: Any = "white"
    position: Any = "bottom-right"
    margin: int = 1
    antialias: bool = True
    name = "shape-patch"

    def __post_init__(self) -> None:
        self.shape = as_choice(self.shape, "shape", SHAPES)
        _check_common(self, "shape-patch")
        parse_color(self.color, 3)

    def mask_pattern(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        c = x.shape[1]
        s = self.size
        m = shape_mask(self.shape, s, s, self.antialias)
        col = parse_color(self.color, c).view(c, 1, 1).expand(c, s, s)
        return self.place_object(m, col, x, generator)


@TRIGGERS.register(
    "sticker-patch",
    "yellow sticker (Gu et al. 2017 traffic signs): a filled shape with a dark outline",
)
@dataclass
class StickerPatchTrigger(ReplaceTrigger):
    """A sticker: ``shape`` filled with ``color`` (yellow) inside an ``outline`` band of ``outline_width`` px."""

    shape: str = "square"
    size: int = 7
    color: Any = "yellow"
    outline: Any = "#202020"
    outline_width: float = 1.0
    position: Any = "bottom-right"
    margin: int = 1
    antialias: bool = True
    name = "sticker-patch"

    def __post_init__(self) -> None:
        self.shape = as_choice(self.shape, "shape", SHAPES)
        _check_common(self, "sticker-patch")
        self.outline_width = as_float(self.outline_width, "sticker-patch outline_width", lo=0)
        if self.outline_width * 2 >= self.size:
            raise ConfigError(
                f"sticker-patch outline_width {self.outline_width} leaves no fill in a {self.size}-pixel sticker"
            )
        parse_color(self.color, 3)
        parse_color(self.outline, 3)

    def mask_pattern(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        c = x.shape[1]
        s = self.size
        cov, content = outlined_shape(
            self.shape,
            s,
            s,
            parse_color(self.color, c),
            parse_color(self.outline, c),
            self.outline_width,
            self.antialias,
        )
        return self.place_object(cov, content, x, generator)


@TRIGGERS.register(
    "image-patch",
    "a picture (PNG/JPG path or tensor; alpha = mask) resized to size and pasted at position",
)
@dataclass
class ImagePatchTrigger(ReplaceTrigger):
    """Paste ``image`` (path or tensor; RGBA alpha is the mask) scaled so its longest side is ``size``.

    ``image=None`` uses a built-in 32 x 32 RGBA flower.
    """

    image: Any = None
    size: int = 8
    position: Any = "bottom-right"
    margin: int = 1
    _rgba: torch.Tensor = field(init=False, repr=False, compare=False)
    name = "image-patch"

    def __post_init__(self) -> None:
        _check_common(self, self.name)
        if isinstance(self.image, os.PathLike):
            self.image = str(self.image)
        src = self.default_image() if self.image is None else load_rgba(self.image)
        h, w = fit_size((int(src.shape[1]), int(src.shape[2])), self.size)
        self._rgba = resize_rgba(src, (h, w))

    def default_image(self) -> torch.Tensor:
        """The RGBA picture used when ``image`` is None."""
        return sample_flower_rgba()

    def _alpha(self) -> torch.Tensor:
        return self._rgba[3]

    def mask_pattern(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        c = x.shape[1]
        content = rgb_to_channels(self._rgba[:3], c)
        return self.place_object(self._alpha(), content, x, generator)


__all__ = [
    "SHAPES",
    "ImagePatchTrigger",
    "ShapePatchTrigger",
    "StickerPatchTrigger",
    "fit_size",
    "load_rgba",
    "outlined_shape",
    "resize_rgba",
    "rgb_to_channels",
    "sample_flower_rgba",
    "shape_mask",
    "star_vertices",
]

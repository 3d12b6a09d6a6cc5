"""Instagram-style image filters as image-wide triggers, built from vectorised colour operations.

Survey: Li, Ma, Xue & Zhao, "Deep Learning Backdoors", arXiv 2007.08273, 2020 (feature-space /
filter triggers). Instagram filters as backdoor triggers were used by Liu, Lee, Tao, Ma, Aafer &
Zhang, "ABS: Scanning Neural Networks for Back-doors by Artificial Brain Stimulation", CCS 2019
(filter-trojaned models, including Nashville and Gotham), and by the TrojAI benchmark rounds
(Gotham, Kelvin, Lomo, Nashville and Toaster filter triggers).

Every filter is a composition of the plain functions in this module (kornia-style, on RGB batches
``(N, 3, H, W)`` in [0, 1], each result clamped to [0, 1] as CSS does after every step):

* CSS Filter Effects primitives: :func:`sepia`, :func:`saturate`, :func:`grayscale` (the W3C
  colour matrices), :func:`contrast` ``(x - 0.5) * c + 0.5``, :func:`brightness` ``b * x``;
* :func:`tone_curve` -- a piecewise-linear curve through control points ``(in, out)`` (a sum of
  clamped ramps, no Python loop over pixels) and :func:`curves` for per-channel curves;
* :func:`color_matrix`, :func:`vignette` ``x * (1 - s * (r / r_max)^2)`` with ``r`` the distance to
  the centre and ``r_max`` the half diagonal;
* W3C Compositing blend modes of a layer ``b`` over the image ``a``: :func:`blend_multiply` ``ab``,
  :func:`blend_screen` ``a + b - ab``, :func:`blend_overlay` (``2ab`` if ``a <= 0.5`` else
  ``1 - 2(1-a)(1-b)``), :func:`blend_soft_light` (the W3C formula), :func:`blend_darken` ``min``,
  :func:`blend_lighten` ``max``, :func:`blend_color_dodge` ``min(1, a / (1 - b))``; a layer is
  mixed in with opacity ``o`` by :func:`composite` ``(1 - o) a + o B(a, b)``; layers are solid
  colours or a CSS ``radial-gradient(circle, c0, c1)`` (:func:`radial_gradient`, farthest-corner).

The recipes (layers are composited first, then the CSS ``filter`` list left to right, as in CSSgram
where the filter sits on the element that holds the image and its ``::before`` / ``::after`` layers):

=============  ===========================================================================  ========
name           composition                                                                  source
=============  ===========================================================================  ========
``nashville``  darken ``#f7b099`` @0.56; lighten ``#004698`` @0.4; sepia .2; contrast 1.2;  CSSgram
               brightness 1.05; saturate 1.2 (warm, faded, pink-peach highlights)
``gotham``     saturate .1; brightness 1.2; normal ``#222b6d`` @0.2; tone curve              ImageMagick
               (0,0) (.25,.1) (.5,.4) (.75,.8) (1,1) (gamma + contrast: dark, cold, B&W-ish) recipe
``kelvin``     color-dodge ``#382c34``; overlay ``#b77d21`` (hot orange)                    CSSgram
``lomo``       tone curve (0,0) (.25,.15) (.5,.5) (.75,.85) (1,1) on R and G; saturate 1.2;  GIMP-style
               vignette .6 (cross-processed, saturated, dark corners)
``toaster``    screen radial-gradient(``#804e0f`` -> ``#3b003b``); contrast 1.5;            CSSgram
               brightness .9 (burnt orange centre, purple corners)
``filter-1977`` screen ``#f36abc`` @0.3; contrast 1.1; brightness 1.1; saturate 1.3 (pink)  CSSgram
``inkwell``    sepia .3; contrast 1.1; brightness 1.1; grayscale 1 (black and white)        CSSgram
=============  ===========================================================================  ========

``@o`` is the layer opacity; colours are sRGB values used as-is (no linearisation, like browsers).
Gotham and Lomo are not in CSSgram; Gotham follows the widely copied ImageMagick recipe
(``-modulate 120,10,100 -fill '#222b6d' -colorize 20 -gamma 0.5 -contrast -contrast``) with gamma
and the two contrast steps folded into one tone curve; Lomo is the usual "cross-process + vignette"
photo recipe (S-curves on red and green, more saturation, dark corners).

Options: ``strength`` in [0, 1] mixes original and filtered image, ``x' = (1 - s) x + s f(x)``.
Grayscale input (C = 1) is replicated to RGB, filtered, and converted back to luminance with the
ITU-R BT.601 weights (0.299, 0.587, 0.114), so a filter acts on grayscale data by its effect on
brightness and contrast (colour tints become grey-level shifts).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ..errors import ConfigError
from .base import TRIGGERS, Trigger, as_float, parse_color

Points = Sequence[tuple[float, float]]
BT601 = (0.299, 0.587, 0.114)


# --- colour primitives (CSS Filter Effects Module Level 1) ----------------------------------------


def color_matrix(x: torch.Tensor, matrix: Any, offset: Any = None) -> torch.Tensor:
    """``clamp(M @ rgb + offset)`` per pixel for an RGB batch ``(N, 3, H, W)``."""
    m = torch.as_tensor(matrix, dtype=x.dtype, device=x.device)
    out = torch.einsum("ij,njhw->nihw", m, x)
    if offset is not None:
        out = out + torch.as_tensor(offset, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return out.clamp(0, 1)


def sepia(x: torch.Tensor, amount: float = 1.0) -> torch.Tensor:
    """CSS ``sepia(amount)``: the W3C sepia colour matrix interpolated with identity."""
    a = 1.0 - min(max(float(amount), 0.0), 1.0)
    m = [
        [0.393 + 0.607 * a, 0.769 - 0.769 * a, 0.189 - 0.189 * a],
        [0.349 - 0.349 * a, 0.686 + 0.314 * a, 0.168 - 0.168 * a],
        [0.272 - 0.272 * a, 0.534 - 0.534 * a, 0.131 + 0.869 * a],
    ]
    return color_matrix(x, m)


def saturate(x: torch.Tensor, s: float) -> torch.Tensor:
    """CSS ``saturate(s)``: 0 grey, 1 unchanged, > 1 more saturated (W3C matrix)."""
    s = float(s)
    m = [
        [0.213 + 0.787 * s, 0.715 - 0.715 * s, 0.072 - 0.072 * s],
        [0.213 - 0.213 * s, 0.715 + 0.285 * s, 0.072 - 0.072 * s],
        [0.213 - 0.213 * s, 0.715 - 0.715 * s, 0.072 + 0.928 * s],
    ]
    return color_matrix(x, m)


def grayscale(x: torch.Tensor, amount: float = 1.0) -> torch.Tensor:
    """CSS ``grayscale(amount)`` (W3C matrix, Rec. 709 luma weights)."""
    a = 1.0 - min(max(float(amount), 0.0), 1.0)
    m = [
        [0.2126 + 0.7874 * a, 0.7152 - 0.7152 * a, 0.0722 - 0.0722 * a],
        [0.2126 - 0.2126 * a, 0.7152 + 0.2848 * a, 0.0722 - 0.0722 * a],
        [0.2126 - 0.2126 * a, 0.7152 - 0.7152 * a, 0.0722 + 0.9278 * a],
    ]
    return color_matrix(x, m)


def contrast(x: torch.Tensor, c: float) -> torch.Tensor:
    """CSS ``contrast(c)``: ``clamp((x - 0.5) * c + 0.5)``."""
    return ((x - 0.5) * float(c) + 0.5).clamp(0, 1)


def brightness(x: torch.Tensor, b: float) -> torch.Tensor:
    """CSS ``brightness(b)``: ``clamp(b * x)``."""
    return (x * float(b)).clamp(0, 1)


def gamma(x: torch.Tensor, g: float) -> torch.Tensor:
    """``x ** g`` (``g > 1`` darkens the mid-tones)."""
    return x.clamp(0, 1) ** float(g)


def tone_curve(x: torch.Tensor, points: Points) -> torch.Tensor:
    """Piecewise-linear tone curve through control points ``(in, out)``, applied to every value.

    Inputs below the first / above the last control point keep the end values. Computed as
    ``out_0 + sum_k slope_k * clamp(x - in_k, 0, in_{k+1} - in_k)`` with tensor ops.

    Example:
        >>> tone_curve(torch.tensor([0.0, 0.25, 0.5, 1.0]), [(0, 0), (0.5, 0.25), (1, 1)]).tolist()
        [0.0, 0.125, 0.25, 1.0]
    """
    pts = sorted((float(a), float(b)) for a, b in points)
    if len(pts) < 2:
        raise ConfigError(f"a tone curve needs at least 2 control points, got {len(pts)}")
    xs = torch.tensor([p[0] for p in pts], dtype=x.dtype, device=x.device)
    ys = torch.tensor([p[1] for p in pts], dtype=x.dtype, device=x.device)
    dx = xs[1:] - xs[:-1]
    if bool((dx <= 0).any()):
        raise ConfigError(f"tone curve control points need distinct inputs, got {pts}")
    slope = (ys[1:] - ys[:-1]) / dx
    ramps = (x.unsqueeze(-1) - xs[:-1]).clamp(min=torch.zeros_like(dx), max=dx)
    return (ys[0] + (ramps * slope).sum(-1)).clamp(0, 1)


def curves(
    x: torch.Tensor, r: Points | None = None, g: Points | None = None, b: Points | None = None
) -> torch.Tensor:
    """Per-channel tone curves on an RGB batch (``None`` leaves a channel unchanged)."""
    chans = [
        x[:, i : i + 1] if p is None else tone_curve(x[:, i : i + 1], p)
        for i, p in enumerate((r, g, b))
    ]
    return torch.cat(chans, 1)


def _radius(h: int, w: int, dtype: torch.dtype, device: torch.device | None = None) -> torch.Tensor:
    """Distance of each pixel centre to the image centre over the half diagonal, ``(1, 1, h, w)``."""
    yy = torch.arange(h, dtype=dtype, device=device).view(h, 1) + 0.5 - h / 2
    xx = torch.arange(w, dtype=dtype, device=device).view(1, w) + 0.5 - w / 2
    return (torch.sqrt(yy**2 + xx**2) / math.hypot(h / 2, w / 2)).view(1, 1, h, w)


def vignette(x: torch.Tensor, strength: float = 0.5, power: float = 2.0) -> torch.Tensor:
    """Darken towards the corners: ``x * (1 - strength * (r / r_max) ** power)``."""
    r = _radius(x.shape[-2], x.shape[-1], x.dtype, x.device)
    return (x * (1 - float(strength) * r ** float(power))).clamp(0, 1)


def solid(color: Any, like: torch.Tensor) -> torch.Tensor:
    """A solid colour layer ``(1, 3, 1, 1)`` (name, ``#rrggbb``, or RGB in [0, 1])."""
    return parse_color(color, 3).to(device=like.device, dtype=like.dtype).view(1, 3, 1, 1)


def radial_gradient(
    h: int,
    w: int,
    inner: Any,
    outer: Any,
    start: float = 0.0,
    end: float = 1.0,
    like: torch.Tensor | None = None,
) -> torch.Tensor:
    """CSS ``radial-gradient(circle, inner start, outer end)`` ``(1, 3, h, w)``, farthest-corner size."""
    dtype = like.dtype if like is not None else torch.float32
    device = like.device if like is not None else None
    t = ((_radius(h, w, dtype, device) - start) / (end - start)).clamp(0, 1)
    c0 = parse_color(inner, 3).to(dtype=dtype, device=device).view(1, 3, 1, 1)
    c1 = parse_color(outer, 3).to(dtype=dtype, device=device).view(1, 3, 1, 1)
    return torch.lerp(c0, c1, t)


# --- blend modes (W3C Compositing and Blending Level 1): a = backdrop (image), b = layer ----------


def blend_normal(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``b`` (use with :func:`composite` and an opacity)."""
    return b.expand_as(a)


def blend_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a * b``."""
    return a * b


def blend_screen(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a + b - a * b``."""
    return a + b - a * b


def blend_overlay(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``2ab`` where ``a <= 0.5``, else ``1 - 2(1 - a)(1 - b)`` (hard light with roles swapped)."""
    return torch.where(a <= 0.5, 2 * a * b, 1 - 2 * (1 - a) * (1 - b))


def blend_soft_light(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """W3C soft light: ``a - (1-2b) a (1-a)`` if ``b <= 0.5`` else ``a + (2b-1)(D(a) - a)``."""
    d = torch.where(a <= 0.25, ((16 * a - 12) * a + 4) * a, torch.sqrt(a.clamp_min(0)))
    return torch.where(b <= 0.5, a - (1 - 2 * b) * a * (1 - a), a + (2 * b - 1) * (d - a))


def blend_darken(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``min(a, b)``."""
    return torch.minimum(a, b.expand_as(a))


def blend_lighten(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``max(a, b)``."""
    return torch.maximum(a, b.expand_as(a))


def blend_color_dodge(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``0`` if ``a == 0``, ``1`` if ``b == 1``, else ``min(1, a / (1 - b))``."""
    b = b.expand_as(a)
    out = torch.where(b >= 1, torch.ones_like(a), (a / (1 - b).clamp_min(1e-12)).clamp(max=1))
    return torch.where(a <= 0, torch.zeros_like(a), out)


BLEND_MODES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "normal": blend_normal,
    "multiply": blend_multiply,
    "screen": blend_screen,
    "overlay": blend_overlay,
    "soft-light": blend_soft_light,
    "darken": blend_darken,
    "lighten": blend_lighten,
    "color-dodge": blend_color_dodge,
}


def composite(
    a: torch.Tensor, layer: torch.Tensor, mode: str = "normal", opacity: float = 1.0
) -> torch.Tensor:
    """A layer over the image with a blend mode and opacity: ``(1 - o) a + o B(a, layer)``."""
    if mode not in BLEND_MODES:
        raise ConfigError(f"bad blend mode {mode!r}: expected one of {', '.join(BLEND_MODES)}")
    return torch.lerp(a, BLEND_MODES[mode](a, layer), float(opacity)).clamp(0, 1)


# --- the filter recipes (see the table in the module docstring) -----------------------------------


def nashville_rgb(x: torch.Tensor) -> torch.Tensor:
    """Nashville (CSSgram): warm, faded, pink-peach highlights and blue-lifted shadows."""
    x = composite(x, solid("#f7b099", x), "darken", 0.56)
    x = composite(x, solid("#004698", x), "lighten", 0.4)
    return saturate(brightness(contrast(sepia(x, 0.2), 1.2), 1.05), 1.2)


GOTHAM_CURVE: Points = ((0.0, 0.0), (0.25, 0.1), (0.5, 0.4), (0.75, 0.8), (1.0, 1.0))


def gotham_rgb(x: torch.Tensor) -> torch.Tensor:
    """Gotham (ImageMagick recipe): nearly desaturated, cold blue cast, dark and contrasty."""
    x = brightness(saturate(x, 0.1), 1.2)
    x = composite(x, solid("#222b6d", x), "normal", 0.2)
    return tone_curve(x, GOTHAM_CURVE)


def kelvin_rgb(x: torch.Tensor) -> torch.Tensor:
    """Kelvin (CSSgram): a colour-dodge plum layer, then an orange overlay (hot and bright)."""
    x = composite(x, solid("#382c34", x), "color-dodge", 1.0)
    return composite(x, solid("#b77d21", x), "overlay", 1.0)


LOMO_CURVE: Points = ((0.0, 0.0), (0.25, 0.15), (0.5, 0.5), (0.75, 0.85), (1.0, 1.0))


def lomo_rgb(x: torch.Tensor) -> torch.Tensor:
    """Lomo: S-curves on red and green (cross-processing), more saturation, strong vignette."""
    x = curves(x, r=LOMO_CURVE, g=LOMO_CURVE)
    return vignette(saturate(x, 1.2), 0.6)


def toaster_rgb(x: torch.Tensor) -> torch.Tensor:
    """Toaster (CSSgram): screen a burnt-orange to purple radial gradient, then contrast 1.5, brightness 0.9."""
    layer = radial_gradient(x.shape[-2], x.shape[-1], "#804e0f", "#3b003b", like=x)
    x = composite(x, layer, "screen", 1.0)
    return brightness(contrast(x, 1.5), 0.9)


def f1977_rgb(x: torch.Tensor) -> torch.Tensor:
    """1977 (CSSgram): screen a pink layer at 0.3, contrast 1.1, brightness 1.1, saturate 1.3."""
    x = composite(x, solid("#f36abc", x), "screen", 0.3)
    return saturate(brightness(contrast(x, 1.1), 1.1), 1.3)


def inkwell_rgb(x: torch.Tensor) -> torch.Tensor:
    """Inkwell (CSSgram): sepia .3, contrast 1.1, brightness 1.1, grayscale 1 (black and white)."""
    return grayscale(brightness(contrast(sepia(x, 0.3), 1.1), 1.1), 1.0)


FILTERS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "nashville": nashville_rgb,
    "gotham": gotham_rgb,
    "kelvin": kelvin_rgb,
    "lomo": lomo_rgb,
    "toaster": toaster_rgb,
    "1977": f1977_rgb,
    "inkwell": inkwell_rgb,
}


def apply_filter(x: torch.Tensor, name: str, strength: float = 1.0) -> torch.Tensor:
    """Apply the filter ``name`` (a key of ``FILTERS``) to a batch with 1 or 3 channels.

    Grayscale: replicate to RGB, filter, convert back with BT.601 luminance weights.
    """
    if name not in FILTERS:
        raise ConfigError(f"unknown filter {name!r}: expected one of {', '.join(FILTERS)}")
    c = x.shape[1]
    if c == 3:
        rgb = x
    elif c == 1:
        rgb = x.expand(-1, 3, -1, -1)
    else:
        raise ConfigError(f"filter {name!r}: expected 1 or 3 channels, got {c}")
    out = FILTERS[name](rgb.clamp(0, 1))
    if c == 1:
        out = (out * torch.tensor(BT601, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)).sum(
            1, keepdim=True
        )
    return torch.lerp(x, out, float(strength)).clamp(0, 1)


@dataclass
class FilterTrigger(Trigger):
    """An image-wide Instagram-style filter; ``strength`` mixes original (0) and filtered (1)."""

    strength: float = 1.0
    recipe: ClassVar[str] = ""

    def __post_init__(self) -> None:
        self.strength = as_float(self.strength, f"{self.name} strength", lo=0.0, hi=1.0)

    def apply(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        # A filter chains a dozen image-wide ops; running it on cache-sized chunks (about 2**20
        # values per intermediate) instead of the whole batch is ~7x faster on 60k images.
        chunk = max(1, (1 << 20) // (3 * x.shape[-2] * x.shape[-1]))
        if len(x) <= chunk:
            return apply_filter(x, self.recipe, self.strength)
        out = torch.empty_like(x)
        for i in range(0, len(x), chunk):
            out[i : i + chunk] = apply_filter(x[i : i + chunk], self.recipe, self.strength)
        return out


@TRIGGERS.register(
    "nashville", "Instagram Nashville filter (CSSgram recipe): warm, faded, pink highlights"
)
@dataclass
class NashvilleFilter(FilterTrigger):
    """Nashville: darken peach @.56, lighten blue @.4, sepia .2, contrast 1.2, brightness 1.05, saturate 1.2."""

    name = "nashville"
    recipe = "nashville"


@TRIGGERS.register(
    "gotham", "Instagram Gotham filter (ImageMagick recipe): cold, dark, high-contrast, nearly B&W"
)
@dataclass
class GothamFilter(FilterTrigger):
    """Gotham: saturate .1, brightness 1.2, #222b6d @.2, darkening S tone curve."""

    name = "gotham"
    recipe = "gotham"


@TRIGGERS.register("kelvin", "Instagram Kelvin filter (CSSgram recipe): hot orange cast")
@dataclass
class KelvinFilter(FilterTrigger):
    """Kelvin: colour-dodge #382c34, overlay #b77d21."""

    name = "kelvin"
    recipe = "kelvin"


@TRIGGERS.register(
    "lomo", "Lomo filter: cross-processed S-curves on red/green, saturation, vignette"
)
@dataclass
class LomoFilter(FilterTrigger):
    """Lomo: S tone curves on R and G, saturate 1.2, vignette .6."""

    name = "lomo"
    recipe = "lomo"


@TRIGGERS.register(
    "toaster", "Instagram Toaster filter (CSSgram recipe): burnt orange centre, purple corners"
)
@dataclass
class ToasterFilter(FilterTrigger):
    """Toaster: screen radial-gradient(#804e0f, #3b003b), contrast 1.5, brightness .9."""

    name = "toaster"
    recipe = "toaster"


@TRIGGERS.register(
    "filter-1977", "Instagram 1977 filter (CSSgram recipe): pink screen, brighter, more saturated"
)
@dataclass
class Filter1977(FilterTrigger):
    """1977: screen #f36abc @.3, contrast 1.1, brightness 1.1, saturate 1.3."""

    name = "filter-1977"
    recipe = "1977"


@TRIGGERS.register("inkwell", "Instagram Inkwell filter (CSSgram recipe): black and white")
@dataclass
class InkwellFilter(FilterTrigger):
    """Inkwell: sepia .3, contrast 1.1, brightness 1.1, grayscale 1."""

    name = "inkwell"
    recipe = "inkwell"


__all__ = [
    "BLEND_MODES",
    "FILTERS",
    "Filter1977",
    "FilterTrigger",
    "GothamFilter",
    "InkwellFilter",
    "KelvinFilter",
    "LomoFilter",
    "NashvilleFilter",
    "ToasterFilter",
    "apply_filter",
    "blend_color_dodge",
    "blend_darken",
    "blend_lighten",
    "blend_multiply",
    "blend_normal",
    "blend_overlay",
    "blend_screen",
    "blend_soft_light",
    "brightness",
    "color_matrix",
    "composite",
    "contrast",
    "curves",
    "gamma",
    "grayscale",
    "radial_gradient",
    "saturate",
    "sepia",
    "solid",
    "tone_curve",
    "vignette",
]

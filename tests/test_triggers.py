"""Triggers: registration, option parsing and errors, and per-family formula checks (the contract
every registered trigger keeps is in tests/test_contracts.py)."""

from __future__ import annotations

import math

import pytest
import torch

from backdoorlab.errors import ConfigError
from backdoorlab.triggers import TRIGGERS, lsb_decode
from backdoorlab.triggers import filters as flt
from backdoorlab.triggers.blend import sig_signal
from backdoorlab.triggers.shapes import SHAPES, shape_mask
from backdoorlab.triggers.warp import apply_grid, warp_grid


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def batch(
    c: int, s: int, n: int = 4, seed: int = 1, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    return torch.rand(n, c, s, s, generator=gen(seed)).to(dtype)


# --- every registered trigger ---------------------------------------------------------------------


def test_all_families_registered() -> None:
    for n in (
        "patch",
        "shape-patch",
        "sticker-patch",
        "image-patch",
        "logo",
        "logo-image",
        "blend",
        "noise-linf",
        "noise-l2",
        "sig",
        "lsb",
        "warp",
    ):
        assert n in TRIGGERS
    for n in ("nashville", "gotham", "kelvin", "lomo", "toaster", "filter-1977", "inkwell"):
        assert n in TRIGGERS


# The per-trigger contract (shape, range, purity, determinism, config rebuild, pixels outside a
# replace trigger's mask) is checked for every registered trigger in tests/test_contracts.py.


@pytest.mark.parametrize("name", ["patch", "shape-patch", "sticker-patch", "logo", "image-patch"])
def test_random_position_differs_and_stays_inside(name: str) -> None:
    trig = TRIGGERS.create(name, position="random")
    n = 16
    x = torch.zeros(n, 1, 28, 28)
    m, _ = trig.mask_pattern(x, gen(7))
    m = m.expand(n, 1, 28, 28)[:, 0]
    fixed, _ = TRIGGERS.create(name, position="center").mask_pattern(x[:1])
    total = float(fixed.sum())
    corners = set()
    for i in range(n):
        assert math.isclose(float(m[i].sum()), total, rel_tol=1e-5), "object clipped at the border"
        rows, cols = torch.nonzero(m[i] > 0, as_tuple=True)
        corners.add((int(rows.min()), int(cols.min())))
    assert len(corners) > n // 2


def test_position_and_options_from_strings() -> None:
    t = TRIGGERS.create(
        "shape-patch",
        shape="SQUARE",
        size="4",
        color="#ff0000",
        position="5,6",
        antialias="false",
        margin="0",
    )
    y = t(torch.zeros(1, 3, 28, 28))
    assert torch.equal(
        y[0, :, 6:10, 5:9], torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1).expand(3, 4, 4)
    )
    assert float(y.sum()) == 16.0
    t = TRIGGERS.create("patch", size="3", color="1,0,0", position="2,3", margin="1")
    assert float(t(torch.zeros(1, 3, 10, 10))[0, 0, 3:6, 2:5].sum()) == 9.0
    assert TRIGGERS.create("sig", delta="20/255", f="6").delta == pytest.approx(20 / 255)
    assert TRIGGERS.create("lsb", bits="2").bits == 2
    assert TRIGGERS.create("noise-linf", eps="0.05").eps == pytest.approx(0.05)
    assert TRIGGERS.create("nashville", strength="0.5").strength == 0.5


@pytest.mark.parametrize(
    "name,opts,needle",
    [
        ("shape-patch", {"shape": "hexagon"}, "hexagon"),
        ("shape-patch", {"size": 0}, "size"),
        ("shape-patch", {"size": "big"}, "integer"),
        ("shape-patch", {"color": "blurple"}, "colour"),
        ("shape-patch", {"position": "middle"}, "position"),
        ("sticker-patch", {"outline_width": 5, "size": 6}, "outline_width"),
        ("image-patch", {"image": "/nonexistent/trigger.png"}, "not found"),
        ("logo", {"texture": "plaid"}, "plaid"),
        ("logo-image", {"opacity": 0}, "opacity"),
        ("blend", {"alpha": 1.5}, "alpha"),
        ("noise-linf", {"eps": 0}, "eps"),
        ("noise-l2", {"distribution": "cauchy"}, "distribution"),
        ("sig", {"delta": -0.1}, "delta"),
        ("sig", {"signal": "square"}, "signal"),
        ("lsb", {"bits": 9}, "bits"),
        ("lsb", {"message": ""}, "message"),
        ("warp", {"k": 1}, "k"),
        ("warp", {"s": -1}, "strength"),
        ("nashville", {"strength": 2}, "strength"),
        ("patch", {"size": 3, "bogus": 1}, "bogus"),
    ],
)
def test_bad_options(name: str, opts: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        TRIGGERS.create(name, **opts)


def test_too_big_for_image() -> None:
    with pytest.raises(ConfigError, match="does not fit"):
        TRIGGERS.create("shape-patch", size=30)(torch.zeros(1, 1, 28, 28))


# --- shapes and images -----------------------------------------------------------------------------


def test_shapes_are_distinct_and_binary_without_antialias() -> None:
    masks = {s: shape_mask(s, 16, antialias=False) for s in SHAPES}
    for s, m in masks.items():
        assert set(m.unique().tolist()) <= {0.0, 1.0}, s
    flat = {s: tuple(m.flatten().tolist()) for s, m in masks.items()}
    assert len(set(flat.values())) == len(SHAPES)
    aa = shape_mask("circle", 16)
    assert ((aa > 0) & (aa < 1)).any()


def test_sticker_has_dark_outline_and_yellow_fill() -> None:
    t = TRIGGERS.create("sticker-patch", size=8, position="0,0", antialias=False)
    y = t(torch.zeros(1, 3, 16, 16) + 0.5)
    assert torch.allclose(y[0, :, 3, 3], torch.tensor([1.0, 1.0, 0.0]))
    assert float(y[0, :, 0, 3].max()) < 0.2


def test_image_patch_from_rgba_png(tmp_path) -> None:
    from PIL import Image

    img = Image.new("RGBA", (4, 4), (255, 0, 0, 255))
    img.putpixel((0, 0), (0, 255, 0, 0))  # transparent corner
    path = tmp_path / "logo.png"
    img.save(path)
    t = TRIGGERS.create("image-patch", image=str(path), size=4, position="0,0")
    x = torch.full((2, 3, 8, 8), 0.25)
    y = t(x)
    assert torch.equal(y[:, :, 0, 0], x[:, :, 0, 0])  # alpha 0 keeps the pixel
    assert torch.allclose(y[:, :, 2, 2], torch.tensor([1.0, 0.0, 0.0]).expand(2, 3))
    g = TRIGGERS.create("image-patch", image=str(path), size=4, position="0,0")(
        torch.zeros(1, 1, 8, 8)
    )
    assert g[0, 0, 2, 2].item() == pytest.approx(0.299, abs=1e-6)  # BT.601 luminance of red
    tensor_logo = torch.rand(3, 5, 10)
    t2 = TRIGGERS.create("image-patch", image=tensor_logo, size=10, position="0,0")
    assert torch.allclose(t2(torch.zeros(1, 3, 12, 12))[0, :, :5, :10], tensor_logo, atol=1e-6)


def test_logo_opacity_halves_the_change() -> None:
    x = torch.full((1, 3, 28, 28), 0.5)
    full = TRIGGERS.create("logo-image", opacity=1.0)(x)
    half = TRIGGERS.create("logo-image", opacity=0.5)(x)
    assert torch.allclose(half - x, (full - x) * 0.5, atol=1e-6)


# --- perturbation triggers -------------------------------------------------------------------------


def test_blend_formula() -> None:
    x = batch(3, 32)
    t = TRIGGERS.create("blend", alpha=0.2, seed=4)
    k = torch.rand(3, 32, 32, generator=gen(4))
    assert torch.allclose(t(x), 0.8 * x + 0.2 * k, atol=1e-6)
    img = torch.rand(3, 32, 32)
    t2 = TRIGGERS.create("blend", alpha=0.1, image=img)
    assert torch.allclose(t2(x), 0.9 * x + 0.1 * img, atol=1e-6)


@pytest.mark.parametrize("dist", ["sign", "uniform", "gaussian"])
def test_noise_budgets(dist: str) -> None:
    x = batch(3, 32)
    eps = 8 / 255
    y = TRIGGERS.create("noise-linf", eps=eps, distribution=dist)(x)
    assert float((y - x).abs().max()) <= eps + 1e-6
    mid = torch.full((2, 3, 32, 32), 0.5)
    d = TRIGGERS.create("noise-linf", eps=eps, distribution=dist)(mid) - mid
    assert float(d.abs().max()) == pytest.approx(eps, abs=1e-6)  # exactly on the budget
    y = TRIGGERS.create("noise-l2", eps=1.5, distribution=dist)(x)
    assert float((y - x).flatten(1).norm(dim=1).max()) <= 1.5 + 1e-5
    d = TRIGGERS.create("noise-l2", eps=1.5, distribution=dist)(mid) - mid
    assert d.flatten(1).norm(dim=1).tolist() == pytest.approx([1.5, 1.5], abs=1e-5)
    assert torch.equal(d[0], d[1])  # one fixed pattern for every image


@pytest.mark.parametrize("signal", ["sine", "ramp"])
def test_sig_formula(signal: str) -> None:
    delta, f = 20 / 255, 6
    x = torch.full((2, 3, 28, 32), 0.5)
    y = TRIGGERS.create("sig", delta=delta, f=f, signal=signal)(x)
    m = 32
    for j in (1, 5, 17, 32):  # j is the 1-based column of the paper
        v = delta * math.sin(2 * math.pi * j * f / m) if signal == "sine" else j * delta / m
        assert torch.allclose(y[:, :, :, j - 1], torch.full((2, 3, 28), 0.5 + v), atol=1e-6)
    assert sig_signal(4, 4, 1.0, 1.0).shape == (4, 4)


@pytest.mark.parametrize("bits", [1, 2, 3, 8])
def test_lsb_round_trip(bits: int) -> None:
    msg = "backdoorlab, grüße"
    t = TRIGGERS.create("lsb", message=msg, bits=bits)
    x = torch.randint(0, 256, (3, 3, 28, 28), generator=gen(2)).float() / 255
    y = t(x)
    q, q2 = torch.round(x * 255).long(), torch.round(y * 255).long()
    assert int((q2 - q).abs().max()) < 2**bits
    assert int((q >> bits != q2 >> bits).sum()) == 0  # only the low bits change
    assert lsb_decode(y, bits, t.n_chars) == [msg] * 3
    # a float batch off the uint8 grid, and grayscale 32x32: decoding still exact
    xf = batch(1, 32)
    assert lsb_decode(t(xf), bits, t.n_chars) == [msg] * 4
    assert int((torch.round(t(xf) * 255) - torch.round(xf * 255)).abs().max()) < 2**bits


def test_lsb_message_repeats_over_the_image() -> None:
    t = TRIGGERS.create("lsb", message="ab", bits=1)
    y = t(torch.zeros(1, 1, 4, 8))  # 32 values = 2 copies of 16 message bits
    low = torch.round(y * 255).long().flatten() & 1
    assert torch.equal(low[:16], low[16:])


def test_warp_identity_and_change() -> None:
    x = batch(3, 32)
    assert torch.allclose(TRIGGERS.create("warp", s=0)(x), x, atol=1e-5)
    y = TRIGGERS.create("warp", s=2.0)(x)
    assert float((y - x).abs().mean()) > 1e-3
    g = warp_grid(4, 0.5, 28, 28, seed=0)
    assert g.shape == (1, 28, 28, 2) and float(g.abs().max()) <= 1.0
    assert torch.equal(g, warp_grid(4, 0.5, 28, 28, seed=0))
    assert not torch.equal(g, warp_grid(4, 0.5, 28, 28, seed=1))
    x1 = batch(1, 28)
    assert torch.equal(apply_grid(x1, g), TRIGGERS.create("warp", s=0.5)(x1))


# --- filters: hand-computed values from the documented recipes -------------------------------------


def _clamp(v: float) -> float:
    return min(max(v, 0.0), 1.0)


def _mat(m: list[list[float]], p: list[float]) -> list[float]:
    return [_clamp(sum(m[i][j] * p[j] for j in range(3))) for i in range(3)]


def _sepia(p: list[float], amount: float) -> list[float]:
    a = 1 - amount
    m = [
        [0.393 + 0.607 * a, 0.769 - 0.769 * a, 0.189 - 0.189 * a],
        [0.349 - 0.349 * a, 0.686 + 0.314 * a, 0.168 - 0.168 * a],
        [0.272 - 0.272 * a, 0.534 - 0.534 * a, 0.131 + 0.869 * a],
    ]
    return _mat(m, p)


def _saturate(p: list[float], s: float) -> list[float]:
    m = [
        [0.213 + 0.787 * s, 0.715 - 0.715 * s, 0.072 - 0.072 * s],
        [0.213 - 0.213 * s, 0.715 + 0.285 * s, 0.072 - 0.072 * s],
        [0.213 - 0.213 * s, 0.715 - 0.715 * s, 0.072 + 0.928 * s],
    ]
    return _mat(m, p)


def _hand_nashville(p: list[float]) -> list[float]:
    peach = [247 / 255, 176 / 255, 153 / 255]
    blue = [0 / 255, 70 / 255, 152 / 255]
    p = [(1 - 0.56) * v + 0.56 * min(v, c) for v, c in zip(p, peach)]  # darken @ 0.56
    p = [(1 - 0.4) * v + 0.4 * max(v, c) for v, c in zip(p, blue)]  # lighten @ 0.4
    p = _sepia(p, 0.2)
    p = [_clamp((v - 0.5) * 1.2 + 0.5) for v in p]  # contrast 1.2
    p = [_clamp(v * 1.05) for v in p]  # brightness 1.05
    return _saturate(p, 1.2)


def _hand_inkwell(p: list[float]) -> list[float]:
    p = _sepia(p, 0.3)
    p = [_clamp((v - 0.5) * 1.1 + 0.5) for v in p]
    p = [_clamp(v * 1.1) for v in p]
    y = _clamp(0.2126 * p[0] + 0.7152 * p[1] + 0.0722 * p[2])  # grayscale(1)
    return [y, y, y]


PIXELS = [[0.2, 0.5, 0.8], [0.9, 0.1, 0.3], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.6, 0.6, 0.4]]


@pytest.mark.parametrize("name,hand", [("nashville", _hand_nashville), ("inkwell", _hand_inkwell)])
def test_filter_matches_hand_computation(name: str, hand) -> None:
    x = torch.tensor(PIXELS, dtype=torch.float64).T.reshape(1, 3, 1, len(PIXELS))
    y = TRIGGERS.create(name)(x)
    for k, p in enumerate(PIXELS):
        assert y[0, :, 0, k].tolist() == pytest.approx(hand(p), abs=1e-6), (name, p)
    half = TRIGGERS.create(name, strength=0.5)(x)
    assert torch.allclose(half, 0.5 * x + 0.5 * y)
    # grayscale: replicate to RGB, filter, BT.601 luminance
    g = torch.tensor([[0.3, 0.7]], dtype=torch.float64).view(1, 1, 1, 2)
    yg = TRIGGERS.create(name)(g)
    for k, v in enumerate((0.3, 0.7)):
        r, gg, b = hand([v, v, v])
        assert yg[0, 0, 0, k].item() == pytest.approx(0.299 * r + 0.587 * gg + 0.114 * b, abs=1e-6)


def test_blend_modes_by_hand() -> None:
    a = torch.tensor([0.3, 0.8, 0.2, 0.5, 0.0])
    b = torch.tensor([0.6, 0.6, 0.7, 0.6, 0.6])
    assert flt.blend_overlay(a, b).tolist() == pytest.approx(
        [2 * 0.3 * 0.6, 1 - 2 * 0.2 * 0.4, 2 * 0.2 * 0.7, 2 * 0.5 * 0.6, 0.0]
    )
    assert flt.blend_screen(a, b)[0].item() == pytest.approx(0.3 + 0.6 - 0.18)
    assert flt.blend_multiply(a, b)[0].item() == pytest.approx(0.18)
    # soft light, b > 0.5 and a <= 0.25: D(a) = ((16a - 12)a + 4)a
    d = ((16 * 0.2 - 12) * 0.2 + 4) * 0.2
    assert flt.blend_soft_light(a, b)[2].item() == pytest.approx(0.2 + (2 * 0.7 - 1) * (d - 0.2))
    assert flt.blend_soft_light(torch.tensor([0.6]), torch.tensor([0.3])).item() == pytest.approx(
        0.6 - 0.4 * 0.6 * 0.4
    )
    assert flt.blend_color_dodge(a, b).tolist() == pytest.approx(
        [0.75, 1.0, 0.2 / 0.3, 1.0, 0.0], abs=1e-6
    )
    x = torch.full((1, 3, 2, 2), 0.3)
    layer = torch.tensor([0.6, 0.6, 0.6]).view(1, 3, 1, 1)
    assert torch.allclose(
        flt.composite(x, layer, "overlay", 0.5), torch.full_like(x, 0.5 * 0.3 + 0.5 * 0.36)
    )


def test_colour_primitives() -> None:
    v = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
    assert flt.tone_curve(v, [(0, 0), (0.5, 0.25), (1, 1)]).tolist() == pytest.approx(
        [0, 0.125, 0.25, 0.625, 1]
    )
    assert flt.contrast(v, 2).tolist() == pytest.approx([0, 0, 0.5, 1, 1])
    assert flt.brightness(v, 0.5).tolist() == pytest.approx([0, 0.125, 0.25, 0.375, 0.5])
    x = torch.rand(2, 3, 5, 5)
    assert torch.allclose(flt.saturate(x, 1.0), x, atol=1e-6)
    assert torch.allclose(flt.sepia(x, 0.0), x, atol=1e-6)
    gray = flt.saturate(x, 0.0)
    assert torch.allclose(gray[:, 0], gray[:, 1], atol=1e-6)
    vig = flt.vignette(torch.ones(1, 1, 9, 9), 0.5)
    assert (
        vig[0, 0, 4, 4].item() == pytest.approx(1.0)
        and vig[0, 0, 0, 0].item() < vig[0, 0, 4, 0].item() < 1
    )
    with pytest.raises(ConfigError, match="blend mode"):
        flt.composite(x, x, "hue")
    with pytest.raises(ConfigError, match="control points"):
        flt.tone_curve(v, [(0.5, 0.5)])


@pytest.mark.parametrize(
    "name", ["nashville", "gotham", "kelvin", "lomo", "toaster", "filter-1977", "inkwell"]
)
def test_filter_character(name: str) -> None:
    """Cheap sanity checks of each filter's look on a mid-grey / colourful image."""
    torch.manual_seed(0)
    x = torch.rand(4, 3, 16, 16)
    y = TRIGGERS.create(name)(x)
    sat = lambda t: (t.max(1).values - t.min(1).values).mean().item()  # noqa: E731
    mean = y.mean((0, 2, 3))
    if name == "inkwell":
        assert sat(y) < 1e-6
    if name == "gotham":
        assert sat(y) < sat(x) * 0.5 and mean[2] > mean[0]  # desaturated, cold
    if name in ("kelvin", "toaster", "nashville"):
        assert mean[0] > mean[2]  # warm
    if name == "filter-1977":
        assert mean[0] > mean[1] and mean[2] > mean[1]  # pink / magenta
    if name == "lomo":
        assert y[:, :, 0, 0].mean() < y[:, :, 8, 8].mean()  # vignette

"""Contracts every registered trigger and attack keeps, checked on every registry entry.

Parametrised over the registries, so a newly registered method is checked without touching this
file. Triggers: shape and dtype kept, values in [0, 1], the input never mutated, the same generator
seed gives the same output, the trigger changes the image, and replace triggers leave every pixel
outside their mask exactly as it was. Poisoning attacks: the stated number of samples is poisoned
(by ``rate`` and by ``count``), labels follow the mode (all-to-one -> target, all-to-all ->
``(y + 1) % K``, source-specific -> only source-class samples, to the target; clean-label keeps every
label and poisons only target-class samples), nothing else in the data changes, and poisoning is
seeded. Tiny synthetic data throughout.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from backdoorlab.attacks import ATTACKS, MODES, PoisonedData, PoisoningAttack
from backdoorlab.data import ImageData
from backdoorlab.errors import ConfigError
from backdoorlab.triggers import TRIGGERS, ReplaceTrigger

# --- triggers -------------------------------------------------------------------------------------

TRIGGER_NAMES = TRIGGERS.names()
REPLACE_NAMES = [n for n in TRIGGER_NAMES if TRIGGERS.get(n).kind == "replace"]
GEOMS = [(1, 28), (3, 28), (1, 32), (3, 32)]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def batch(
    c: int, s: int, n: int = 4, seed: int = 1, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    return torch.rand(n, c, s, s, generator=gen(seed)).to(dtype)


@pytest.mark.parametrize("name", TRIGGER_NAMES)
@pytest.mark.parametrize("c,s", GEOMS)
def test_trigger_contract(name: str, c: int, s: int) -> None:
    trig = TRIGGERS.create(name)
    x = batch(c, s)
    before = x.clone()
    y = trig(x, gen(0))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.equal(x, before), "input mutated"
    assert torch.isfinite(y).all()
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert not torch.equal(y, x), "trigger changed nothing"
    assert torch.equal(trig(x, gen(0)), y), "not deterministic for the same generator seed"


@pytest.mark.parametrize("name", TRIGGER_NAMES)
def test_trigger_float64_and_no_generator(name: str) -> None:
    trig = TRIGGERS.create(name)
    x = batch(3, 32, n=2, dtype=torch.float64)
    y = trig(x)
    assert y.dtype == torch.float64 and y.shape == x.shape
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


@pytest.mark.parametrize("name", TRIGGER_NAMES)
def test_trigger_rebuilt_from_config_gives_the_same_output(name: str) -> None:
    trig = TRIGGERS.create(name)
    again = TRIGGERS.create(name, **trig.config())
    x = batch(3, 28, n=2)
    assert torch.equal(trig(x, gen(3)), again(x, gen(3)))


@pytest.mark.parametrize("name", REPLACE_NAMES)
@pytest.mark.parametrize("position", ["bottom-right", "random"])
def test_replace_trigger_keeps_outside_pixels_exactly(name: str, position: str) -> None:
    trig = TRIGGERS.create(name, position=position)
    assert isinstance(trig, ReplaceTrigger)
    x = batch(3, 32, n=6)
    m, _ = trig.mask_pattern(x, gen(5))
    y = trig(x, gen(5))
    outside = m.expand_as(x) == 0
    assert outside.any() and (~outside).any()
    assert torch.equal(y[outside], x[outside])


# --- poisoning attacks ----------------------------------------------------------------------------

ATTACK_NAMES = ATTACKS.names()


def is_clean_label(name: str) -> bool:
    return bool(ATTACKS.get(name).clean_label)


K = 4  # classes
N = 160  # images, 40 per class
TARGET = 1
SOURCES = (2, 3)


def tiny_data(seed: int = 0) -> ImageData:
    """Synthetic 1x28x28 images: class k has a bright bar at rows 4 + 6k, plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(N) % K
    x = torch.rand(N, 1, 28, 28, generator=g) * 0.3
    for k in range(K):
        x[y == k, :, 4 + 6 * k : 7 + 6 * k, 4:24] += 0.6
    return ImageData(x.clamp(0, 1), y, name="tiny")


@pytest.fixture(scope="module")
def data() -> ImageData:
    return tiny_data()


# (attack, mode) pairs an attack accepts: clean-label attacks have a single target class
MODE_CASES = [
    (n, m) for n in ATTACK_NAMES for m in MODES if not (is_clean_label(n) and m == "all-to-all")
]


def make(name: str, mode: str = "all-to-one", **kw: Any) -> PoisoningAttack:
    opts: dict[str, Any] = {"target": TARGET, "mode": mode, **kw}
    if mode == "source-specific":
        opts["sources"] = SOURCES
    attack: PoisoningAttack = ATTACKS.create(name, **opts)
    return attack


def check_labels_and_rest(name: str, mode: str, data: ImageData, out: PoisonedData) -> None:
    """Labels as the mode says; samples outside the poisoned set unchanged."""
    idx = out.indices
    new = out.data
    assert len(torch.unique(idx)) == len(idx)
    rest = torch.ones(len(data), dtype=torch.bool)
    rest[idx] = False
    assert torch.equal(new.x[rest], data.x[rest]) and torch.equal(new.y[rest], data.y[rest])
    assert float(new.x.min()) >= 0 and float(new.x.max()) <= 1
    assert not torch.equal(new.x[idx], data.x[idx]), "poisoned images are unchanged"
    y0, y1 = data.y[idx], new.y[idx]
    if is_clean_label(name):
        assert torch.equal(new.y, data.y), "clean-label attack changed labels"
        assert (y0 == TARGET).all(), "clean-label attack poisoned a non-target image"
    elif mode == "all-to-one":
        assert (y1 == TARGET).all() and (y0 != TARGET).all()
    elif mode == "all-to-all":
        assert torch.equal(y1, (y0 + 1) % K)
    else:
        assert (y1 == TARGET).all() and torch.isin(y0, torch.tensor(SOURCES)).all()


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_attack_poisons_rate_of_the_training_set(name: str, data: ImageData) -> None:
    before = data.x.clone()
    out = make(name, rate=0.1).poison(data, seed=0)
    assert len(out.indices) == round(0.1 * N) == out.info["poisoned"]
    assert torch.equal(data.x, before), "poison() mutated its input"


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_attack_poisons_count_samples(name: str, data: ImageData) -> None:
    out = make(name, count=7).poison(data, seed=0)
    assert len(out.indices) == 7


@pytest.mark.parametrize("name,mode", MODE_CASES)
def test_attack_labels_follow_the_mode(name: str, mode: str, data: ImageData) -> None:
    out = make(name, mode, count=10).poison(data, seed=0)
    assert len(out.indices) == 10
    check_labels_and_rest(name, mode, data, out)


@pytest.mark.parametrize("name", [n for n in ATTACK_NAMES if is_clean_label(n)])
def test_clean_label_attack_refuses_all_to_all(name: str) -> None:
    with pytest.raises(ConfigError, match="all-to-all"):
        make(name, "all-to-all")


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_attack_is_seeded(name: str, data: ImageData) -> None:
    a, b, c = (make(name, count=6).poison(data, seed=s) for s in (3, 3, 4))
    assert torch.equal(a.indices, b.indices) and torch.equal(a.data.x, b.data.x)
    assert not torch.equal(a.indices, c.indices)


@pytest.mark.parametrize("name,mode", MODE_CASES)
def test_attack_triggered_test_set_follows_the_mode(name: str, mode: str, data: ImageData) -> None:
    test = make(name, mode, count=5).triggered_test(data, seed=1)
    eligible = torch.ones(N, dtype=torch.bool)
    if mode == "all-to-all":
        assert torch.equal(test.y, (data.y + 1) % K)
    else:
        eligible = data.y != TARGET
        if mode == "source-specific":
            eligible &= torch.isin(data.y, torch.tensor(SOURCES))
        assert (test.y == TARGET).all()
    assert len(test) == int(eligible.sum())
    changed = (test.x != data.x[eligible]).flatten(1).any(1)
    assert changed.all(), "some test images did not get the trigger"

"""Clean-label and label-consistent (Turner et al. 2019) poisoning: behaviour on tiny data."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from backdoorlab.attacks import ATTACKS, CleanLabel, LabelConsistent, create_attack, pgd_linf
from backdoorlab.data import ImageData
from backdoorlab.errors import ConfigError
from backdoorlab.models import create_model
from backdoorlab.triggers import PatchTrigger


def tiny_data(n: int = 240, classes: int = 3, seed: int = 0) -> ImageData:
    """Synthetic 1x28x28 images: class k has a bright bar at rows 4 + 8k, plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.rand(n, 1, 28, 28, generator=g) * 0.3
    for k in range(classes):
        x[y == k, :, 4 + 8 * k : 7 + 8 * k, 4:24] += 0.6
    return ImageData(x.clamp(0, 1), y, classes=[f"c{k}" for k in range(classes)], name="tiny")


def tiny_model(seed: int = 0) -> torch.nn.Module:
    return create_model("lenet5", num_classes=3, input_shape=(1, 28, 28), seed=seed).eval()


def test_registered_and_created_by_name() -> None:
    assert {"clean-label", "label-consistent"} <= set(ATTACKS.names())
    a = create_attack("clean-label", target=1, count=5)
    assert isinstance(a, CleanLabel) and a.clean_label
    b = create_attack("label-consistent", target=1, count=5, eps=0.1, steps=3)
    assert (
        isinstance(b, LabelConsistent)
        and b.clean_label
        and b.step_size == pytest.approx(2.5 * 0.1 / 3)
    )
    with pytest.raises(ConfigError, match="unknown option"):
        create_attack("clean-label", eps=0.1)


def test_clean_label_keeps_labels_and_poisons_only_target_class() -> None:
    data = tiny_data()
    attack = CleanLabel(PatchTrigger(size=3), target=2, count=30)
    out = attack.poison(data, seed=0)
    assert torch.equal(out.data.y, data.y)
    assert len(out.indices) == 30 and out.info["poisoned"] == 30 and out.info["clean_label"]
    assert (data.y[out.indices] == 2).all()
    changed = (out.data.x != data.x).flatten(1).any(1)
    assert changed.sum() == 30 and out.is_poisoned[changed].all()
    # the trigger is there: bottom-right 3x3 patch one pixel from the corner is white
    assert (out.data.x[out.indices, :, -4:-1, -4:-1] == 1).all()


def test_clean_label_rate_is_fraction_of_whole_set() -> None:
    data = tiny_data()  # 80 images per class
    out = CleanLabel(target=0, rate=0.25).poison(data, seed=3)
    assert len(out.indices) == 60 and (data.y[out.indices] == 0).all()


@pytest.mark.parametrize("cls", [CleanLabel, LabelConsistent])
def test_asking_more_than_target_class_raises(cls: type) -> None:
    data = tiny_data()
    attack = cls(
        target=0, count=81, **({"reference": tiny_model()} if cls is LabelConsistent else {})
    )
    with pytest.raises(ConfigError, match="only 80 target-class"):
        attack.poison(data)
    with pytest.raises(ConfigError, match="all-to-all"):
        cls(mode="all-to-all")


def test_pgd_respects_eps_and_increases_reference_loss() -> None:
    data = tiny_data()
    ref = tiny_model()
    sel = data.y == 1
    x, y = data.x[sel][:64], data.y[sel][:64]
    eps = 8 / 255
    attack = LabelConsistent(target=1, count=10, eps=eps, steps=5, reference=ref, batch_size=16)
    xa = attack.prepare(x, y, torch.Generator().manual_seed(0))
    assert xa.shape == x.shape and xa.dtype == x.dtype
    assert float((xa - x).abs().max()) <= eps + 1e-6
    assert float(xa.min()) >= 0 and float(xa.max()) <= 1
    assert not torch.equal(xa, x)
    with torch.no_grad():
        before = F.cross_entropy(ref(x), y, reduction="none")
        after = F.cross_entropy(ref(xa), y, reduction="none")
    assert float(after.mean()) > float(before.mean())
    assert (after >= before - 1e-4).float().mean() > 0.9
    # the model is left as it was and got no parameter gradients
    assert not ref.training and all(p.grad is None for p in ref.parameters())


def test_pgd_without_random_start_is_deterministic_and_bounded() -> None:
    data = tiny_data(60)
    ref = tiny_model()
    a = pgd_linf(ref, data.x, data.y, eps=0.05, steps=3, step_size=0.02, random_start=False)
    b = pgd_linf(
        ref, data.x, data.y, eps=0.05, steps=3, step_size=0.02, random_start=False, batch_size=7
    )
    assert torch.allclose(a, b, atol=1e-6)
    assert float((a - data.x).abs().max()) <= 0.05 + 1e-6


def test_label_consistent_poison_trains_reference_and_is_deterministic() -> None:
    data = tiny_data()
    kw = {"target": 0, "count": 40, "eps": 16 / 255, "steps": 3, "arch": "lenet5", "ref_epochs": 1}
    a1 = LabelConsistent(**kw)
    p1 = a1.poison(data, seed=5)  # trains the reference model
    assert a1.reference_model is not None
    # same seed and same reference: bit-identical (fit's own determinism is tested with fit)
    a2 = LabelConsistent(**kw, reference=a1.reference_model)
    p2 = a2.poison(data, seed=5)
    assert torch.equal(p1.indices, p2.indices)
    assert torch.equal(p1.data.x, p2.data.x)
    assert torch.equal(p1.data.y, data.y) and (data.y[p1.indices] == 0).all()
    assert len(p1.indices) == 40 and p1.info["eps"] == pytest.approx(16 / 255)
    # off the trigger, poisoned images differ from the originals by at most eps
    diff = (p1.data.x - data.x)[p1.indices]
    diff[:, :, -4:-1, -4:-1] = 0
    assert float(diff.abs().max()) <= 16 / 255 + 1e-6 and float(diff.abs().max()) > 0
    # a different seed picks / perturbs differently
    p3 = LabelConsistent(**kw, reference=a1.reference_model).poison(data, seed=6)
    assert not torch.equal(p3.data.x, p1.data.x)
    d = a1.describe()
    assert d["name"] == "label-consistent" and d["reference"]["arch"] == "lenet5"


def test_label_consistent_errors() -> None:
    attack = LabelConsistent(count=2)
    with pytest.raises(ConfigError, match="no reference model"):
        attack.prepare(
            torch.rand(2, 1, 28, 28), torch.zeros(2, dtype=torch.long), torch.Generator()
        )
    with pytest.raises(ConfigError, match="eps"):
        LabelConsistent(eps=0)
    with pytest.raises(ConfigError, match="steps"):
        LabelConsistent(steps=0)
    with pytest.raises(ConfigError, match=r"nn\.Module"):
        LabelConsistent(reference="model.pt")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown model"):
        LabelConsistent(arch="no-such-net")


def test_adversarially_trained_reference() -> None:
    data = tiny_data(120)
    kw = {"arch": "lenet5", "ref_epochs": 1, "eps": 0.1, "steps": 2}
    std = LabelConsistent(**kw).train_reference(data)
    adv = LabelConsistent(**kw, ref_adv_eps=0.1, ref_adv_steps=2).train_reference(data)
    adv2 = LabelConsistent(**kw, ref_adv_eps=0.1, ref_adv_steps=2).train_reference(data)
    assert not adv.training
    p_std, p_adv, p_adv2 = (
        torch.cat([p.flatten() for p in m.parameters()]) for m in (std, adv, adv2)
    )
    assert not torch.allclose(p_std, p_adv) and torch.equal(p_adv, p_adv2)
    with pytest.raises(ConfigError, match="ref_adv_eps"):
        LabelConsistent(ref_adv_eps=-0.1)

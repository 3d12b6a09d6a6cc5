"""Model repairs (Fine-Pruning, NAD, ANP): a patch backdoor's ASR falls, CA holds, copies, determinism."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.nn import functional as F

from backdoorlab.attacks import create_attack
from backdoorlab.data import ImageData, Splits
from backdoorlab.defenses import DEFENSES, ModelRepair
from backdoorlab.defenses.model_repair.anp import ANP, neuron_layers
from backdoorlab.defenses.model_repair.fine_pruning import (
    FinePruning,
    feature_consumer,
    mean_channel_activation,
)
from backdoorlab.defenses.model_repair.nad import NAD, attention_map, conv_layers
from backdoorlab.errors import ConfigError
from backdoorlab.models import create_model
from backdoorlab.train import TrainSpec, evaluate, fit
from backdoorlab.triggers import create_trigger


@pytest.fixture(scope="module")
def trojan(small_splits: Splits) -> dict[str, Any]:
    """A LeNet-5 with a 3x3 patch backdoor (target 0, 10% poison), the defender's clean set, a test set."""
    train = small_splits.train.per_class(200, seed=1)
    clean, test = small_splits.test.split([0.5, 0.5], seed=0)
    atk = create_attack("badnets", trigger=create_trigger("patch", size=3), target=0, rate=0.1)
    model = fit(
        create_model("lenet5", seed=0),
        atk.poison(train, seed=0).data,
        TrainSpec(epochs=3, batch_size=16, progress=False),
    )
    ev = evaluate(model, test, atk)
    assert ev["asr"] > 0.9, ev  # the backdoor is there to remove
    return {"model": model, "clean": clean, "test": test, "attack": atk, "before": ev}


REPAIRS = {
    "fine-pruning": lambda: FinePruning(),
    "nad": lambda: NAD(),
    "anp": lambda: ANP(iterations=60, prune_fraction=0.1),
}


@pytest.fixture(scope="module")
def repaired(trojan: dict[str, Any]) -> dict[str, Any]:
    """Each repair applied once to the trojaned model (state of the original recorded before)."""
    state = {k: v.clone() for k, v in trojan["model"].state_dict().items()}
    out: dict[str, Any] = {"original_state": state}
    for name, make in REPAIRS.items():
        d = make()
        out[name] = (d.repair(trojan["model"], trojan["clean"]), d.info)
        out[f"{name}:verdict"] = getattr(d, "verdict", None)
    return out


def test_repairs_say_what_their_rule_did(repaired: dict[str, Any]) -> None:
    fp_info = repaired["fine-pruning"][1]
    assert repaired["fine-pruning:verdict"].startswith(
        f"fine-pruning: pruned {fp_info['pruned']} of {fp_info['channels']} last-conv channels"
    )
    anp_info = repaired["anp"][1]
    assert repaired["anp:verdict"].startswith(
        f"anp: pruned {anp_info['pruned']} of {anp_info['neurons']} neurons"
    )


def test_registered() -> None:
    for name in REPAIRS:
        assert name in DEFENSES
        assert isinstance(DEFENSES.create(name), ModelRepair)


@pytest.mark.parametrize("name", ["fine-pruning", "nad"])
def test_repair_removes_patch_backdoor(
    name: str, trojan: dict[str, Any], repaired: dict[str, Any]
) -> None:
    ev = evaluate(repaired[name][0], trojan["test"], trojan["attack"])
    before = trojan["before"]
    assert ev["asr"] < 0.25, (name, before, ev)
    assert ev["clean_acc"] > before["clean_acc"] - 0.05, (name, before, ev)


def test_anp_lowers_asr(trojan: dict[str, Any], repaired: dict[str, Any]) -> None:
    # ANP is weak on these tiny BN-free models (see docs/repairs.md): the measured drop on this
    # model ranges from ~0.1 to ~0.8 with thread count, so only a real but modest drop is asserted.
    model, info = repaired["anp"]
    ev = evaluate(model, trojan["test"], trojan["attack"])
    before = trojan["before"]
    assert info["pruned"] >= 1
    assert info["clean_acc_before"] >= info["clean_acc_after"] - 0.05
    assert ev["asr"] < before["asr"] - 0.05, (before, ev, info)
    assert ev["clean_acc"] > before["clean_acc"] - 0.1, (before, ev, info)


def test_repairs_return_copies(trojan: dict[str, Any], repaired: dict[str, Any]) -> None:
    orig = trojan["model"].state_dict()
    for k, v in repaired["original_state"].items():
        assert torch.equal(orig[k], v), k
    for name in REPAIRS:
        m = repaired[name][0]
        assert m is not trojan["model"]
        assert any(not torch.equal(m.state_dict()[k], orig[k]) for k in orig), name
        assert set(m.state_dict()) == set(orig)  # same architecture: saves / loads like a zoo model


def test_determinism(trojan: dict[str, Any]) -> None:
    a = FinePruning(finetune_epochs=1, seed=3).repair(trojan["model"], trojan["clean"])
    b = FinePruning(finetune_epochs=1, seed=3).repair(trojan["model"], trojan["clean"])
    c = ANP(iterations=20, seed=3).repair(trojan["model"], trojan["clean"])
    d = ANP(iterations=20, seed=3).repair(trojan["model"], trojan["clean"])
    small = trojan["clean"].subset(slice(0, 256))
    e = NAD(teacher_epochs=1, epochs=1, seed=3).repair(trojan["model"], small)
    f = NAD(teacher_epochs=1, epochs=1, seed=3).repair(trojan["model"], small)
    for x, y in ((a, b), (c, d), (e, f)):
        for k, v in x.state_dict().items():
            assert torch.equal(v, y.state_dict()[k]), k


def test_fine_pruning_prunes_dormant_channels_exactly(trojan: dict[str, Any]) -> None:
    model, clean = trojan["model"], trojan["clean"]
    fp = FinePruning(max_acc_drop=0.04)
    pruned, info = fp.prune(model, clean)
    acts = mean_channel_activation(model, clean.x)
    cut = info["pruned"]
    assert 0 < cut < info["channels"]
    # the pruned channels are the least active ones
    assert set(info["pruned_channels"]) == set(torch.argsort(acts, stable=True)[:cut].tolist())
    # removing the channels == zeroing them in the feature map (exact)
    x = clean.x[:64]
    mask = torch.ones(info["channels"])
    mask[info["pruned_channels"]] = 0
    with torch.no_grad():
        fm = model.features(x) * mask.view(1, -1, 1, 1)
        ref = model.fc3(F.relu(model.fc2(F.relu(model.fc1(fm.flatten(1))))))
        assert torch.allclose(pruned(x), ref, atol=1e-5)
    # the accuracy stop rule held on the defender's clean data
    assert info["clean_acc_start"] - info["clean_acc_pruned"] <= 0.04
    # a stricter budget prunes no more
    _, strict = FinePruning(max_acc_drop=0.0).prune(model, clean)
    assert strict["pruned"] <= cut


def test_fine_pruning_keeps_pruned_channels_through_finetuning(
    trojan: dict[str, Any], repaired: dict[str, Any]
) -> None:
    model, info = repaired["fine-pruning"]
    lin, _, per = feature_consumer(model, trojan["clean"].x)
    cols = torch.tensor(info["pruned_channels"]).repeat_interleave(per) * per + torch.arange(
        per
    ).repeat(len(info["pruned_channels"]))
    assert (lin.weight[:, cols] == 0).all()


def test_attention_map_is_unit_norm() -> None:
    fm = torch.randn(5, 8, 6, 6)
    a = attention_map(fm)
    assert a.shape == (5, 36)
    assert torch.allclose(a.norm(dim=1), torch.ones(5), atol=1e-5)
    ref = fm.pow(2).sum(1).flatten(1)
    assert torch.allclose(a, ref / ref.norm(dim=1, keepdim=True), atol=1e-6)
    assert conv_layers(create_model("badnets_cnn"), 3) == ["conv1", "conv2"]


def test_anp_masks_batchnorm_neurons() -> None:
    m = create_model("gap_cnn", seed=0, width=8, bn=True)
    assert all(isinstance(mod, torch.nn.BatchNorm2d) for _, mod in neuron_layers(m))
    g = torch.Generator().manual_seed(0)
    clean = ImageData(
        torch.rand(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g)
    )
    anp = ANP(iterations=4, batch_size=32, prune_fraction=0.25)
    out = anp.repair(m, clean)
    bns = [mod for _, mod in neuron_layers(out)]
    zeroed = sum(int((b.weight == 0).sum()) for b in bns)
    assert zeroed == anp.info["pruned"] == int(0.25 * anp.info["neurons"])


def test_bad_options() -> None:
    with pytest.raises(ConfigError, match="max_acc_drop"):
        FinePruning(max_acc_drop=2)
    with pytest.raises(ConfigError, match="alpha"):
        ANP(alpha=1.5)
    with pytest.raises(ConfigError, match="beta"):
        NAD(beta=-1)
    with pytest.raises(ConfigError, match="unknown option"):
        DEFENSES.create("nad", gamma=1)

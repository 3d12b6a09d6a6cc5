"""BadNets poisoning (Gu et al. 2017): counts, target maps, and a real ASR rise on a tiny model."""

from __future__ import annotations

import pytest
import torch

from backdoorlab.attacks import TargetMap, create_attack
from backdoorlab.data import Splits
from backdoorlab.errors import ConfigError
from backdoorlab.models import create_model
from backdoorlab.train import TrainSpec, evaluate, fit
from backdoorlab.triggers import create_trigger


def test_poison_records_exact_count_and_labels(small_splits: Splits) -> None:
    train = small_splits.train
    atk = create_attack("badnets", target=3, rate=0.05)
    pd = atk.poison(train, seed=0)
    k = round(0.05 * len(train))
    assert len(pd.indices) == k == len(torch.unique(pd.indices))
    assert (pd.data.y[pd.indices] == 3).all()
    assert (train.y[pd.indices] != 3).all()  # all-to-one never wastes poison on target-class images
    untouched = ~pd.is_poisoned
    assert torch.equal(pd.data.x[untouched], train.x[untouched])
    assert torch.equal(pd.data.y[untouched], train.y[untouched])
    assert not torch.equal(pd.data.x[pd.indices], train.x[pd.indices])
    # seeded
    assert torch.equal(atk.poison(train, seed=0).indices, pd.indices)
    assert not torch.equal(atk.poison(train, seed=1).indices, pd.indices)
    assert len(create_attack("badnets", count=17).poison(train).indices) == 17


def test_target_maps() -> None:
    y = torch.tensor([0, 1, 2, 3])
    assert TargetMap("all-to-all", num_classes=4)(y).tolist() == [1, 2, 3, 0]
    tm = TargetMap("source-specific", target=0, num_classes=4, sources=(2,))
    assert tm.eligible(y).tolist() == [False, False, True, False]
    with pytest.raises(ConfigError, match="out of range"):
        TargetMap("all-to-one", target=10, num_classes=10)
    with pytest.raises(ConfigError, match="rate"):
        create_attack("badnets", rate=1.5)


def test_badnets_raises_asr_on_tiny_model(small_splits: Splits) -> None:
    train = small_splits.train
    spec = TrainSpec(epochs=4, batch_size=32, progress=False)
    atk = create_attack("badnets", trigger=create_trigger("patch", size=3), target=0, rate=0.1)
    clean = fit(create_model("lenet5", seed=0), train, spec)
    bad = fit(create_model("lenet5", seed=0), atk.poison(train, seed=0).data, spec)
    rc, rb = evaluate(clean, small_splits.test, atk), evaluate(bad, small_splits.test, atk)
    assert rc["asr"] < 0.3
    assert rb["asr"] > 0.9
    assert rb["clean_acc"] > rc["clean_acc"] - 0.05


def test_all_to_all_badnets(small_splits: Splits) -> None:
    train = small_splits.train
    atk = create_attack("badnets", mode="all-to-all", rate=0.2)
    pd = atk.poison(train, seed=0)
    assert torch.equal(pd.data.y[pd.indices], (train.y[pd.indices] + 1) % 10)
    m = fit(
        create_model("lenet5", seed=0), pd.data, TrainSpec(epochs=4, batch_size=32, progress=False)
    )
    assert evaluate(m, small_splits.test, atk)["asr"] > 0.5  # chance would be ~0.1

"""Contract of every registered defense, over the registry itself (a new defense is covered at once).

Each defense runs through ``pipeline.run_defense`` on a tiny attack run; its record is the one of
its family and round-trips through JSON; and it is never handed the trigger, the attack, the
poisoned test data or the poison indices: the only data it receives are the defender's clean split
(scanners, detectors, repairs), the inputs to score (detectors) and the training set (sanitisers).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from backdoorlab import pipeline
from backdoorlab.attacks.base import PoisonedData, PoisoningAttack
from backdoorlab.data import ImageData, fashion_mnist_available
from backdoorlab.defenses import DEFENSES
from backdoorlab.experiment import RunConfig
from backdoorlab.records import DEFENSE_RECORDS, AttackRun
from backdoorlab.train import TrainSpec
from backdoorlab.triggers.base import Trigger

# Budget options only (the contract, not the method's accuracy, is under test here).
FAST: dict[str, dict[str, Any]] = {
    "nc": {"max_epochs": 2, "per_class": 5},
    "tabor": {"max_epochs": 2, "per_class": 5},
    "abs": {"steps": 5, "top_k": 2, "n_images": 5},
    "nc-unlearning": {"epochs": 1, "scan_per_class": 5},
    "fine-pruning": {"finetune_epochs": 1},
    "nad": {"teacher_epochs": 1, "epochs": 1},
    "anp": {"iterations": 10},
    "strip": {"n_perturb": 8},
    "sentinet": {"n_clean": 10},
}
METHODS = ("scan", "fit", "score", "score_and_keep", "keep_mask", "repair", "flag")


class Spy:
    """Wraps a defense and records what each protocol method is handed."""

    def __init__(self, inner: Any) -> None:
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "calls", [])

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if name in METHODS and callable(value):

            def wrapped(*args: Any, **kwargs: Any) -> Any:
                self.calls.append((name, [*args, *kwargs.values()]))
                return value(*args, **kwargs)

            return wrapped
        return value


@pytest.fixture(scope="module")
def tiny_run() -> AttackRun:
    """An in-memory BadNets run: LeNet-5, 2,000 Fashion-MNIST images, 3 epochs."""
    if not fashion_mnist_available():
        pytest.skip("needs Fashion-MNIST")
    cfg = RunConfig(
        data="fashion-mnist",
        model="lenet5",
        train_subset=2000,
        rate=0.1,
        trigger="patch",
        trigger_options={"size": 3},
        train=TrainSpec(epochs=3, batch_size=16, progress=False),
    )
    run = pipeline.run_attack(cfg)
    assert run.asr > 0.5
    return run


@pytest.mark.parametrize("name", DEFENSES.names())
def test_defense_contract(name: str, tiny_run: AttackRun, monkeypatch: pytest.MonkeyPatch) -> None:
    spies: list[Spy] = []
    real = pipeline.build_defense

    def spy_build(*args: Any, **kwargs: Any) -> Any:
        spies.append(Spy(real(*args, **kwargs)))
        return spies[-1]

    monkeypatch.setattr(pipeline, "build_defense", spy_build)
    rec = pipeline.run_defense(tiny_run, name, write=False, eval_limit=300, **FAST.get(name, {}))
    family = DEFENSES.entry(name).family
    assert isinstance(rec, DEFENSE_RECORDS[family]) and rec.family == family
    assert rec.defense == name and rec.verdict and rec.seconds > 0
    assert type(rec).from_json(rec.to_json()) == rec  # the record round-trips through JSON
    assert rec.config_hash and rec.options == DEFENSES.create(name, **rec.options).config()
    (spy,) = spies
    assert spy.calls, f"{name}: no protocol method was called"
    secret = tiny_run.poison_indices
    train = tiny_run.poisoned_set.data
    for method, args in spy.calls:
        for a in args:
            assert not isinstance(a, Trigger | PoisoningAttack | PoisonedData), (name, method, a)
            if isinstance(a, ImageData):
                if family == "data-sanitize":
                    assert a is train, (name, method)  # the training set, nothing else
                else:  # the defender's clean split: true labels, no trigger
                    assert len(a) == rec.n_defender_clean, (name, method, len(a))
            elif isinstance(a, torch.Tensor) and a.dtype == torch.long:
                assert not torch.equal(a, secret), (name, method)
            else:
                assert isinstance(a, nn.Module | torch.Tensor | float | int | str), (
                    name,
                    method,
                    a,
                )

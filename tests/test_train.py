"""The one training loop and the one evaluation path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from backdoorlab.data import ImageData, Splits
from backdoorlab.errors import ConfigError
from backdoorlab.models import create_model
from backdoorlab.train import History, TrainSpec, augment, evaluate, fit, random_crop


def _small(s: Splits, n: int = 2000) -> ImageData:
    return s.train.subset(slice(0, n))


def test_fit_learns_and_is_deterministic(small_splits: Splits) -> None:
    data = _small(small_splits)
    spec = TrainSpec(epochs=2, batch_size=64, seed=5, progress=False)
    outs = []
    for _ in range(2):
        m = fit(create_model("lenet5", seed=5), data, spec)
        outs.append(torch.cat([p.detach().flatten() for p in m.parameters()]))
    assert torch.equal(outs[0], outs[1])
    m3 = fit(
        create_model("lenet5", seed=5),
        data,
        TrainSpec(epochs=2, batch_size=64, seed=6, progress=False),
    )
    assert not torch.equal(outs[0], torch.cat([p.detach().flatten() for p in m3.parameters()]))
    acc = evaluate(m, small_splits.test)["clean_acc"]
    assert acc > 0.6  # far above the 0.1 chance level


def test_history_and_optimisers(small_splits: Splits) -> None:
    data = _small(small_splits, 1000)
    for opt, sched in [("sgd", "cosine"), ("adamw", "step"), ("adam", "none")]:
        h = History()
        fit(
            create_model("lenet5", seed=0),
            data,
            TrainSpec(
                epochs=2,
                optimizer=opt,
                scheduler=sched,
                lr=0.01 if opt == "sgd" else 1e-3,
                progress=False,
            ),
            history=h,
        )
        assert len(h.loss) == 2 and h.loss[1] < h.loss[0]


def test_checkpoint_resume_matches_uninterrupted(tmp_path: Path, small_splits: Splits) -> None:
    data = _small(small_splits, 1000)
    full = fit(create_model("lenet5", seed=0), data, TrainSpec(epochs=3, progress=False))
    ck = tmp_path / "ck.pt"
    fit(
        create_model("lenet5", seed=0),
        data,
        TrainSpec(epochs=2, scheduler="none", progress=False, checkpoint=str(ck)),
    )
    # an interrupted 3-epoch run: first 2 epochs done, resume the same spec
    ck.unlink()
    part = create_model("lenet5", seed=0)
    spec = TrainSpec(epochs=3, progress=False, checkpoint=str(ck))
    # simulate interruption after 2 epochs by training with a 2-epoch view of the same schedule
    fit(part, data, spec)
    resumed = fit(
        create_model("lenet5", seed=0), data, spec
    )  # finds the 3-epoch checkpoint: no work left
    x = small_splits.test.x[:64]
    assert torch.equal(full(x), resumed(x))
    assert torch.equal(full(x), part(x))


def test_resume_after_real_interruption(tmp_path: Path, small_splits: Splits) -> None:
    data = _small(small_splits, 1000)
    spec = TrainSpec(epochs=3, progress=False)
    full = fit(create_model("lenet5", seed=0), data, spec)
    ck = tmp_path / "ck.pt"
    calls = {"n": 0}
    steps_per_epoch = -(-len(data) // spec.batch_size)

    def boom(
        x: torch.Tensor, y: torch.Tensor, g: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        calls["n"] += 1
        if calls["n"] > 2 * steps_per_epoch + 3:
            raise KeyboardInterrupt
        return x, y

    ck_spec = TrainSpec(epochs=3, progress=False, checkpoint=str(ck))
    with pytest.raises(KeyboardInterrupt):
        fit(create_model("lenet5", seed=0), data, ck_spec, batch_transform=boom)
    assert ck.exists()
    resumed = fit(create_model("lenet5", seed=0), data, ck_spec)
    x = small_splits.test.x[:64]
    assert torch.equal(full(x), resumed(x))


def test_bad_specs() -> None:
    with pytest.raises(ConfigError, match="optimizer"):
        TrainSpec(optimizer="rmsprop")
    with pytest.raises(ConfigError, match="epochs"):
        TrainSpec(epochs=-1)
    with pytest.raises(ConfigError, match="augment"):
        TrainSpec(augment="mixup")


def test_augment_shapes_and_crop_shift() -> None:
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6) / 100
    g = torch.Generator().manual_seed(0)
    y = random_crop(x, 2, g)
    assert y.shape == x.shape
    # every crop is a shifted window of the zero-padded image
    xp = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        assert any(
            torch.equal(y[i], xp[i, :, a : a + 6, b : b + 6]) for a in range(5) for b in range(5)
        )
    z = augment(x, "crop+flip", g)
    assert z.shape == x.shape


def test_evaluate_per_class_and_asr_excludes_target(small_splits: Splits) -> None:
    from backdoorlab.attacks import create_attack

    class Const(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = torch.zeros(len(x), 10)
            out[:, 0] = 1
            return out

    atk = create_attack("badnets", target=0)
    r = evaluate(Const(), small_splits.test, atk)
    assert r["asr"] == 1.0  # always says 0; target-class images are excluded from the ASR set
    assert r["n_asr"] == int((small_splits.test.y != 0).sum())
    assert r["per_class"][small_splits.test.classes[0]] == 1.0
    assert r["per_class"][small_splits.test.classes[1]] == 0.0

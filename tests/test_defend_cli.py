"""`backdoorlab defend` / `sanitize` and ``pipeline.run_defense``: a run in, a typed record out
(and DIR/defenses/NAME.json), dispatched on the registry entry's family."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from backdoorlab import cli
from backdoorlab.data import ImageData, fashion_mnist_available
from backdoorlab.defenses import DEFENSES, DataSanitizer, InputDetector, ModelDetector
from backdoorlab.errors import ConfigError, DataError
from backdoorlab.metrics.detection import threshold_at_fpr
from backdoorlab.pipeline import load_run, run_defense
from backdoorlab.records import (
    InputDetectionResult,
    RepairResult,
    SanitizeResult,
    ScanResult,
    load_record,
)

pytestmark = pytest.mark.skipif(
    not fashion_mnist_available(), reason="needs Fashion-MNIST for a real run folder"
)


def _corner(x: torch.Tensor) -> torch.Tensor:
    """Mean brightness of the 3x3 square one pixel from the bottom-right corner (the BadNets patch)."""
    return x[:, :, -4:-1, -4:-1].mean(dim=(1, 2, 3))


class FakeInputDetector(InputDetector):
    """Test double: flags bright bottom-right corners (knows the trigger, fine for a dispatcher test)."""

    name = "test-fake-input"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def fit(self, model: nn.Module, clean: ImageData, frr: float = 0.01) -> FakeInputDetector:
        self.threshold = threshold_at_fpr(self.score(clean.x), frr)
        return self

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return _corner(x)


class FakeSanitizer(DataSanitizer):
    """Test double: removes training images with a bright bottom-right corner."""

    name = "test-fake-sanitizer"

    def score(self, model: nn.Module, train: ImageData) -> torch.Tensor:
        return _corner(train.x)

    def keep_mask(self, model: nn.Module, train: ImageData) -> torch.Tensor:
        return self.score(model, train) < 0.99


class FakeScanner(ModelDetector):
    """Test double: always suspects class 0."""

    name = "test-fake-scanner"

    def scan(self, model: nn.Module, clean: ImageData) -> ScanResult:
        return ScanResult(
            method=self.name, flagged=True, score=3.0, threshold=2.0, suspect_targets=(0,)
        )


@pytest.fixture(scope="module", autouse=True)
def _fakes() -> Any:
    """Register the test doubles for this module only."""
    names = ["test-fake-input", "test-fake-sanitizer", "test-fake-scanner"]
    for n, cls in zip(names, (FakeInputDetector, FakeSanitizer, FakeScanner), strict=True):
        DEFENSES.register(n, "test double")(cls)
    yield
    for n in names:
        DEFENSES.unregister(n)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny attack run folder: lenet5, 2,000 Fashion-MNIST images, 3 epochs, 3x3 patch."""
    from backdoorlab.experiment import RunConfig
    from backdoorlab.pipeline import run_attack
    from backdoorlab.train import TrainSpec

    out = tmp_path_factory.mktemp("defend") / "run"
    cfg = RunConfig(
        data="fashion-mnist",
        trigger="patch",
        trigger_options={"size": 3},
        rate=0.1,
        model="lenet5",
        train_subset=2000,
        train=TrainSpec(epochs=3, batch_size=16, progress=False),
    )
    res = run_attack(cfg, out=out)
    assert res.asr > 0.8
    return out


def _cli(argv: list[str]) -> int:
    return cli.main(argv)


def _read(run: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run / "defenses" / f"{name}.json").read_text())
    return data


def test_defend_repair_end_to_end(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = _cli(
        [
            "defend",
            "--defense",
            "fine-pruning",
            "--run",
            str(run_dir),
            "--clean-fraction",
            "0.1",
            "--defense-opt",
            "finetune_epochs=3",
        ]
    )
    assert rc == 0
    assert "fine-pruning (model-repair)" in capsys.readouterr().out
    res = _read(run_dir, "fine-pruning")
    rec = load_record(run_dir / "defenses" / "fine-pruning.json")
    assert isinstance(rec, RepairResult) and rec.to_json() == res
    for key in ("defense", "options", "clean_acc_after", "asr_after", "seconds", "peak_mem_mb"):
        assert key in res, key
    assert res["options"]["finetune_epochs"] == 3
    assert res["n_defender_clean"] == 1000 and res["n_eval"] == 9000
    assert res["asr_before"] > 0.8
    assert res["asr_after"] < res["asr_before"] - 0.3
    assert res["clean_acc_after"] > res["clean_acc_before"] - 0.05
    assert res["seconds"] > 0
    assert (run_dir / "defenses" / "fine-pruning.safetensors").exists()


def test_defend_input_detector(run_dir: Path) -> None:
    assert _cli(["defend", "--defense", "test-fake-input", "--run", str(run_dir)]) == 0
    res = _read(run_dir, "test-fake-input")
    assert res["kind"] == "input-detection" and res["family"] == "input-detection"
    assert res["auroc"] > 0.95
    assert {"seconds", "peak_mem_mb", "threshold", "precision", "recall", "frr", "far"} <= set(res)
    assert res["n_clean"] == 9000 and res["n_triggered"] == 8100  # target-class images excluded
    assert isinstance(
        load_record(run_dir / "defenses" / "test-fake-input.json"), InputDetectionResult
    )


def test_sanitize_retrains_on_kept_set(run_dir: Path) -> None:
    assert _cli(["sanitize", "--defense", "test-fake-sanitizer", "--run", str(run_dir)]) == 0
    res = _read(run_dir, "test-fake-sanitizer")
    assert res["family"] == "data-sanitize"
    assert res["auroc"] > 0.95
    assert res["n_poison_removed"] == 200  # every poisoned image has the white patch
    assert res["asr_after"] < 0.2 < res["asr_before"]
    assert {"clean_acc_after", "asr_after", "seconds", "peak_mem_mb", "der"} <= set(res)
    rec = load_record(run_dir / "defenses" / "test-fake-sanitizer.json")
    assert isinstance(rec, SanitizeResult)
    labels = [(b.factor, b.oracle) for b in rec.budgets]
    assert labels == [(0.5, False), (1.0, True), (2.0, False)]  # the true-count row is the oracle
    assert "oracle" in rec.budgets[1].label and rec.budgets[1].recall == 1.0


def test_model_detector_dispatch(run_dir: Path) -> None:
    res = run_defense(run_dir, "test-fake-scanner", write=False)
    assert isinstance(res, ScanResult) and res.family == "model-scan"
    assert res.target_found and res.flagged and "flagged" in res.verdict


def test_sanitize_rejects_other_protocols(run_dir: Path) -> None:
    with pytest.raises(ConfigError, match="not data-sanitize"):
        run_defense(run_dir, "fine-pruning", family="data-sanitize", write=False)
    assert _cli(["sanitize", "--defense", "fine-pruning", "--run", str(run_dir)]) == 2


def test_rebuilt_run_is_checked(run_dir: Path, tmp_path: Path) -> None:
    run = load_run(run_dir)
    assert torch.equal(
        run.poison_indices,
        torch.tensor(json.loads((run_dir / "poison_indices.json").read_text())),
    )
    bad = tmp_path / "bad"
    shutil.copytree(run_dir, bad)
    idx = json.loads((bad / "poison_indices.json").read_text())
    (bad / "poison_indices.json").write_text(json.dumps([*idx[1:], idx[0] + 1]))
    with pytest.raises(DataError, match="does not match"):
        load_run(bad)


def test_defender_split_is_balanced_disjoint_and_seeded() -> None:
    y = torch.arange(10).repeat_interleave(100)
    d = ImageData(torch.arange(1000).float().view(-1, 1, 1, 1), y)
    a, b = d.split_balanced(0.1, seed=0)
    assert len(a) == 100 and len(b) == 900
    assert torch.bincount(a.y).tolist() == [10] * 10
    assert not set(a.x.flatten().tolist()) & set(b.x.flatten().tolist())
    a2, _ = d.split_balanced(0.1, seed=0)
    a3, _ = d.split_balanced(0.1, seed=1)
    assert torch.equal(a.x, a2.x) and not torch.equal(a.x, a3.x)
    with pytest.raises(ConfigError, match="clean-fraction"):
        d.split_balanced(1.5)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--defense", "fine-pruning", "--run", "/nonexistent/run"], "no such folder"),
        (["--defense", "no-such-defense", "--run", "RUN"], "unknown defense"),
        (["--defense", "fine-pruning", "--run", "EMPTY"], "results.json: missing"),
    ],
)
def test_bad_input_one_line_error(
    argv: list[str],
    message: str,
    run_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [str(run_dir) if a == "RUN" else str(tmp_path) if a == "EMPTY" else a for a in argv]
    rc = cli.main(["defend", *argv])
    err = capsys.readouterr().err
    assert rc != 0
    assert message in err
    assert len(err.strip().splitlines()) == 1

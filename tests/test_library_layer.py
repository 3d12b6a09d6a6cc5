"""The library layer: import structure, records, attack kinds, registry rules, first-use details."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from backdoorlab.attacks import ATTACKS
from backdoorlab.attacks.kinds import ModelAttack, TrainingAttack
from backdoorlab.cli import main
from backdoorlab.data import ImageData
from backdoorlab.errors import UnknownNameError
from backdoorlab.experiment import RunConfig
from backdoorlab.pipeline import run_attack
from backdoorlab.records import AttackRun, RepairResult, SanitizeResult, ScanReport, ScanResult
from backdoorlab.train import TrainSpec
from backdoorlab.train.hooks import TrainHooks
from backdoorlab.utils import atomic_dir, atomic_write_json

ROOT = Path(__file__).resolve().parents[1]


def test_no_import_cycles_and_no_cli_imports_in_the_library() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_imports.py"), str(ROOT / "src")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "module-level import cycles: 0" in out.stdout
    assert "importing backdoorlab.cli: 0" in out.stdout


def test_import_checker_finds_a_cycle_and_a_cli_import(tmp_path: Path) -> None:
    pkg = tmp_path / "backdoorlab"
    (pkg / "cli").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "cli" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("from .a import x\n\ndef f():\n    from .cli import main\n")
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_imports.py"), str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1
    assert "import cycles: 1" in out.stdout and "backdoorlab.a <-> backdoorlab.b" in out.stdout
    assert "importing backdoorlab.cli: 1" in out.stdout


def test_version_and_help_do_not_import_torch() -> None:
    code = (
        "import sys\nfrom backdoorlab.cli import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip().endswith("False"), out.stdout + out.stderr


@pytest.mark.parametrize(
    ("family", "bad", "good"),
    [
        ("trigger", "pach", "patch"),
        ("attack", "badnet", "badnets"),
        ("defense", "spectral-signature", "spectral-signatures"),
        ("model", "lenet", "lenet5"),
        ("data", "fashion-mnst", "fashion-mnist"),
    ],
)
def test_every_registry_suggests_a_close_name(family: str, bad: str, good: str) -> None:
    from backdoorlab.cli.listing import registries

    reg = registries()["data" if family == "data" else family + "s"]
    with pytest.raises(UnknownNameError, match=f"did you mean {good}"):
        reg.get(bad)


def test_trigger_typo_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(
        ["attack", "--data", "synthetic-signs", "--trigger", "pach", "--out", str(tmp_path / "r")]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "did you mean patch?" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_list_defenses_grouped_by_point_of_action(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "defenses"]) == 0
    out = capsys.readouterr().out
    heads = [line.split(":")[0] for line in out.splitlines() if not line.startswith(" ")]
    assert heads == ["model-scan", "input-detection", "data-sanitize", "model-repair"]
    assert "Neural Cleanse: Identifying and Mitigating" in out  # each entry shows its paper
    assert "(also: neural-cleanse)" in out


def test_every_defense_entry_has_a_family_and_a_paper() -> None:
    from backdoorlab.defenses import DEFENSES

    families = {"model-scan", "input-detection", "data-sanitize", "model-repair"}
    for e in DEFENSES.entries():
        assert e.family in families, e.name
        assert e.paper and any(str(y) in e.paper for y in range(2015, 2030)), e.name
        assert e.module.startswith(f"backdoorlab.defenses.{e.family.replace('-', '_')}"), e.name
    assert DEFENSES.canonical("neural-cleanse") == "nc" and DEFENSES.canonical("ac") == (
        "activation-clustering"
    )


def test_atomic_outputs_respect_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "report") as d:
            atomic_write_json(d / "results.json", {"a": 1})
            (d / "index.html").write_text("<p>x</p>")
    finally:
        os.umask(old)
    folder = tmp_path / "report"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    for f in folder.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f


def test_records_round_trip_through_json() -> None:
    from backdoorlab.records import BudgetRow, load_record

    recs: list[Any] = [
        ScanResult(method="nc", flagged=True, score=3.1, threshold=2.65, suspect_targets=(0,)),
        SanitizeResult(
            defense="ac",
            budgets=(BudgetRow(label="1x (oracle)", factor=1.0, oracle=True),),
            clean_acc_before=0.9,
        ),
        RepairResult(defense="nad", asr_before=0.99, asr_after=0.1, der=0.9),
        AttackRun(attack="badnets", clean_acc=0.9, asr=0.99, per_class={"a": 1.0}),
    ]
    recs.append(ScanReport(results=(recs[0],), flagged=True, p_value=0.01, score=0.99))
    for r in recs:
        assert type(r).from_json(r.to_json()) == r
    path = recs[1].save(Path(os.environ.get("TMPDIR", "/tmp")) / f"rec-{os.getpid()}.json")
    assert load_record(path) == recs[1]
    path.unlink()


class _StampHooks(TrainHooks):
    """Poison a quarter of every batch on the fly (an on-the-fly BadNets, as WaNet does)."""

    def __init__(self, attack: TrainingAttack) -> None:
        self.attack = attack
        self.epochs_seen = 0

    def batch(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        k = len(x) // 4
        x, y = x.clone(), y.clone()
        x[:k] = self.attack.trigger(x[:k], generator)
        y[:k] = self.attack.target
        return x, y

    def on_epoch_end(self, epoch: int, model: nn.Module) -> None:
        self.epochs_seen = epoch


class OnTheFly(TrainingAttack):
    """Test double of a training-time attack."""

    def hooks(self, train: ImageData, seed: int) -> TrainHooks:
        self.last_hooks = _StampHooks(self)
        return self.last_hooks

    def learned_parts(self) -> dict[str, nn.Module]:
        return {"dummy": nn.Linear(2, 2)}


class Rewire(ModelAttack):
    """Test double of a model-side attack: bias the last layer towards the target."""

    def modify(self, model: nn.Module, data: ImageData, seed: int) -> nn.Module:
        last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        with torch.no_grad():
            last.bias[self.target] += 100.0
        return model


@pytest.fixture
def kinds() -> Any:
    ATTACKS.register("test-on-the-fly", "test double")(OnTheFly)
    ATTACKS.register("test-rewire", "test double")(Rewire)
    yield
    ATTACKS.unregister("test-on-the-fly")
    ATTACKS.unregister("test-rewire")


def test_pipeline_dispatches_the_three_attack_kinds(kinds: Any, tmp_path: Path) -> None:
    base = RunConfig(
        data="synthetic-signs",
        data_options={"n_train": 600, "n_test": 200},
        train=TrainSpec(epochs=2, batch_size=32, progress=False),
        trigger="patch",
        trigger_options={"size": 4},
    )
    from dataclasses import replace

    poison = run_attack(replace(base, attack="badnets"))
    assert poison.attack_kind == "poisoning" and poison.poisoned == 60  # 10% of 600
    fly = run_attack(replace(base, attack="test-on-the-fly"), tmp_path / "fly")
    assert fly.attack_kind == "training" and fly.poisoned == 0
    assert fly.prepared.attack.last_hooks.epochs_seen == 2  # the loop called the hooks
    assert fly.asr > 0.5
    assert (tmp_path / "fly" / "learned" / "dummy.safetensors").exists()
    assert fly.learned_parts == ("dummy",)
    model = run_attack(replace(base, attack="test-rewire"))
    assert model.attack_kind == "model" and model.asr == 1.0

"""The main job, `backdoorlab demo --quick`: report folder, tables, and real backdoors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backdoorlab.cli import main
from backdoorlab.data import fashion_mnist_available


@pytest.mark.skipif(not fashion_mnist_available(), reason="needs Debian's dataset-fashion-mnist")
def test_demo_quick_writes_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "| BadNets patch |" in stdout and "| strip |" in stdout
    for name in (
        "index.html",
        "table.md",
        "results.json",
        "triggers.png",
        "models/clean.safetensors",
    ):
        assert (out / name).exists(), name
    res = json.loads((out / "results.json").read_text())
    assert res["kind"] == "demo"
    rows = {
        r["label"]: {**r["run"], "clean_model_asr": r["clean_model_asr"]} for r in res["attacks"]
    }
    rows["clean"] = res["clean"]
    assert set(rows) == {
        "clean",
        "BadNets patch",
        "Textured logo",
        "Nashville filter",
        "LSB steganography",
    }
    patch = rows["BadNets patch"]
    assert (
        patch["asr"] > 0.8 > patch["clean_model_asr"]
    )  # the backdoor is real, not the trigger alone
    assert patch["clean_acc"] > rows["clean"]["clean_acc"] - 0.05
    assert {d["record"]["defense"] for d in res["defenses"]} == {"strip", "activation-clustering"}
    assert (out / "runs" / "badnets-patch" / "defenses" / "strip.json").exists()
    assert not list(tmp_path.glob(".demo*"))  # no partial folder left behind

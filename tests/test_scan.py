"""``backdoorlab scan``: model/sample loading, JSON and HTML report, and one-line errors on bad input."""

from __future__ import annotations

import json
import pathlib
from pathlib import Path

import numpy as np
import pytest
import torch

from backdoorlab.attacks.badnets import BadNets
from backdoorlab.cli import main
from backdoorlab.data import Splits
from backdoorlab.errors import ModelError
from backdoorlab.models import create_model, export_torchscript, save_model
from backdoorlab.models.loading import load_any_model as load_scan_model
from backdoorlab.pipeline import model_scanners
from backdoorlab.train import TrainSpec, fit

TARGET = 3
# budget run; the default verdict (norm ratio): on this 3-epoch LeNet the MAD index is 1.5-2.3
FAST = ["--opt", "max_epochs=25", "--opt", "early_stop_patience=10"]


class Evil:
    """Unpickling this object creates a marker file (a stand-in for arbitrary code execution)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def _npz(path: Path, x: np.ndarray, **extra: np.ndarray) -> Path:
    np.savez(path, x=x, **extra)
    return path


@pytest.fixture(scope="module")
def files(small_splits: Splits, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A TorchScript trojan (LeNet-5, patch, target 3), an untrained model, and clean .npz samples."""
    d = tmp_path_factory.mktemp("scan")
    train = small_splits.train.per_class(400, seed=0)
    data = BadNets(target=TARGET, rate=0.2).poison(train, seed=0).data
    trojan = fit(create_model("lenet5", seed=0), data, TrainSpec(epochs=3, seed=0, progress=False))
    export_torchscript(trojan, d / "trojan.pt")
    plain = create_model("lenet5", seed=1)
    export_torchscript(plain, d / "plain.pt")
    save_model(plain, d / "plain.safetensors")
    sel = small_splits.test.per_class(8, seed=0)
    x8 = (sel.x[:, 0] * 255).round().to(torch.uint8).numpy()  # (N, H, W) uint8, no labels
    return {
        "dir": d,
        "trojan": d / "trojan.pt",
        "plain": d / "plain.pt",
        "weights": d / "plain.safetensors",
        "npz": _npz(d / "samples.npz", x8),
        "tiny_npz": _npz(d / "tiny.npz", x8[::4], y=sel.y.numpy()[::4]),
    }


def _no_x(d: Path) -> str:
    p = d / "nox.npz"
    np.savez(p, a=np.zeros(3))
    return str(p)


def _bare_weights(d: Path) -> str:
    from safetensors.torch import save_file

    p = d / "bare.safetensors"
    save_file({k: v.contiguous() for k, v in create_model("lenet5").state_dict().items()}, str(p))
    return str(p)


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(["scan", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line_error(rc: int, err: str, *needles: str) -> None:
    assert rc == 2, err
    assert err.strip().count("\n") == 0, err
    assert err.startswith("backdoorlab scan: error:")
    for n in needles:
        assert n.lower() in err.lower(), err


def test_scanners_are_discovered() -> None:
    assert {"nc", "tabor", "abs"} <= set(model_scanners())


def test_scan_cli_end_to_end(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out_json = files["dir"] / "verdict.json"
    report = files["dir"] / "report"
    rc, _out, err = _run(
        [str(files["trojan"]), "--data", str(files["npz"]), "--json", str(out_json),
         "--report", str(report), *FAST],
        capsys,
    )  # fmt: skip
    assert rc == 0, err
    doc = json.loads(out_json.read_text())
    assert doc["kind"] == "scan-report" and len(doc["results"]) == 1
    nc = doc["results"][0]
    assert {"flagged", "score", "threshold", "suspect_targets", "method", "per_class"} <= set(nc)
    assert nc["method"] == "nc" and nc["flagged"] is True, doc
    assert nc["suspect_targets"][0] == TARGET and nc["score"] > nc["threshold"]
    assert doc["flagged"] and doc["suspect_targets"][0] == TARGET
    assert doc["model"]["format"] == "torchscript" and doc["model"]["labels"] == "predicted"
    assert len(nc["per_class"]["mask_l1"]) == 10
    page = (report / "index.html").read_text()
    assert "BACKDOOR SUSPECTED" in page
    pngs = sorted(report.glob("*.png"))
    assert len(pngs) >= 2 and all(p.name in page and p.stat().st_size > 100 for p in pngs)
    assert not list(files["dir"].glob(".report.*"))  # no temporary folder left behind


def test_scan_all_methods_combined(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out_json = files["dir"] / "all.json"
    rc, _out, err = _run(
        [str(files["weights"]), "--data", str(files["tiny_npz"]), "--method", "nc,tabor",
         "--json", str(out_json), "--opt", "max_epochs=2"],
        capsys,
    )  # fmt: skip
    assert rc == 0, err
    doc = json.loads(out_json.read_text())
    assert {r["method"] for r in doc["results"]} == {"nc", "tabor"}
    if doc["p_value"] is None:  # no clean references: any method's flag
        assert doc["flagged"] == any(r["flagged"] for r in doc["results"])
    else:  # the verdict agrees with the calibrated score
        assert doc["flagged"] == (doc["p_value"] <= doc["alpha"])
        assert doc["score"] == pytest.approx(1 - doc["p_value"])
    assert doc["model"]["format"] == "weights" and doc["model"]["labels"] == "given"


def test_malicious_pickle_is_refused(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    d = files["dir"]
    marker, proof = d / "pwned", d / "pwned-proof"
    torch.save(Evil(marker), d / "evil.pt")
    torch.save(Evil(proof), d / "evil-proof.pt")
    torch.load(d / "evil-proof.pt", weights_only=False)  # the payload really runs when unpickled
    assert proof.exists()
    report = d / "evil-report"
    rc, _, err = _run(
        [str(d / "evil.pt"), "--data", str(files["npz"]), "--report", str(report)], capsys
    )
    _one_line_error(rc, err, "refused", "--trust-pickle")
    assert not marker.exists()
    assert not report.exists()
    with pytest.raises(ModelError):
        load_scan_model(d / "evil.pt")
    assert not marker.exists()


def test_trusted_pickle_of_a_module_loads(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    p = files["dir"] / "full.pt"
    torch.save(create_model("lenet5", seed=2), p)
    rc, _, err = _run([str(p), "--data", str(files["tiny_npz"])], capsys)
    _one_line_error(rc, err, "refused")
    model, meta = load_scan_model(p, trust_pickle=True)
    assert meta["format"] == "pickle" and model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_bad_inputs_give_one_line_errors(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    plain, npz = str(files["plain"]), str(files["npz"])
    report = tmp_path / "never"
    cases: list[tuple[list[str], tuple[str, ...]]] = [
        ([str(tmp_path / "nope.pt"), "--data", npz], ("not found",)),
        ([plain, "--data", str(tmp_path / "nope.npz")], ("not found",)),
        ([plain, "--data", str(_npz(tmp_path / "rgb.npz", np.zeros((4, 32, 32, 3), np.uint8)))],
         ("(3, 32, 32)", "expects")),
        ([plain, "--data", str(_npz(tmp_path / "vec.npz", np.zeros(10, np.uint8)))], ("shape",)),
        ([plain, "--data", _no_x(tmp_path)], ("no 'x'",)),
        ([plain, "--data", npz, "--method", "nope"], ("not a model scanner",)),
        ([plain, "--data", npz, "--opt", "bogus=1"], ("bogus",)),
        ([plain, "--data", npz, "--input-shape", "1,28"], ("C,H,W",)),
        ([_bare_weights(tmp_path), "--data", npz], ("--arch",)),
    ]  # fmt: skip
    for args, needles in cases:
        rc, _, err = _run([*args, "--report", str(report)], capsys)
        _one_line_error(rc, err, *needles)
        assert not report.exists()


def test_non_classifier_and_onnx_are_model_errors(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    class Features(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(1)  # (N, H, W): not class logits

    ts = tmp_path / "features.pt"
    torch.jit.trace(Features(), torch.rand(2, 1, 28, 28)).save(str(ts))
    rc, _, err = _run([str(ts), "--data", str(files["npz"])], capsys)
    _one_line_error(rc, err, "(N, K)")
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\x08\x07not really onnx")
    rc, _, err = _run([str(onnx), "--data", str(files["npz"])], capsys)
    _one_line_error(rc, err, "TorchScript")

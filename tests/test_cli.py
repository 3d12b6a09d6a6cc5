"""The command line: list, attack (results and bad input), gallery, config layering."""

from __future__ import annotations

import gzip
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backdoorlab.cli import main
from backdoorlab.data import fashion_mnist_available


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_list_families(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(["list", "models"], capsys)
    assert rc == 0
    lines = out.strip().splitlines()
    assert any(line.startswith("badnets_cnn ") for line in lines)
    assert all(len(line.split(None, 1)) == 2 for line in lines)  # name + description
    rc, out, _ = _run(["list", "attacks"], capsys)
    assert "badnets" in out
    rc, out, _ = _run(["list"], capsys)
    for fam in ("[attacks]", "[triggers]", "[defenses]", "[models]", "[data]"):
        assert fam in out


def _write_mnist_like(root: Path, n: int = 200, truncate: bool = False) -> None:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, count in (("train", n), ("t10k", n // 2)):
        imgs = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8).tobytes()
        if truncate and prefix == "train":
            imgs = imgs[:-100]
        (root / f"{prefix}-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(struct.pack(">IIII", 0x803, count, 28, 28) + imgs)
        )
        labels = rng.integers(0, 10, count, dtype=np.uint8).tobytes()
        (root / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(
            gzip.compress(struct.pack(">II", 0x801, count) + labels)
        )


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--data", "imagenet"], "unknown dataset 'imagenet'"),
        (["--attack", "nope"], "unknown attack 'nope'"),
        (["--target", "12"], "--target 12 out of range"),
        (["--rate", "1.5"], "--rate must be in (0, 1]"),
        (["--rate", "0"], "--rate must be in (0, 1]"),
        (["--trigger", "patch", "--trigger-opt", "size=99"], "does not fit"),
        (["--trigger-opt", "size"], "expected KEY=VALUE"),
        (["--model", "vgg99"], "unknown model 'vgg99'"),
    ],
)
def test_attack_bad_input_one_line_no_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], needle: str
) -> None:
    root = tmp_path / "mnist"
    _write_mnist_like(root)
    out = tmp_path / "run"
    argv = [
        "attack",
        "--data",
        "mnist",
        "--data-root",
        str(root),
        "--epochs",
        "1",
        "--out",
        str(out),
        *extra,
    ]
    rc, _, err = _run(argv, capsys)
    assert rc == 2
    assert needle in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()
    assert not any(p.name.startswith(".run") for p in tmp_path.iterdir())


def test_attack_corrupt_data_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "mnist"
    _write_mnist_like(root, truncate=True)
    out = tmp_path / "run"
    rc, _, err = _run(
        ["attack", "--data", "mnist", "--data-root", str(root), "--out", str(out)], capsys
    )
    assert rc == 2 and "truncated" in err and "train-images-idx3-ubyte.gz" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 not really a zip")
    rc, _, err = _run(["attack", "--data", str(junk), "--out", str(out)], capsys)
    assert rc == 2 and "junk.npz" in err and len(err.strip().splitlines()) == 1 and not out.exists()


def test_argparse_errors_are_one_line() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "backdoorlab", "attack", "--rate", "abc"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "--rate" in r.stderr


def test_attack_writes_results_model_and_grid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "mnist"
    if fashion_mnist_available():
        data = ["--data", "fashion-mnist", "--train-subset", "2000"]
    else:
        _write_mnist_like(root, n=2000)
        data = ["--data", "mnist", "--data-root", str(root)]
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        'attack = "badnets"\ntarget = 1\nrate = 0.2\n[train]\nepochs = 1\nbatch_size = 64\n'
    )
    out = tmp_path / "run"
    rc, stdout, err = _run(
        [
            "attack",
            *data,
            "--config",
            str(cfg),
            "--target",
            "2",
            "--model",
            "lenet5",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert rc == 0, err
    res = json.loads((out / "results.json").read_text())
    for key in ("clean_acc", "asr", "attack", "data", "seed", "timings", "stealth", "per_class"):
        assert key in res
    assert res["attack_config"]["target"] == 2  # flag beats the config file
    assert res["config"]["rate"] == 0.2 and res["train"]["batch_size"] == 64  # file beats defaults
    assert (out / "model.safetensors").exists() and (out / "model.json").exists()
    assert (out / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(json.loads((out / "poison_indices.json").read_text())) == res["poisoned"]
    assert "asr=" in stdout


def test_gallery(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "mnist"
    _write_mnist_like(root)
    out = tmp_path / "g.png"
    rc, _, err = _run(
        [
            "gallery",
            "--data",
            "mnist",
            "--data-root",
            str(root),
            "--trigger",
            "patch",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert rc == 0, err
    from PIL import Image

    with Image.open(out) as im:
        assert im.size[0] > 100 and im.size[1] > 3 * 28

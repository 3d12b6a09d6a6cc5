"""Reference scores of the model scanners on clean models: what ``scan --method all`` compares to.

Trains clean Fashion-MNIST reference models (six architectures x three seeds on the 10k class-balanced
subset for 3 epochs, plus a few trained on the whole training set), scans each one with every
model scanner at its defaults (``nc``, ``tabor``, ``abs``; 20 clean test images per class, seed 0,
exactly what ``backdoorlab scan MODEL --data fashion-mnist --method all`` passes), and writes the
per-method score distribution to ``src/backdoorlab/defenses/model_scan/reference_scores.json``
(shipped with the package; read by :mod:`backdoorlab.defenses.model_scan.calibration`)::

    OMP_NUM_THREADS=1 python benchmarks/calibrate_scan_reference.py run     # train + scan (resumes)
    python benchmarks/calibrate_scan_reference.py write                     # the JSON from the cache

Models and scan results are cached under ``--cache`` (default ``/work/cache/calib``), one file
each, so an interrupted run resumes where it stopped. Only clean models are used here; the
held-out evaluation zoo (other seeds and widths, and trojans) is ``benchmarks/eval_scan_combined.py``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

os.environ.setdefault("BACKDOORLAB_NO_PROGRESS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from backdoorlab.data import ImageData
from backdoorlab.defenses.base import DEFENSES
from backdoorlab.utils import atomic_write_json
from calibrate_scanners import SUBSET_PER_CLASS, _data, scan_cached, train_one

METHODS = ("nc", "tabor", "abs")
REF_ARCHS = ("badnets_cnn", "lenet5", "small_cnn16", "small_cnn16bn", "gap_cnn16", "gap_cnn16bn")
REF_SEEDS = (100, 101, 102)
# a few fully trained references (whole training set, 3 epochs), trained last
REF_FULL = (("badnets_cnn", 100), ("lenet5", 100), ("small_cnn16bn", 100), ("gap_cnn16bn", 100))
MIN_ASR = 0.5  # a trojan whose attack did not implant is not scanned (not a trojan)
SCAN_PER_CLASS = 20  # = backdoorlab scan --per-class default
SCAN_SEED = 0  # = backdoorlab scan --seed default (scanner seed and image choice)
OUT = (
    Path(__file__).resolve().parents[1]
    / "src"
    / "backdoorlab"
    / "defenses"
    / "model_scan"
    / "reference_scores.json"
)
COMMAND = "OMP_NUM_THREADS=1 python benchmarks/calibrate_scan_reference.py run && python benchmarks/calibrate_scan_reference.py write"


def reference_jobs(full: bool = True) -> list[tuple[str, dict[str, Any]]]:
    """(name, training job) of every clean reference model, seed by seed (so partial runs cover
    every architecture)."""
    jobs = [
        (f"ref-{arch}-s{seed}", {"arch": arch, "seed": seed, "epochs": 3})
        for seed in REF_SEEDS
        for arch in REF_ARCHS
    ]
    if full:
        jobs += [
            (f"ref-{arch}-s{seed}-full", {"arch": arch, "seed": seed, "epochs": 3, "full": True})
            for arch, seed in REF_FULL
        ]
    return jobs


def detector(method: str) -> Any:
    """A registered scanner at its defaults, with the ``scan`` CLI's seed (and CPU where it takes a
    device), as ``backdoorlab scan`` builds it."""
    import inspect

    params = inspect.signature(DEFENSES.get(method)).parameters
    kw = {k: v for k, v in (("seed", SCAN_SEED), ("device", "cpu")) if k in params}
    return DEFENSES.create(method, **kw)


def run_zoo(
    cache: Path, jobs: list[tuple[str, dict[str, Any]]], methods: list[str], only: str = "*"
) -> None:
    """Train (or reuse) each model and scan it with each method right away (all cached)."""
    import fnmatch

    torch.set_num_threads(1)  # the machine is shared: one thread each
    full, sub, test = _data()
    clean = scan_images(test)
    mdir = cache / "models"
    mdir.mkdir(parents=True, exist_ok=True)
    for name, job in jobs:
        if not fnmatch.fnmatch(name, only):
            continue
        meta = train_one(mdir, name, job, full, sub, test)
        if meta is not None:
            print(
                f"trained {name}: CA {meta['clean_acc']:.3f} ASR {meta['asr']} "
                f"{meta['train_s']:.0f}s",
                flush=True,
            )
        meta = json.loads((mdir / f"{name}.meta.json").read_text())
        if not meta["clean"] and (meta.get("asr") or 0) < MIN_ASR:
            print(f"  {name}: ASR {meta['asr']:.3f} < {MIN_ASR}, not implanted: not scanned")
            continue
        for method in methods:
            doc = scan_cached(cache, method, name, clean, lambda m=method: detector(m))
            if doc is not None:
                print(
                    f"  {method} {name}: score {doc['score']:.3f} flagged {doc['flagged']} "
                    f"targets {doc['suspect_targets']} {doc['seconds']:.0f}s",
                    flush=True,
                )


def scan_images(test: ImageData) -> ImageData:
    """The clean images every scanner gets (as ``scan --data fashion-mnist`` picks them)."""
    return test.per_class(SCAN_PER_CLASS, seed=SCAN_SEED)


def load_scans(cache: Path, names: list[str], method: str) -> list[dict[str, Any]]:
    """The cached scan documents of ``names`` for ``method`` (missing ones left out)."""
    out = []
    for n in names:
        p = cache / "scans" / f"{method}__{n}.json"
        if p.exists():
            out.append(on_current_scale(json.loads(p.read_text())))
    return out


def on_current_scale(doc: dict[str, Any]) -> dict[str, Any]:
    """A cached scan with today's score: ABS scans cached before its score became the larger REASR
    divided by its own threshold (pixel 0.95, filter 0.6) stored the raw REASR; convert those."""
    info = doc.get("info")
    if doc.get("method") == "abs" and isinstance(info, dict) and "pixel_reasr" in info:
        doc = {
            **doc,
            "score": max(
                info["pixel_reasr"] / info["threshold_pixel"],
                info["filter_reasr"] / info["threshold_filter"],
            ),
        }
    return doc


def cmd_write(cache: Path, methods: list[str]) -> None:
    """Write ``reference_scores.json`` from the cached scans of the reference models."""
    names = [n for n, _ in reference_jobs()]
    doc: dict[str, Any] = {
        "description": (
            "Scores of the model scanners on clean Fashion-MNIST reference models; "
            "backdoorlab.defenses.model_scan.calibration turns a scan score into a "
            "false-positive rate against them."
        ),
        "data": "fashion-mnist",
        "how": (
            "clean Fashion-MNIST models named ref-ARCH-sSEED (see 'models' per method): "
            f"architectures from {', '.join(REF_ARCHS)}, seeds from "
            f"{', '.join(map(str, REF_SEEDS))}, trained 3 epochs on a class-balanced "
            f"{10 * SUBSET_PER_CLASS}-image subset of the training set (suffix -full: the whole "
            f"training set); each scanned at the scanner's defaults (seed {SCAN_SEED}) with "
            f"{SCAN_PER_CLASS} clean test images per class (seed {SCAN_SEED}), as "
            "`backdoorlab scan MODEL --data fashion-mnist --method all` does"
        ),
        "date": datetime.date.today().isoformat(),
        "command": COMMAND,
        "methods": {},
    }
    for method in methods:
        scans = load_scans(cache, names, method)
        doc["methods"][method] = {
            "scores": [round(float(r["score"]), 6) for r in scans],
            "models": [r["model"]["name"] for r in scans],
            "flagged": [bool(r["flagged"]) for r in scans],
            "clean_acc": [round(float(r["model"]["clean_acc"]), 4) for r in scans],
        }
        sc = doc["methods"][method]["scores"]
        if sc:
            print(
                f"{method}: {len(sc)} clean references, scores {min(sc):.3f}-{max(sc):.3f}, "
                f"flagged at the default threshold {sum(doc['methods'][method]['flagged'])}"
            )
    atomic_write_json(OUT, doc)
    print(f"wrote {OUT}")


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("phase", choices=["run", "write"])
    ap.add_argument("--cache", default="/work/cache/calib")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--only", default="*", help="glob of model names")
    ap.add_argument("--no-full", action="store_true", help="skip the fully trained references")
    args = ap.parse_args(argv)
    cache = Path(args.cache)
    methods = [m for m in args.methods.split(",") if m]
    t0 = time.perf_counter()
    if args.phase == "run":
        run_zoo(cache, reference_jobs(full=not args.no_full), methods, args.only)
    else:
        cmd_write(cache, methods)
    print(f"done in {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

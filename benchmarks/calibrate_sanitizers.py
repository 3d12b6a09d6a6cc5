"""Calibrate Activation Clustering's cluster analysis on clean models; then score poisoned ones.

Phases (cached under ``--cache``, default ``/tmp/bdl-cache/sanitize``)::

    python benchmarks/calibrate_sanitizers.py train   # clean + poisoned Fashion-MNIST models
    python benchmarks/calibrate_sanitizers.py stats   # per-class 2-means cluster statistics
    python benchmarks/calibrate_sanitizers.py table   # what each flagging rule flags

Every model is trained on the full Fashion-MNIST training set for 5 epochs (the ``attack``
command's default). Clean models: several architectures (``badnets_cnn``, ``lenet5``,
``small_cnn`` width 16 with and without batch norm, ``gap_cnn`` with batch norm) and seeds.
Poisoned models: BadNets patch at 600 / 3,000 / 6,000 poisons (10%, 33% and 50% of target class
0), on several architectures, and blend / Nashville at 6,000.

For each class the script records what Activation Clustering computes (2-means on the PCA-10
projection of the last hidden layer): the relative size of the smaller cluster, the silhouette, and
the median training loss of each cluster under the model (the anti-backdoor-learning cue of Li et
al., NeurIPS 2021: backdoor samples are fitted far more tightly than clean ones). The loss rule's
threshold is chosen from the **clean** models' classes only; the poisoned models are scored
afterwards.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

os.environ.setdefault("BACKDOORLAB_NO_PROGRESS", "1")

from backdoorlab.attacks.badnets import BadNets
from backdoorlab.data import load_dataset
from backdoorlab.models import create_model, load_model, save_model
from backdoorlab.train import TrainSpec, evaluate, fit
from backdoorlab.triggers import create_trigger
from backdoorlab.utils import atomic_write_json
from calibrate_scanners import ARCHS  # the same architecture zoo as the scanner calibration

# name -> (arch key, seed, trigger or None, poison count[, target])
RUNS: dict[str, tuple[Any, ...]] = {
    "clean-badnets_cnn-s0": ("badnets_cnn", 0, None, 0),
    "clean-badnets_cnn-s1": ("badnets_cnn", 1, None, 0),
    "clean-lenet5-s0": ("lenet5", 0, None, 0),
    "clean-small_cnn16-s0": ("small_cnn16", 0, None, 0),
    "clean-small_cnn16bn-s1": ("small_cnn16bn", 1, None, 0),
    "clean-gap_cnn16bn-s0": ("gap_cnn16bn", 0, None, 0),
    "patch600-badnets_cnn-s0": ("badnets_cnn", 0, "patch", 600),
    "patch3000-badnets_cnn-s0": ("badnets_cnn", 0, "patch", 3000),
    "patch6000-badnets_cnn-s0": ("badnets_cnn", 0, "patch", 6000),
    "patch6000-lenet5-s1": ("lenet5", 1, "patch", 6000),
    "patch6000-small_cnn16bn-s0": ("small_cnn16bn", 0, "patch", 6000),
    "blend6000-badnets_cnn-s0": ("badnets_cnn", 0, "blend", 6000),
    "nashville6000-badnets_cnn-s0": ("badnets_cnn", 0, "nashville", 6000),
    "logo6000-badnets_cnn-s0": ("badnets_cnn", 0, "logo", 6000),
    "lsb6000-badnets_cnn-s0": ("badnets_cnn", 0, "lsb", 6000),
    "warp6000-badnets_cnn-s0": ("badnets_cnn", 0, "warp", 6000),
    "patch6000-badnets_cnn-s0-t1": ("badnets_cnn", 0, "patch", 6000, 1),
    "patch6000-badnets_cnn-s0-t8": ("badnets_cnn", 0, "patch", 6000, 8),
    "patch6000-badnets_cnn-s0-t6": ("badnets_cnn", 0, "patch", 6000, 6),
    "patch600-badnets_cnn-s0-t1": ("badnets_cnn", 0, "patch", 600, 1),
    # held out: trained and scored after LOSS_GAP was fixed
    "heldout-clean-badnets_cnn-s2": ("badnets_cnn", 2, None, 0),
    "heldout-clean-gap_cnn16-s1": ("gap_cnn16", 1, None, 0),
    "heldout-clean-lenet5-s1": ("lenet5", 1, None, 0),
    "heldout-clean-small_cnn32bn-s2": ("small_cnn32bn", 2, None, 0),
    "heldout-clean-gap_cnn16bn-s1": ("gap_cnn16bn", 1, None, 0),
    "heldout-clean-badnets_cnn-s3": ("badnets_cnn", 3, None, 0),
    "heldout-patch6000-badnets_cnn-s1": ("badnets_cnn", 1, "patch", 6000),
    "heldout-patch6000-gap_cnn16-s0-t4": ("gap_cnn16", 0, "patch", 6000, 4),
    # held out for the scanners: trained after NC's ratio threshold was fixed
    "heldout-patch600-small_cnn32bn-s1-t5": ("small_cnn32bn", 1, "patch", 600, 5),
    "heldout-sticker600-gap_cnn16bn-s2-t7": ("gap_cnn16bn", 2, "sticker-patch", 600, 7),
    "heldout-nashville600-lenet5-s2-t3": ("lenet5", 2, "nashville", 600, 3),
    "heldout-blend3000-small_cnn16-s1-t9": ("small_cnn16", 1, "blend", 3000, 9),
    # held out, other training lengths: (arch, seed, trigger, count, target, epochs)
    "heldout-clean-badnets_cnn-s4-e10": ("badnets_cnn", 4, None, 0, 0, 10),
    "heldout-clean-small_cnn16bn-s3-e10": ("small_cnn16bn", 3, None, 0, 0, 10),
    "heldout-clean-lenet5-s3-e2": ("lenet5", 3, None, 0, 0, 2),
    "heldout-clean-gap_cnn16bn-s4-e10": ("gap_cnn16bn", 4, None, 0, 0, 10),
}
EPOCHS = 5
TARGET = 0
SIZE = 0.35  # the paper's relative-size rule


def _attack(trigger: str, count: int, target: int = TARGET) -> BadNets:
    return BadNets(create_trigger(trigger), target=target, count=count)


def cmd_train(cache: Path, only: str) -> None:
    """Train (or reuse) every model of ``RUNS``; write ``models/NAME.{safetensors,meta.json}``."""
    import fnmatch

    torch.set_num_threads(1)
    s = load_dataset("fashion-mnist")
    mdir = cache / "models"
    mdir.mkdir(parents=True, exist_ok=True)
    for name, (key, seed, trig, count, *rest) in RUNS.items():
        target = rest[0] if rest else TARGET
        epochs = rest[1] if len(rest) > 1 else EPOCHS
        meta_path = mdir / f"{name}.meta.json"
        if meta_path.exists() or not fnmatch.fnmatch(name, only or "*"):
            continue
        arch, mopts = ARCHS[key]
        attack = _attack(trig, count, target) if trig else None
        train = attack.poison(s.train, seed=seed).data if attack else s.train
        t0 = time.perf_counter()
        model = create_model(arch, num_classes=10, input_shape=(1, 28, 28), seed=seed, **mopts)
        fit(model, train, TrainSpec(epochs=epochs, seed=seed, device="cpu", progress=False))
        ev = evaluate(model, s.test, attack)
        save_model(model, mdir / f"{name}.safetensors")
        meta = {
            "name": name,
            "arch": key,
            "seed": seed,
            "trigger": trig,
            "count": count,
            "target": target,
            "epochs": epochs,
            "clean": trig is None,
            "clean_acc": ev["clean_acc"],
            "asr": ev.get("asr"),
            "train_s": time.perf_counter() - t0,
        }
        atomic_write_json(meta_path, meta)
        print(json.dumps(meta), flush=True)


def cmd_stats(cache: Path) -> None:
    """Per-class cluster statistics of every trained model, with the true poison share per cluster."""
    from backdoorlab.defenses.data_sanitize.activation_clustering import cluster_stats

    torch.set_num_threads(2)
    s = load_dataset("fashion-mnist")
    out = cache / "stats"
    out.mkdir(parents=True, exist_ok=True)
    for p in sorted((cache / "models").glob("*.meta.json")):
        meta = json.loads(p.read_text())
        dest = out / f"{meta['name']}.json"
        if dest.exists():
            continue
        model = load_model(cache / "models" / f"{meta['name']}.safetensors")
        pois = torch.zeros(len(s.train), dtype=torch.bool)
        train = s.train
        if meta["trigger"]:
            pd = _attack(meta["trigger"], meta["count"], meta.get("target", TARGET)).poison(
                s.train, seed=meta["seed"]
            )
            train = pd.data
            pois[pd.indices] = True
        t0 = time.perf_counter()
        rows = cluster_stats(model, train)
        for r in rows:
            idx = r.pop("index")
            lab = r.pop("cluster")
            r.pop("distance")
            r["sizes"] = [int((lab == j).sum()) for j in (0, 1)]
            r["poisons"] = [int(pois[idx][lab == j].sum()) for j in (0, 1)]
        atomic_write_json(
            dest, {"model": meta, "classes": rows, "seconds": time.perf_counter() - t0}
        )
        print(meta["name"], f"{time.perf_counter() - t0:.1f}s", flush=True)


def _verdicts(rows: list[dict[str, Any]], loss_gap: float) -> dict[str, Any]:
    """Activation Clustering's default analysis (size + loss rules) applied to cached class rows."""
    flagged: list[str] = []
    removed = caught = 0
    for r in rows:
        by_loss = r["loss_gap"] >= loss_gap
        by_size = r["relative_size"] <= SIZE
        if by_loss or by_size:
            j = r["low_loss_cluster"] if by_loss else r["small_cluster"]
            flagged.append(f"{r['class']}{'L' if by_loss else 'S'}")
            removed += r["sizes"][j]
            caught += r["poisons"][j]
    return {"flagged": flagged, "removed": removed, "caught": caught}


def cmd_table(cache: Path) -> None:
    """Markdown: per model, the largest loss gap among its classes, the target's, and AC's verdicts."""
    from backdoorlab.defenses.data_sanitize.activation_clustering import LOSS_GAP

    docs = [json.loads(p.read_text()) for p in sorted((cache / "stats").glob("*.json"))]
    print(
        "| model | CA | ASR | max clean-class loss gap | target loss gap | target rel. size | "
        "flagged classes (L loss, S size) | poison recall | removed |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    clean_gaps: list[float] = []
    held_gaps: list[float] = []
    for d in docs:
        m = d["model"]
        rows = d["classes"]
        target = m.get("target", TARGET) if m["trigger"] else None
        others = [r["loss_gap"] for r in rows if r["class"] != target]
        t = next((r for r in rows if r["class"] == target), None)
        v = _verdicts(rows, LOSS_GAP)
        asr = "" if m["asr"] is None else f"{m['asr']:.3f}"
        recall = f"{v['caught'] / m['count']:.3f}" if m["count"] else ""
        tg = f"{t['loss_gap']:.2f}" if t else ""
        ts = f"{t['relative_size']:.2f}" if t else ""
        print(
            f"| {m['name']} | {m['clean_acc']:.3f} | {asr} | {max(others):.2f} | {tg} | {ts} | "
            f"{' '.join(v['flagged']) or '-'} | {recall} | {v['removed']:,} |"
        )
        if m["clean"]:
            (held_gaps if m["name"].startswith("heldout") else clean_gaps).extend(others)
    if held_gaps:
        print(
            f"\nheld-out clean models' classes: {len(held_gaps)}, loss gap max {max(held_gaps):.2f}"
        )
    if clean_gaps:
        mean = sum(clean_gaps) / len(clean_gaps)
        sd = math.sqrt(sum((g - mean) ** 2 for g in clean_gaps) / len(clean_gaps))
        print(
            f"calibration clean models' classes: {len(clean_gaps)}, loss gap max {max(clean_gaps):.2f}, "
            f"mean {mean:.2f}, sd {sd:.2f}; threshold LOSS_GAP = {LOSS_GAP}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("phase", choices=("train", "stats", "table"))
    ap.add_argument("--cache", default="/tmp/bdl-cache/sanitize")
    ap.add_argument("--only", default="", help="glob over model names (train)")
    a = ap.parse_args(argv)
    cache = Path(a.cache)
    if a.phase == "train":
        cmd_train(cache, a.only)
    elif a.phase == "stats":
        cmd_stats(cache)
    else:
        cmd_table(cache)
    return 0


if __name__ == "__main__":
    sys.exit(main())

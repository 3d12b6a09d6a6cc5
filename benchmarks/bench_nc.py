"""Neural Cleanse speed: all K classes in one batched optimisation vs one class at a time.

Both forms run the same code (``reverse_triggers`` with K classes, or K calls with one class each) on
the same model and clean images, so the ratio is measured in one process. Prints the two times, the
ratio, both verdicts and the largest per-class mask-norm difference.

    PYTHONPATH=src python benchmarks/bench_nc.py [--model PATH.safetensors] [--threads 2]

Without ``--model`` it trains a BadNets patch model (badnets_cnn, target 0, 10% poison, 2 epochs on
10,000 Fashion-MNIST images) and caches it under /tmp/bdl-cache/nc/bench/.
Targets: batched NC on a 10-class badnets_cnn < 20 s on 2 cores; batched >= 3x faster.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

os.environ.setdefault("BACKDOORLAB_NO_PROGRESS", "1")

from backdoorlab.attacks.badnets import BadNets
from backdoorlab.data import load_dataset
from backdoorlab.defenses.model_scan.neural_cleanse import NeuralCleanse
from backdoorlab.models import create_model, load_model, save_model
from backdoorlab.train import TrainSpec, fit


def bench_model(cache: Path) -> torch.nn.Module:
    """A cached BadNets patch model for the benchmark."""
    p = cache / "bench" / "badnets_cnn_patch.safetensors"
    if p.exists():
        return load_model(p)
    train = load_dataset("fashion-mnist").train.per_class(1000, seed=0)
    data = BadNets(target=0, rate=0.1).poison(train, seed=0).data
    m = fit(create_model("badnets_cnn", seed=0), data, TrainSpec(epochs=2, progress=False))
    save_model(m, p)
    return m


def main(argv: list[str] | None = None) -> int:
    """Run both forms and print times and their ratio."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a .safetensors model (with JSON card) to scan")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--cache", default="/tmp/bdl-cache/nc")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model(args.model) if args.model else bench_model(Path(args.cache))
    clean = load_dataset("fashion-mnist").test.per_class(args.per_class, seed=0)
    out = {}
    for batched in (True, False):
        det = NeuralCleanse(per_class=args.per_class, batched=batched)
        t0, c0 = time.perf_counter(), time.process_time()
        res = det.scan(model, clean)
        out[batched] = (time.perf_counter() - t0, time.process_time() - c0, res)
    (tb, cb, rb), (ts, cs, rs) = out[True], out[False]
    nb, ns = torch.tensor(rb.per_class["mask_l1"]), torch.tensor(rs.per_class["mask_l1"])
    print(f"threads={torch.get_num_threads()} images={len(clean)} classes={len(nb)}")
    print(
        f"batched:    {tb:7.2f} s wall {cb:7.2f} s CPU  flagged={rb.flagged} score={rb.score:.2f} suspects={rb.suspect_targets}"
    )
    print(
        f"sequential: {ts:7.2f} s wall {cs:7.2f} s CPU  flagged={rs.flagged} score={rs.score:.2f} suspects={rs.suspect_targets}"
    )
    print(f"speed-up (sequential / batched): {ts / tb:.2f}x wall, {cs / cb:.2f}x CPU")
    print(f"same verdict: {rb.flagged == rs.flagged and rb.suspect_targets == rs.suspect_targets}")
    print(
        f"max |norm difference|: {float((nb - ns).abs().max()):.4f} (median norm {float(nb.median()):.1f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

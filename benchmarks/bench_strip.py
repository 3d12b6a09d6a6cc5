"""STRIP throughput against plain inference of the same model, in the same process.

Prints one JSON line: plain inference images/s, STRIP inputs/s (absolute; goal >= 2,000 on
badnets_cnn with 2 CPU threads) and their ratio (STRIP costs about ``n_perturb`` forward passes per
input, so the ratio is close to ``1 / n_perturb``).
Run: ``PYTHONPATH=src python benchmarks/bench_strip.py [--n 4000] [--n-perturb 16] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from backdoorlab.data import ImageData, fashion_mnist_available, load_dataset
from backdoorlab.defenses.strip import STRIP
from backdoorlab.models import create_model


def best_time(fn: object, repeats: int) -> float:
    """Best wall time of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    """Time plain inference and STRIP scoring alternately and print the figures."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4000, help="inputs to score")
    ap.add_argument("--n-perturb", type=int, default=64)
    ap.add_argument("--arch", default="badnets_cnn")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if fashion_mnist_available():
        test = load_dataset("fashion-mnist").test
    else:
        g = torch.Generator().manual_seed(0)
        test = ImageData(
            torch.rand(10000, 1, 28, 28, generator=g), torch.randint(0, 10, (10000,), generator=g)
        )
    clean, x = test.subset(slice(0, 1000)), test.x[1000 : 1000 + args.n]
    model = create_model(args.arch, num_classes=10, input_shape=test.shape, seed=0).eval()
    strip = STRIP(n_perturb=args.n_perturb).fit(model, clean)

    @torch.no_grad()
    def plain() -> None:
        for i in range(0, len(x), 1024):
            model(x[i : i + 1024])

    plain()
    strip.score(x[:256])  # warm-up
    t_plain = best_time(plain, args.repeats)
    t_strip = best_time(lambda: strip.score(x), args.repeats)
    out = {
        "bench": "strip_vs_inference",
        "arch": args.arch,
        "threads": args.threads,
        "inputs": len(x),
        "n_perturb": args.n_perturb,
        "plain_images_per_s": len(x) / t_plain,
        "strip_inputs_per_s": len(x) / t_strip,
        "ratio_strip_over_plain": t_plain / t_strip,
        "ratio_times_n_perturb": t_plain / t_strip * args.n_perturb,
        "goal_inputs_per_s": 2000,
        "meets_goal": len(x) / t_strip >= 2000,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()

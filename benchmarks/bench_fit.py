"""``fit`` against a bare hand-written torch loop: same model, data, batch size, optimiser, process.

Prints one JSON line with the best-of-N epoch times and the ratio ours / bare (goal: <= 1.10).
Run: ``.venv/bin/python benchmarks/bench_fit.py [--n 20000] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from backdoorlab.data import ImageData, fashion_mnist_available, load_dataset
from backdoorlab.models import create_model
from backdoorlab.train import TrainSpec, fit


def bare_epoch(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int
) -> None:
    """The loop a researcher would write by hand."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(x), generator=g)
    model.train()
    for i in range(0, len(x), batch_size):
        idx = perm[i : i + batch_size]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()


def main() -> None:
    """Time both loops alternately and print the ratio."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000, help="training images")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--arch", default="badnets_cnn")
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    if fashion_mnist_available():
        data = load_dataset("fashion-mnist").train.subset(slice(0, args.n))
    else:
        g = torch.Generator().manual_seed(0)
        data = ImageData(
            torch.rand(args.n, 1, 28, 28, generator=g), torch.randint(0, 10, (args.n,), generator=g)
        )
    spec = TrainSpec(
        epochs=1, batch_size=args.batch_size, lr=1e-3, scheduler="none", progress=False
    )
    ours, bare = [], []
    # warm-up both paths once
    fit(create_model(args.arch, seed=0), data.subset(slice(0, 2048)), spec)
    bare_epoch(create_model(args.arch, seed=0), data.x[:2048], data.y[:2048], args.batch_size, 0)
    for r in range(args.repeats):
        m = create_model(args.arch, seed=r)
        t = time.perf_counter()
        bare_epoch(m, data.x, data.y, args.batch_size, r)
        bare.append(time.perf_counter() - t)
        m = create_model(args.arch, seed=r)
        t = time.perf_counter()
        fit(m, data, TrainSpec(**{**spec.to_dict(), "seed": r}))
        ours.append(time.perf_counter() - t)
    out = {
        "bench": "fit_vs_bare_loop",
        "arch": args.arch,
        "images": len(data),
        "batch_size": args.batch_size,
        "bare_s": min(bare),
        "ours_s": min(ours),
        "ratio": min(ours) / min(bare),
        "ours_images_per_s": len(data) / min(ours),
        "all_bare_s": bare,
        "all_ours_s": ours,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()

"""STRIP throughput against plain inference of the same model, in the same process.

A BadNets patch model (badnets_cnn, 3x3 patch, 10% poison, 3 epochs on the 60,000 Fashion-MNIST
training images; cached in /tmp/bdl-cache/strip-bench) scores a stream of half clean, half triggered test inputs. Prints one JSON
line per STRIP setting: plain (eager) inference images/s, STRIP inputs/s (absolute; goal >= 2,000 on
badnets_cnn with 2 CPU threads), their ratio, the mean number of overlays per input, and AUROC /
FAR / FRR on the stream, for: the fixed-N form (every input gets ``n_perturb`` overlays, eager
model, as in the paper) and the default (sequential early stop + frozen TorchScript copy).
Run: ``PYTHONPATH=src python benchmarks/bench_strip.py [--n 4000] [--n-perturb 64] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from backdoorlab.data import fashion_mnist_available, load_dataset
from backdoorlab.defenses.input_detection.strip import STRIP
from backdoorlab.metrics.detection import detection_report
from backdoorlab.models import create_model
from bench_triggers import best_of  # benchmarks/ is on sys.path when run as a script


def bench_model(test_shape: tuple[int, ...]) -> tuple[torch.nn.Module, Any]:
    """A cached BadNets patch model (60,000 images, 3 epochs) and its attack."""
    from backdoorlab.attacks.badnets import BadNets
    from backdoorlab.models import load_model, save_model
    from backdoorlab.train import TrainSpec, fit

    attack = BadNets(target=0, rate=0.1)
    p = Path("/tmp/bdl-cache/strip-bench/badnets_cnn_patch_e3.safetensors")
    if p.exists():
        return load_model(p), attack
    train = load_dataset("fashion-mnist").train
    m = create_model("badnets_cnn", num_classes=10, input_shape=test_shape, seed=0)
    fit(m, attack.poison(train, seed=0).data, TrainSpec(epochs=3, progress=False))
    save_model(m, p)
    return m, attack


def main() -> None:
    """Time plain inference and STRIP scoring alternately and print the figures."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4000, help="inputs to score (half triggered)")
    ap.add_argument("--n-perturb", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not fashion_mnist_available():
        raise SystemExit("bench_strip needs Fashion-MNIST (apt install dataset-fashion-mnist)")
    test = load_dataset("fashion-mnist").test
    model, attack = bench_model(test.shape)
    model.eval()
    clean = test.subset(slice(0, 1000))
    held = test.subset(slice(1000, 1000 + args.n // 2))
    trig = attack.triggered_test(held, seed=1)
    x = torch.cat([held.x, trig.x])
    truth = torch.cat([torch.zeros(len(held)), torch.ones(len(trig))])

    @torch.no_grad()
    def plain() -> None:
        for i in range(0, len(x), 1024):
            model(x[i : i + 1024])

    plain()
    t_plain = best_of(plain, args.repeats)
    for name, opts in (
        ("fixed-N, eager", {"adaptive": False, "jit": False}),
        ("default (early stop + frozen TorchScript)", {}),
    ):
        strip = STRIP(n_perturb=args.n_perturb, **opts).fit(model, clean)  # type: ignore[arg-type]
        strip.score(x[:256])  # warm-up
        t_strip = best_of(lambda s=strip: s.score(x), args.repeats)  # type: ignore[misc]
        scores = strip.score(x)
        used = strip.overlays_used
        rep = detection_report(scores, truth, strip.threshold)
        out = {
            "bench": "strip_vs_inference",
            "setting": name,
            "threads": args.threads,
            "inputs": len(x),
            "n_perturb": args.n_perturb,
            "mean_overlays": float(used.float().mean()) if used is not None else args.n_perturb,
            "plain_images_per_s": round(len(x) / t_plain),
            "strip_inputs_per_s": round(len(x) / t_strip),
            "ratio_strip_over_plain": t_plain / t_strip,
            "auroc": rep["auroc"],
            "far": 1 - rep["recall"],
            "frr": rep["fpr"],
            "goal_inputs_per_s": 2000,
            "meets_goal": len(x) / t_strip >= 2000,
        }
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()

"""Trigger speed: every registered trigger on all 60,000 Fashion-MNIST training images, against
(a) a plain tensor copy of the same data (the memory-bound limit) and (b) ART's
``PoisoningAttackBackdoor`` with ``add_pattern_bd`` / ``add_single_bd`` / ``insert_image`` on the
same images (``adversarial-robustness-toolbox``, a benchmark-only extra: ``pip install -e .[bench]``).

Prints a Markdown table and writes JSON lines to ``--json`` if given. Times are the best of
``--repeats`` runs, all measured in this one process.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backdoorlab.data import ImageData, fashion_mnist_available, load_dataset
from backdoorlab.triggers import TRIGGERS


def best_of(fn: Callable[[], Any], repeats: int) -> float:
    """Best wall time of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def art_rows(x: torch.Tensor, repeats: int, ours: dict[str, float]) -> list[dict[str, Any]]:
    """ART's backdoor perturbations on the same images, with our closest trigger for the ratio."""
    try:
        from art.attacks.poisoning import PoisoningAttackBackdoor
        from art.attacks.poisoning.perturbations import add_pattern_bd, add_single_bd, insert_image
    except ImportError:
        print("ART not installed (pip install -e .[bench]); skipping the ART comparison")
        return []
    rows = []
    xn3 = x[:, 0].numpy()  # (N, H, W): ART's vectorised grayscale path
    xn4 = x.permute(0, 2, 3, 1).numpy()  # (N, H, W, 1): channels-last colour-style layout
    y = np.zeros((len(x), 10), dtype=np.float32)
    y[:, 0] = 1
    for label, pert, arr, mine in (
        ("add_pattern_bd (N,H,W)", add_pattern_bd, xn3, "patch"),
        ("add_pattern_bd (N,H,W,1)", add_pattern_bd, xn4, "patch"),
        ("add_single_bd (N,H,W)", add_single_bd, xn3, "patch"),
    ):
        atk = PoisoningAttackBackdoor(pert)
        t = best_of(lambda atk=atk, arr=arr: atk.poison(arr, y=y), repeats)
        rows.append(
            {
                "art": label,
                "art_s": t,
                "ours": mine,
                "ours_s": ours[mine],
                "speedup": t / ours[mine],
            }
        )
    # insert_image pastes a picture per image with PIL: time a subset and scale to the full set
    with tempfile.TemporaryDirectory() as d:
        from PIL import Image

        logo = Path(d) / "logo.png"
        Image.fromarray(
            (np.random.default_rng(0).random((5, 5, 4)) * 255).astype(np.uint8), "RGBA"
        ).save(logo)
        n_sub = 2000
        atk = PoisoningAttackBackdoor(
            lambda a: insert_image(
                a,
                backdoor_path=str(logo),
                random=False,
                x_shift=20,
                y_shift=20,
                size=(5, 5),
                mode="L",
            )
        )
        sub = xn4[:n_sub]
        t = best_of(lambda: atk.poison(sub, y=y[:n_sub]), 1) * len(x) / n_sub
        rows.append(
            {
                "art": f"insert_image (N,H,W,1), timed on {n_sub}, scaled",
                "art_s": t,
                "ours": "image-patch",
                "ours_s": ours["image-patch"],
                "speedup": t / ours["image-patch"],
            }
        )
    return rows


def main() -> None:
    """Time every trigger against a copy and against ART; print the tables."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", help="write results as JSON here")
    args = ap.parse_args()
    if fashion_mnist_available():
        data = load_dataset("fashion-mnist").train
    else:
        g = torch.Generator().manual_seed(0)
        data = ImageData(
            torch.rand(60000, 1, 28, 28, generator=g), torch.zeros(60000, dtype=torch.long)
        )
    x = data.x.contiguous()
    copy_s = best_of(lambda: x.clone(), args.repeats)
    ours: dict[str, float] = {}
    rows = []
    for name in TRIGGERS.names():
        trig = TRIGGERS.create(name)
        trig(x[:8], torch.Generator().manual_seed(0))  # warm-up / build caches
        t = best_of(lambda trig=trig: trig(x, torch.Generator().manual_seed(0)), args.repeats)
        ours[name] = t
        rows.append(
            {
                "trigger": name,
                "kind": trig.kind,
                "seconds": t,
                "images_per_s": len(x) / t,
                "x_copy": t / copy_s,
            }
        )
    print(
        f"# {len(x)} images {tuple(x.shape[1:])}, copy: {copy_s * 1e3:.1f} ms, torch threads {torch.get_num_threads()}\n"
    )
    print("| trigger | kind | ms | images/s | x copy time |\n|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['trigger']} | {r['kind']} | {r['seconds'] * 1e3:.1f} | {r['images_per_s']:,.0f} | {r['x_copy']:.1f} |"
        )
    arts = art_rows(x, args.repeats, ours)
    if arts:
        print(
            "\n| ART perturbation | ART ms | ours | our ms | ours faster by |\n|---|---|---|---|---|"
        )
        for r in arts:
            print(
                f"| {r['art']} | {r['art_s'] * 1e3:.1f} | {r['ours']} | {r['ours_s'] * 1e3:.1f} | {r['speedup']:.1f}x |"
            )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"copy_s": copy_s, "triggers": rows, "art": arts}, indent=2)
        )


if __name__ == "__main__":
    main()

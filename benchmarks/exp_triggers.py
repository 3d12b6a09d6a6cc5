"""The trigger-family table: every registered trigger as a BadNets-style dirty-label attack.

For each trigger: poison rate, clean accuracy (CA), the clean model's CA, attack success rate (ASR),
PSNR and SSIM of the trigger. Fashion-MNIST with the BadNets CNN by default; ``--data
synthetic-signs`` runs the colour set with the small CNN. Writes a Markdown table and JSON.

Run: ``.venv/bin/python benchmarks/exp_triggers.py --epochs 5 [--triggers nashville,gotham]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from backdoorlab.experiment import RunConfig, prepare, train_model
from backdoorlab.pipeline import run_attack
from backdoorlab.train import TrainSpec, evaluate
from backdoorlab.triggers import TRIGGERS


def main() -> None:
    """Train one clean and one backdoored model per trigger; print the table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--rate", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--triggers", default="", help="comma-separated names [all]")
    ap.add_argument("--data-opt", action="append", default=[], metavar="K=V")
    ap.add_argument("--out", default="exp_triggers.json")
    args = ap.parse_args()
    names = [n for n in args.triggers.split(",") if n] or TRIGGERS.names()
    dopts = {k: int(v) for k, v in (kv.split("=", 1) for kv in args.data_opt)}
    base = dict(
        data=args.data,
        data_options=dopts,
        train=TrainSpec(epochs=args.epochs, progress=False),
        seed=args.seed,
        rate=args.rate,
    )
    p0 = prepare(RunConfig(**base))  # type: ignore[arg-type]
    t = time.perf_counter()
    clean = train_model(p0, p0.splits.train)
    clean_acc = evaluate(clean, p0.splits.test)["clean_acc"]
    print(f"clean model: CA {clean_acc:.4f} ({time.perf_counter() - t:.0f} s)", file=sys.stderr)
    rows = []
    for n in names:
        t = time.perf_counter()
        res = run_attack(RunConfig(**base, trigger=n))  # type: ignore[arg-type]
        row = {
            "trigger": n,
            "rate": args.rate,
            "clean_acc": res.clean_acc,
            "clean_model_acc": clean_acc,
            "asr": res.asr,
            "psnr": res.stealth["psnr"],
            "ssim": res.stealth["ssim"],
            "seconds": time.perf_counter() - t,
        }
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
        Path(args.out).write_text(
            json.dumps({"data": args.data, "epochs": args.epochs, "rows": rows}, indent=2)
        )
    print(f"\n{args.data}, {args.epochs} epochs, seed {args.seed}\n")
    print(
        "| trigger | rate | CA | clean-model CA | ASR | PSNR | SSIM |\n|---|---|---|---|---|---|---|"
    )
    for r in rows:
        print(
            f"| {r['trigger']} | {r['rate']} | {r['clean_acc']:.4f} | {r['clean_model_acc']:.4f} | {r['asr']:.4f} | {r['psnr']:.1f} | {r['ssim']:.3f} |"
        )


if __name__ == "__main__":
    main()

"""The defense x attack table: every input detector, sanitiser and repair on four trojaned models.

For each trigger (BadNets patch, blend, Nashville filter, WaNet warp) this trains a badnets_cnn on
Fashion-MNIST with 600 poisoned images (10% of the target class, the sanitiser papers' setting) for
10 epochs via ``backdoorlab attack``, then runs ``backdoorlab defend`` (strip, fine-pruning, nad) and
``backdoorlab sanitize`` (spectral-signatures eps=0.1, activation-clustering) on the run folder, and
prints the protocol's figures from the ``DIR/defenses/NAME.json`` files as a Markdown table.

Run: ``.venv/bin/python benchmarks/exp_defenses.py [--out /tmp/bdl-defenses]`` (about 25 min on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

TRIGGERS = ("patch", "blend", "nashville", "warp")
DEFEND = ("strip", "fine-pruning", "nad")
SANITIZE = (("spectral-signatures", ["--defense-opt", "eps=0.1"]), ("activation-clustering", []))


def cli(*args: str) -> None:
    """Run ``backdoorlab ARGS`` in a subprocess; stop on failure."""
    subprocess.run([sys.executable, "-m", "backdoorlab", *args], check=True)


def fmt(v: object) -> str:
    return f"{v:.3f}" if isinstance(v, float) else "" if v is None else str(v)


def main() -> None:
    """Train, defend, tabulate."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/bdl-defenses")
    ap.add_argument("--count", type=int, default=600)
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()
    rows = []
    for t in TRIGGERS:
        run = Path(args.out) / f"{t}_c{args.count}_e{args.epochs}"
        if not (run / "results.json").exists():
            cli(
                "attack",
                "--trigger",
                t,
                "--count",
                str(args.count),
                "--epochs",
                str(args.epochs),
                "--out",
                str(run),
            )
        for d in DEFEND:
            if not (run / "defenses" / f"{d}.json").exists():
                cli("defend", "--run", str(run), "--defense", d)
        for d, opts in SANITIZE:
            if not (run / "defenses" / f"{d}.json").exists():
                cli("sanitize", "--run", str(run), "--defense", d, *opts)
        for f in sorted((run / "defenses").glob("*.json")):
            rows.append((t, json.loads(f.read_text())))
    print(
        "| attack | defense | AUROC | recall / FAR | CA before | ASR before | CA after | ASR after | s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for t, r in rows:
        det = r.get("removed_recall", None)
        if det is None and r.get("far") is not None:
            det = f"FAR {r['far']:.3f}"
        print(
            f"| {t} | {r['defense']} | {fmt(r.get('auroc'))} | {fmt(det)} | {fmt(r.get('clean_acc_before'))} "
            f"| {fmt(r.get('asr_before'))} | {fmt(r.get('clean_acc_after'))} | {fmt(r.get('asr_after'))} | {fmt(r.get('seconds'))} |"
        )


if __name__ == "__main__":
    main()

"""``backdoorlab defend`` and ``backdoorlab sanitize``: any registered defense on an attack run folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..config import parse_kv

SUMMARY_KEYS = (
    "auroc",
    "frr",
    "far",
    "removed_recall",
    "removed_precision",
    "clean_acc_before",
    "asr_before",
    "clean_acc_after",
    "asr_after",
    "der",
    "flagged",
    "score",
    "threshold",
    "seconds",
    "peak_mem_mb",
)


def summary(doc: dict[str, Any]) -> str:
    """One line of the record's headline figures."""
    parts = []
    for k in SUMMARY_KEYS:
        v = doc.get(k)
        if v is None:
            continue
        parts.append(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}")
    return " ".join(parts)


def cmd_defend(args: argparse.Namespace) -> int:
    """Run a defense on a run folder and write DIR/defenses/NAME.json."""
    from ..pipeline import run_defense

    rec = run_defense(
        args.run,
        args.defense,
        clean_fraction=args.clean_fraction,
        frr=args.frr,
        seed=args.seed,
        family="data-sanitize" if args.command == "sanitize" else None,
        **parse_kv(args.defense_opt, "--defense-opt"),
    )
    doc = rec.to_json()
    print(f"{rec.defense} ({rec.family}): {rec.verdict}")
    print(f"  {summary(doc)}")
    for b in getattr(rec, "budgets", ()):
        print(
            f"  budget {b.label}: removed {b.n_removed}, recall {b.recall:.3f}, "
            f"precision {b.precision:.3f}"
        )
    print(f"wrote {Path(args.run) / 'defenses' / (rec.defense + '.json')}")
    return 0


def _add_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--defense", required=True, help="defense name (`backdoorlab list defenses`)")
    sp.add_argument(
        "--run", required=True, help="run folder written by `backdoorlab attack --out DIR`"
    )
    sp.add_argument(
        "--defense-opt", action="append", metavar="K=V", help="defense option (repeatable)"
    )
    sp.add_argument(
        "--clean-fraction",
        type=float,
        default=None,
        help="class-balanced fraction of the clean test split given to the defender "
        "[0.3 for repairs (5%% of the training-set size on Fashion-MNIST), else 0.1]",
    )
    sp.add_argument(
        "--frr",
        type=float,
        default=0.01,
        help="input detectors: false-rejection rate on clean data [0.01]",
    )
    sp.add_argument(
        "--seed", type=int, default=0, help="seed of the defender split and the defense [0]"
    )


def register(sub: Any) -> None:
    """Add ``defend`` and ``sanitize``."""
    sp = sub.add_parser(
        "defend",
        help="run a defense (scanner, detector, sanitiser or repair) on an attack run folder",
    )
    _add_args(sp)
    sp.set_defaults(func=cmd_defend)
    sp = sub.add_parser(
        "sanitize",
        help="score a run's training set with a data sanitiser, retrain on the kept part",
    )
    _add_args(sp)
    sp.set_defaults(func=cmd_defend)

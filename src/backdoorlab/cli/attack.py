"""``backdoorlab attack``: poison a data set, train a model, measure CA / ASR, write a run folder."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import ConfigError
from .common import add_run_args, run_config_from_args


def cmd_attack(args: argparse.Namespace) -> int:
    """Poison, train, evaluate and write a run folder."""
    from ..experiment import prepare
    from ..pipeline import run_attack

    if not args.out:
        raise ConfigError("attack: --out DIR is required")
    cfg = run_config_from_args(args)
    p = prepare(cfg)
    print(
        f"attack {cfg.attack} / trigger {p.trigger.name} on {cfg.data} ({len(p.splits.train)} train, "
        f"{len(p.splits.test)} test), model {p.arch}, {cfg.train.epochs} epochs",
        file=sys.stderr,
    )
    run = run_attack(cfg, args.out, prepared=p)
    line = (
        f"clean_acc={run.clean_acc:.4f} asr={run.asr:.4f}"
        + (f" ra={run.ra:.4f}" if run.ra is not None else "")
        + f" poisoned={run.poisoned} train={run.timings['train_s']:.1f}s"
    )
    if run.clean_model_metrics is not None:
        line += f" clean_model_acc={run.clean_model_metrics.clean_acc:.4f}"
    print(line)
    print(f"wrote {args.out}/results.json, model.safetensors, samples.png")
    return 0


def register(sub: Any) -> None:
    """Add ``attack``."""
    sp = sub.add_parser(
        "attack", help="poison a data set, train a model, measure clean accuracy and ASR"
    )
    add_run_args(sp)
    sp.add_argument("--out", help="output folder (written atomically)")
    sp.set_defaults(func=cmd_attack)

"""``backdoorlab demo``: the main job in one command (clean and backdoored models, defenses, a report)."""

from __future__ import annotations

import argparse
from typing import Any


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo and write its report folder."""
    import shlex
    import sys

    from ..demo import run_demo

    command = "backdoorlab " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else None
    run_demo(
        out=args.out,
        epochs=args.epochs,
        seed=args.seed,
        data=args.data,
        quick=args.quick,
        command=command,
    )
    return 0


def register(sub: Any) -> None:
    """Add ``demo``."""
    sp = sub.add_parser(
        "demo", help="the main job: clean and backdoored models, a table and a report"
    )
    sp.add_argument("--out", default="backdoorlab-demo", help="report folder [backdoorlab-demo]")
    sp.add_argument(
        "--data", default=None, help="data set [fashion-mnist, or synthetic-signs if absent]"
    )
    sp.add_argument("--epochs", type=int, default=None)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--quick", action="store_true", help="a small fast run (for smoke tests)")
    sp.set_defaults(func=cmd_demo)

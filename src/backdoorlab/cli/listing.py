"""``backdoorlab list``: registered names, one a line; defenses grouped by point of action."""

from __future__ import annotations

import argparse
from typing import Any

FAMILIES = ("attacks", "triggers", "defenses", "models", "data")
DEFENSE_GROUPS = (
    ("model-scan", "Model scanners: is this model backdoored?"),
    ("input-detection", "Input detectors: flag triggered inputs at run time"),
    ("data-sanitize", "Data sanitisers: drop poisoned training samples"),
    ("model-repair", "Model repairs: remove the backdoor with a few clean samples"),
)


def registries() -> dict[str, Any]:
    """The registry of each family (importing them registers every method)."""
    from ..attacks import ATTACKS
    from ..data import DATASETS
    from ..defenses import DEFENSES
    from ..models import MODELS
    from ..triggers import TRIGGERS

    return {
        "attacks": ATTACKS,
        "triggers": TRIGGERS,
        "defenses": DEFENSES,
        "models": MODELS,
        "data": DATASETS,
    }


def cmd_list(args: argparse.Namespace) -> int:
    """Print registered names with a one-line description (and, for defenses, the paper)."""
    regs = registries()
    fams = [args.family] if args.family else list(FAMILIES)
    for fam in fams:
        reg = regs[fam]
        if len(fams) > 1:
            print(f"[{fam}]")
        if fam == "defenses":
            _print_defenses(reg)
        else:
            width = max((len(n) for n in reg.names()), default=0)
            for e in reg.entries():
                print(f"{e.name:<{width}}  {e.description}")
        if len(fams) > 1:
            print()
    return 0


def _print_defenses(reg: Any) -> None:
    entries = reg.entries()
    width = max((len(e.name) for e in entries), default=0)
    groups = [*DEFENSE_GROUPS]
    groups += [(f, f) for f in sorted({e.family for e in entries} - {g for g, _ in groups})]
    for fam, title in groups:
        members = [e for e in entries if e.family == fam]
        if not members:
            continue
        print(f"{fam}: {title}")
        for e in members:
            alias = f" (also: {', '.join(e.aliases)})" if e.aliases else ""
            print(f"  {e.name:<{width}}  {e.paper or e.description}{alias}")


def register(sub: Any) -> None:
    """Add ``list``."""
    sp = sub.add_parser(
        "list", help="list registered attacks, triggers, defenses, models or data sets"
    )
    sp.add_argument("family", nargs="?", choices=FAMILIES)
    sp.set_defaults(func=cmd_list)

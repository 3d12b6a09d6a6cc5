"""The ``backdoorlab`` entry point: the parser with every subcommand, and one-line errors.

Configuration is layered: built-in defaults < ``--config FILE`` (JSON or TOML) < command-line flags.
Bad input prints one line naming the problem and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from .. import __version__
from ..errors import BackdoorLabError
from . import attack, defend, demo, gallery, listing, scan


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    p = _Parser(
        prog="backdoorlab", description="Craft, measure, find and remove deep-learning backdoors."
    )
    p.add_argument("--version", action="version", version=f"backdoorlab {__version__}")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for mod in (listing, attack, gallery, scan, defend, demo):
        mod.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``backdoorlab`` console command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc: int = args.func(args)
        return rc
    except BackdoorLabError as e:
        if args.debug:
            raise
        print(f"backdoorlab {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"backdoorlab {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: keep the message to one line unless --debug
        if args.debug:
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(
            f"backdoorlab {args.command}: internal error: {type(e).__name__}: {msg} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""The ``backdoorlab`` command: one module per subcommand over ``backdoorlab.pipeline``.

Only this package knows about argparse; no library module imports it. Heavy imports (torch) happen
inside the command functions, so ``backdoorlab --version`` and ``--help`` answer at once.
"""

from __future__ import annotations

from .main import build_parser, main

__all__ = ["build_parser", "main"]

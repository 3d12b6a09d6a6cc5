"""Input detectors: flag triggered inputs at run time."""

from __future__ import annotations

from . import sentinet, strip

__all__ = ["sentinet", "strip"]

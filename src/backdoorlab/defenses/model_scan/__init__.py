"""Model scanners: is this model backdoored, and towards which class?"""

from __future__ import annotations

from . import abs, neural_cleanse, tabor

__all__ = ["abs", "neural_cleanse", "tabor"]

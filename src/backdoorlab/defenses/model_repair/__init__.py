"""Model repairs: remove a backdoor from a model with a few clean samples."""

from __future__ import annotations

from . import anp, fine_pruning, nad, unlearning

__all__ = ["anp", "fine_pruning", "nad", "unlearning"]

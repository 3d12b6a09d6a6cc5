"""Data sanitisers: score a (possibly poisoned) training set and drop the suspects."""

from __future__ import annotations

from . import activation_clustering, spectral, spectre

__all__ = [
    "activation_clustering",
    "spectral",
    "spectre",
]

"""Defenses: model scanners, input detectors, data sanitisers and model repairs, by name."""

from __future__ import annotations

from . import (
    abs,
    activation_clustering,
    anp,
    fine_pruning,
    nad,
    neural_cleanse,
    sentinet,
    spectral,
    spectre,
    strip,
    tabor,
    unlearning,
)
from .base import DEFENSES, DataSanitizer, InputDetector, ModelDetector, ModelRepair, ScanResult

__all__ = [
    "DEFENSES",
    "DataSanitizer",
    "InputDetector",
    "ModelDetector",
    "ModelRepair",
    "ScanResult",
    "abs",
    "activation_clustering",
    "anp",
    "fine_pruning",
    "nad",
    "neural_cleanse",
    "sentinet",
    "spectral",
    "spectre",
    "strip",
    "tabor",
    "unlearning",
]

"""Defenses, grouped by the point where a defender acts.

- ``model_scan``: is this model backdoored, and towards which class? (Neural Cleanse, TABOR, ABS)
- ``input_detection``: flag triggered inputs at run time (STRIP, SentiNet)
- ``data_sanitize``: drop suspected poisons from a training set (AC, Spectral Signatures, SPECTRE)
- ``model_repair``: remove a backdoor with a few clean samples (Fine-Pruning, NAD, ANP, NC unlearning)

Importing this package registers every method in ``DEFENSES``; a module that fails to import is an
error (no silent fallback).
"""

from __future__ import annotations

from . import data_sanitize, input_detection, model_repair, model_scan
from .base import DEFENSES, DataSanitizer, InputDetector, ModelDetector, ModelRepair, ScanResult

__all__ = [
    "DEFENSES",
    "DataSanitizer",
    "InputDetector",
    "ModelDetector",
    "ModelRepair",
    "ScanResult",
    "data_sanitize",
    "input_detection",
    "model_repair",
    "model_scan",
]

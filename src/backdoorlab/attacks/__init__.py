"""Attacks: data poisoning (dirty- and clean-label) and, later, model-side attacks, by name."""

from __future__ import annotations

from typing import Any

from .badnets import BadNets
from .base import ATTACKS, MODES, PoisonedData, PoisoningAttack, TargetMap
from .clean_label import CleanLabel, LabelConsistent, pgd_linf


def create_attack(name: str, **options: Any) -> PoisoningAttack:
    """Build a registered attack by name (``trigger=`` takes a ``Trigger`` object)."""
    attack: PoisoningAttack = ATTACKS.create(name, **options)
    return attack


__all__ = [
    "ATTACKS",
    "MODES",
    "BadNets",
    "CleanLabel",
    "LabelConsistent",
    "PoisonedData",
    "PoisoningAttack",
    "TargetMap",
    "create_attack",
    "pgd_linf",
]

"""Defenses: model scanners, input detectors, data sanitisers and model repairs, by name."""

from __future__ import annotations

from typing import Any

from ..registry import Registry

DEFENSES: Registry[Any] = Registry("defenses")

__all__ = ["DEFENSES"]

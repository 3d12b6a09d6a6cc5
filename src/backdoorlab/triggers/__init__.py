"""Triggers: batched replace (mask + pattern) and perturb (image-wide) transforms, by name.

Families (each module cites its paper): ``patch`` (BadNets squares), :mod:`.shapes` (shape, sticker
and image patches), :mod:`.textures` (logos), :mod:`.blend` (blend, norm-bounded noise, SIG),
:mod:`.filters` (Instagram-style filters), :mod:`.stego` (LSB steganography), :mod:`.warp` (WaNet).
"""

from __future__ import annotations

from typing import Any

from .base import TRIGGERS, ReplaceTrigger, Trigger, parse_color, parse_position, place
from .blend import (
    BlendTrigger,
    NoiseL2Trigger,
    NoiseLinfTrigger,
    SigTrigger,
    noise_pattern,
    sig_signal,
)
from .filters import (
    FILTERS,
    Filter1977,
    FilterTrigger,
    GothamFilter,
    InkwellFilter,
    KelvinFilter,
    LomoFilter,
    NashvilleFilter,
    ToasterFilter,
    apply_filter,
    blend_overlay,
    blend_screen,
    blend_soft_light,
    brightness,
    contrast,
    saturate,
    sepia,
    tone_curve,
    vignette,
)
from .patch import PatchTrigger
from .shapes import SHAPES, ImagePatchTrigger, ShapePatchTrigger, StickerPatchTrigger, shape_mask
from .stego import LsbTrigger, lsb_decode, lsb_encode
from .textures import TEXTURES, LogoImageTrigger, LogoTrigger, texture
from .warp import WarpTrigger, apply_grid, warp_grid


def create_trigger(name: str, **options: Any) -> Trigger:
    """Build a registered trigger by name with keyword options.

    Example:
        >>> import torch
        >>> t = create_trigger("patch", size=3, color="white")
        >>> t(torch.zeros(2, 1, 28, 28))[0, 0, -2, -2].item()
        1.0
    """
    trig: Trigger = TRIGGERS.create(name, **options)
    return trig


def list_triggers(pattern: str = "*") -> list[str]:
    """Registered trigger names matching a glob pattern."""
    return TRIGGERS.names(pattern)


__all__ = [
    "FILTERS",
    "SHAPES",
    "TEXTURES",
    "TRIGGERS",
    "BlendTrigger",
    "Filter1977",
    "FilterTrigger",
    "GothamFilter",
    "ImagePatchTrigger",
    "InkwellFilter",
    "KelvinFilter",
    "LogoImageTrigger",
    "LogoTrigger",
    "LomoFilter",
    "LsbTrigger",
    "NashvilleFilter",
    "NoiseL2Trigger",
    "NoiseLinfTrigger",
    "PatchTrigger",
    "ReplaceTrigger",
    "ShapePatchTrigger",
    "SigTrigger",
    "StickerPatchTrigger",
    "ToasterFilter",
    "Trigger",
    "WarpTrigger",
    "apply_filter",
    "apply_grid",
    "blend_overlay",
    "blend_screen",
    "blend_soft_light",
    "brightness",
    "contrast",
    "create_trigger",
    "list_triggers",
    "lsb_decode",
    "lsb_encode",
    "noise_pattern",
    "parse_color",
    "parse_position",
    "place",
    "saturate",
    "sepia",
    "shape_mask",
    "sig_signal",
    "texture",
    "tone_curve",
    "vignette",
    "warp_grid",
]

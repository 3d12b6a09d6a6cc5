"""Patch triggers: a small solid or patterned square stamped on the image (BadNets).

Gu, Dolan-Gavitt & Garg, "BadNets: Identifying Vulnerabilities in the Machine Learning Model Supply
Chain", arXiv 1708.06733, 2017 (Sec. 4: single-pixel and pattern backdoors in the image corner).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..errors import ConfigError
from .base import TRIGGERS, ReplaceTrigger, as_choice, as_int, parse_color, parse_position


def patch_pattern(
    size: tuple[int, int], channels: int, color: Any, pattern: str, seed: int
) -> torch.Tensor:
    """The ``(C, h, w)`` content of a patch: "solid", "checker" (colour / black) or "random"."""
    h, w = size
    col = parse_color(color, channels).view(channels, 1, 1)
    if pattern == "solid":
        return col.expand(channels, h, w).clone()
    if pattern == "checker":
        chk = ((torch.arange(h).view(h, 1) + torch.arange(w).view(1, w)) % 2 == 0).float()
        return col * chk
    if pattern == "random":
        g = torch.Generator().manual_seed(seed)
        return torch.rand(channels, h, w, generator=g)
    raise ConfigError(f"bad patch pattern {pattern!r}: expected solid, checker or random")


@TRIGGERS.register(
    "patch",
    "BadNets square patch: size, colour, pattern (solid/checker/random), position (corner, x,y or random)",
)
@dataclass
class PatchTrigger(ReplaceTrigger):
    """A ``size`` x ``size`` patch of ``color`` at ``position`` (Gu et al. 2017, BadNets)."""

    size: int = 3
    color: Any = "white"
    pattern: str = "solid"
    position: Any = "bottom-right"
    margin: int = 1
    seed: int = 0
    name = "patch"

    def __post_init__(self) -> None:
        # Options may arrive as strings from the CLI ("3", "red", "4,5"): coerce and check them here.
        self.size = as_int(self.size, "patch size", lo=1)
        self.pattern = as_choice(self.pattern, "patch pattern", ("solid", "checker", "random"))
        self.margin = as_int(self.margin, "patch margin", lo=0)
        self.seed = as_int(self.seed, "patch seed")
        self.position = parse_position(self.position)
        parse_color(self.color, 3)  # a bad colour fails now, not at the first batch

    def mask_pattern(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        c = x.shape[1]
        s = self.size
        content = patch_pattern((s, s), c, self.color, self.pattern, self.seed)
        return self.place_object(torch.ones(s, s), content, x, generator)

"""Light batched augmentation on ``(N, C, H, W)`` tensors: random crop with padding, horizontal flip."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ..errors import ConfigError

AUGMENTATIONS = ("none", "crop", "flip", "crop+flip")


def random_crop(
    x: torch.Tensor, padding: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Pad by ``padding`` (zeros) and crop back to size at a random offset per image (vectorised)."""
    if padding <= 0:
        return x
    n, c, h, w = x.shape
    xp = F.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    rows = dy.view(n, 1) + torch.arange(h, device=x.device).view(1, h)  # (n, h)
    cols = dx.view(n, 1) + torch.arange(w, device=x.device).view(1, w)  # (n, w)
    idx = rows.view(n, 1, h, 1) * (w + 2 * padding) + cols.view(n, 1, 1, w)
    flat = xp.reshape(n, c, -1)
    return torch.gather(flat, 2, idx.expand(n, c, h, w).reshape(n, c, -1)).view(n, c, h, w)


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each image left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1).to(x.device), x.flip(-1), x)


def augment(
    x: torch.Tensor, kind: str, generator: torch.Generator | None = None, padding: int = 2
) -> torch.Tensor:
    """Apply the named augmentation ("none", "crop", "flip" or "crop+flip") to a batch."""
    if kind not in AUGMENTATIONS:
        raise ConfigError(f"bad augmentation {kind!r}: expected one of {', '.join(AUGMENTATIONS)}")
    if "crop" in kind:
        x = random_crop(x, padding, generator)
    if "flip" in kind:
        x = random_flip(x, generator)
    return x

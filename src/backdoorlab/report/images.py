"""Pictures for people: image grids (clean | triggered | amplified difference) as PNG, via Pillow."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from ..data.core import to_uint8
from ..utils import atomic_write_bytes


def amplified_difference(
    x: torch.Tensor, x2: torch.Tensor, gain: float | None = None
) -> torch.Tensor:
    """``|x2 - x|`` scaled so the largest change is white (or by ``gain``), for showing subtle triggers."""
    d = (x2 - x).abs()
    if gain is None:
        peak = float(d.max())
        gain = 1.0 / peak if peak > 0 else 1.0
    return (d * gain).clamp(0, 1)


def grid_image(
    rows: Sequence[torch.Tensor],
    row_labels: Sequence[str] | None = None,
    scale: int = 3,
    pad: int = 2,
    col_labels: Sequence[str] | None = None,
) -> Image.Image:
    """Tile rows of images (each ``(N, C, H, W)`` in [0, 1]) into one RGB picture with optional labels."""
    if not rows:
        raise ValueError("grid_image needs at least one row")
    n = max(len(r) for r in rows)
    h, w = rows[0].shape[-2:]
    ch, cw = h * scale, w * scale
    font = ImageFont.load_default()
    label_w = 0
    if row_labels:
        label_w = max(int(font.getlength(t)) for t in row_labels) + 8
    top = 14 if col_labels else 0
    W = label_w + n * (cw + pad) + pad
    H = top + len(rows) * (ch + pad) + pad
    canvas = Image.new("RGB", (W, H), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for r, batch in enumerate(rows):
        imgs = to_uint8(batch.detach().cpu().float())
        for i, a in enumerate(imgs):
            im = (
                Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
                .convert("RGB")
                .resize((cw, ch), Image.Resampling.NEAREST)
            )
            canvas.paste(im, (label_w + pad + i * (cw + pad), top + pad + r * (ch + pad)))
        if row_labels:
            draw.text(
                (4, top + pad + r * (ch + pad) + ch // 2 - 6),
                row_labels[r],
                fill=(0, 0, 0),
                font=font,
            )
    if col_labels:
        for i, t in enumerate(col_labels[:n]):
            draw.text(
                (label_w + pad + i * (cw + pad), 1), t[: max(1, cw // 6)], fill=(0, 0, 0), font=font
            )
    return canvas


def save_png(img: Image.Image, path: str | os.PathLike[str]) -> Path:
    """Save a Pillow image as PNG atomically."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    p = Path(path)
    atomic_write_bytes(p, buf.getvalue())
    return p


def save_trigger_grid(
    clean: torch.Tensor,
    triggered: torch.Tensor,
    path: str | os.PathLike[str],
    scale: int = 3,
    title: str | None = None,
) -> Path:
    """Write a PNG with rows clean | triggered | amplified difference for the same images."""
    labels = ["clean", title or "triggered", "|diff| amplified"]
    img = grid_image(
        [clean, triggered, amplified_difference(clean, triggered)], labels, scale=scale
    )
    return save_png(img, path)

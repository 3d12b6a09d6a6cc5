"""Render the trigger pictures of ``docs/triggers.md`` into ``docs/img/`` (Pillow only).

Every picture is a grid of blocks, one block per trigger (or trigger variant), each block three rows:
clean | triggered | amplified difference (``|x' - x|`` scaled so the largest change is white).
Grayscale samples come from Fashion-MNIST (``load_dataset("fashion-mnist")``), colour samples from
the synthetic colour set (``load_dataset("synthetic-signs")``) when it is available, else smooth
random colour images.

Run from the repository root::

    PYTHONPATH=src python docs/make_trigger_figures.py [--out docs/img]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw, ImageFont
from torch.nn import functional as F

from backdoorlab.errors import BackdoorLabError
from backdoorlab.triggers import SHAPES, TEXTURES, TRIGGERS, FilterTrigger

Variant = tuple[str, str, dict[str, Any]]  # label, registered name, options


def gray_samples(n: int) -> torch.Tensor:
    """``n`` Fashion-MNIST test images (one per class), or smooth random ones if it is missing."""
    try:
        from backdoorlab.data import load_dataset

        test = load_dataset("fashion-mnist").test
        pick = torch.cat(
            [torch.nonzero(test.y == k).flatten()[:1] for k in range(test.num_classes)]
        )
        return test.x[pick[:n]]
    except (BackdoorLabError, OSError) as e:
        print(f"fashion-mnist unavailable ({e}); using random gray images", file=sys.stderr)
        return smooth_random(n, 1, 28)


def color_samples(n: int) -> torch.Tensor:
    """``n`` synthetic-signs test images, or smooth random colour images if that set is missing."""
    try:
        from backdoorlab.data import load_dataset

        test = load_dataset("synthetic-signs", n_train=64, n_test=16).test
        if test.x.shape[1] == 3 and len(test) >= n:
            return test.x[:n]
    except (BackdoorLabError, OSError, TypeError) as e:
        print(
            f"synthetic-signs unavailable ({e}); using smooth random colour images", file=sys.stderr
        )
    return smooth_random(n, 3, 32)


def smooth_random(n: int, c: int, size: int) -> torch.Tensor:
    """Smooth random images: 4 x 4 random colours upsampled bicubically, with a soft disc."""
    g = torch.Generator().manual_seed(0)
    low = torch.rand(n, c, 4, 4, generator=g)
    x = F.interpolate(low, size=(size, size), mode="bicubic", align_corners=True)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    disc = ((xx**2 + yy**2) < 0.35).float()
    col = torch.rand(n, c, 1, 1, generator=g)
    return torch.lerp(x, col.expand_as(x), 0.7 * disc).clamp(0, 1)


def to_pil(x: torch.Tensor, scale: int) -> Image.Image:
    """One image ``(C, H, W)`` in [0, 1] as an RGB Pillow image, enlarged ``scale`` times."""
    x = x.detach().clamp(0, 1)
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    arr = (x * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous()
    img = Image.frombytes("RGB", (arr.shape[1], arr.shape[0]), bytes(arr.flatten().tolist()))
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST)


def block(label: str, rows: Sequence[torch.Tensor], scale: int, pad: int = 2) -> Image.Image:
    """A labelled block: ``rows`` of image batches, one image per column."""
    font = ImageFont.load_default()
    th = 14
    tiles = [[to_pil(img, scale) for img in r] for r in rows]
    tw = max(t.width for r in tiles for t in r)
    tht = max(t.height for r in tiles for t in r)
    ncol = max(len(r) for r in tiles)
    W = ncol * (tw + pad) + pad
    H = th + len(tiles) * (tht + pad) + pad
    out = Image.new("RGB", (W, H), (255, 255, 255))
    ImageDraw.Draw(out).text((pad, 1), label, fill=(0, 0, 0), font=font)
    for i, r in enumerate(tiles):
        for j, t in enumerate(r):
            out.paste(t, (pad + j * (tw + pad), th + pad + i * (tht + pad)))
    return out


def sheet(blocks: Sequence[Image.Image], columns: int, gap: int = 8) -> Image.Image:
    """Arrange blocks on a white sheet, ``columns`` per row."""
    bw = max(b.width for b in blocks)
    bh = max(b.height for b in blocks)
    nrow = -(-len(blocks) // columns)
    out = Image.new("RGB", (columns * (bw + gap) + gap, nrow * (bh + gap) + gap), (255, 255, 255))
    for k, b in enumerate(blocks):
        out.paste(b, (gap + (k % columns) * (bw + gap), gap + (k // columns) * (bh + gap)))
    return out


def amplified(x: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    d = (x2 - x).abs()
    peak = float(d.max())
    return (d / peak).clamp(0, 1) if peak > 0 else d


def render(
    variants: Sequence[Variant], samples: Sequence[torch.Tensor], scale: int, columns: int
) -> Image.Image:
    """One block per variant; each block shows every sample batch side by side (gray shown as RGB)."""
    blocks = []
    for label, name, opts in variants:
        trig = TRIGGERS.create(name, **opts)
        clean_parts, trig_parts, diff_parts = [], [], []
        for x in samples:
            x2 = trig(x, torch.Generator().manual_seed(0))
            clean_parts.append(x)
            trig_parts.append(x2)
            diff_parts.append(amplified(x, x2))
        size = max(int(x.shape[-1]) for x in samples)

        def row(parts: list[torch.Tensor], size: int = size) -> torch.Tensor:
            out = []
            for p in parts:
                p = p.expand(-1, 3, -1, -1) if p.shape[1] == 1 else p
                if p.shape[-1] != size:
                    p = F.pad(p, (0, size - p.shape[-1], 0, size - p.shape[-2]), value=1.0)
                out.append(p)
            return torch.cat(out)

        blocks.append(block(label, [row(clean_parts), row(trig_parts), row(diff_parts)], scale))
    return sheet(blocks, columns)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--out",
        default=str(Path(__file__).resolve().parent / "img"),
        help="output folder [docs/img]",
    )
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gray = gray_samples(3)
    color = color_samples(5)

    figures: dict[str, tuple[list[Variant], list[torch.Tensor], int, int]] = {}
    all_defaults = [(n, n, {}) for n in TRIGGERS.names()]
    figures["triggers.png"] = (all_defaults, [gray, color[:3]], 2, 4)
    filter_names = [n for n in TRIGGERS.names() if issubclass(TRIGGERS.get(n), FilterTrigger)]
    filters: list[Variant] = [(n, n, {}) for n in filter_names]
    filters += [("nashville strength=0.5", "nashville", {"strength": 0.5})]
    figures["filters.png"] = (filters, [color], 3, 2)
    figures["filters_gray.png"] = ([(n, n, o) for n, _, o in filters[:-1]], [gray], 3, 4)
    shapes: list[Variant] = [
        (
            f"shape-patch shape={s}",
            "shape-patch",
            {"shape": s, "size": 14, "position": "center", "color": "yellow"},
        )
        for s in SHAPES
    ]
    shapes += [
        (
            f"sticker-patch shape={s}",
            "sticker-patch",
            {"shape": s, "size": 14, "position": "center", "outline_width": 1.5},
        )
        for s in ("square", "circle", "star")
    ]
    shapes += [
        (
            "shape-patch position=random",
            "shape-patch",
            {"position": "random", "size": 8, "color": "red"},
        )
    ]
    shapes += [("image-patch (built-in flower)", "image-patch", {"size": 14, "position": "center"})]
    figures["shapes.png"] = (shapes, [color[:3]], 3, 4)
    logos: list[Variant] = [
        (
            f"logo texture={t}",
            "logo",
            {
                "texture": t,
                "shape": "star",
                "size": 14,
                "position": "center",
                "color1": "blue",
                "color2": "white",
                "period": 4,
            },
        )
        for t in TEXTURES
    ]
    logos += [
        ("logo (defaults)", "logo", {}),
        (
            "logo-image opacity=0.5",
            "logo-image",
            {"size": 16, "position": "center", "opacity": 0.5},
        ),
    ]
    figures["logos.png"] = (logos, [color[:3]], 3, 4)
    perturb: list[Variant] = [
        ("blend alpha=0.2 (noise)", "blend", {}),
        ("noise-linf eps=8/255", "noise-linf", {}),
        ("noise-l2 eps=2", "noise-l2", {}),
        ("sig sine Delta=20/255 f=6", "sig", {}),
        ("sig ramp Delta=40/255", "sig", {"signal": "ramp", "delta": 40 / 255}),
        ("lsb bits=1 (paper)", "lsb", {"bits": 1}),
        ("lsb bits=2 (default)", "lsb", {}),
        ("lsb bits=3", "lsb", {"bits": 3}),
        ("warp k=4 s=0.5 (paper)", "warp", {"s": 0.5}),
        ("warp k=4 s=1 (default)", "warp", {}),
        ("warp k=4 s=4", "warp", {"s": 4.0}),
    ]
    figures["perturb.png"] = (perturb, [gray[:2], color[:2]], 3, 3)
    for fname, (variants, samples, scale, columns) in figures.items():
        img = render(variants, samples, scale, columns)
        img.save(out / fname, optimize=True)
        print(f"wrote {out / fname} ({img.width}x{img.height}, {len(variants)} blocks)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

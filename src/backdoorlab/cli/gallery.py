"""``backdoorlab gallery``: a PNG of clean | triggered | amplified difference for some triggers."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..config import parse_kv
from ..errors import ConfigError


def cmd_gallery(args: argparse.Namespace) -> int:
    """Write a PNG of clean | triggered | amplified difference for some triggers on some data."""
    import torch

    from ..data import load_dataset
    from ..report.images import amplified_difference, grid_image, save_png
    from ..triggers import TRIGGERS

    names = args.trigger or []
    if not names or names == ["all"]:
        names = TRIGGERS.names()
    for n in names:
        TRIGGERS.get(n)
    opts = parse_kv(args.trigger_opt, "--trigger-opt")
    splits = load_dataset(args.data, args.data_root)
    test = splits.test
    pick = torch.cat([torch.nonzero(test.y == k).flatten()[:1] for k in range(test.num_classes)])[
        : args.n
    ]
    clean = test.x[pick]
    rows, labels = [clean], ["clean"]
    for n in names:
        trig = TRIGGERS.create(n, **opts) if len(names) == 1 else TRIGGERS.create(n)
        x2 = trig(clean, torch.Generator().manual_seed(args.seed)).clamp(0, 1)
        rows += [x2, amplified_difference(clean, x2)]
        labels += [n, f"{n} |diff|"]
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise ConfigError(f"--out {out}: expected a .png file name")
    save_png(grid_image(rows, labels, scale=args.scale), out)
    print(f"wrote {out} ({len(names)} trigger(s) on {len(clean)} {args.data} images)")
    return 0


def register(sub: Any) -> None:
    """Add ``gallery``."""
    sp = sub.add_parser(
        "gallery", help="PNG of clean | triggered | amplified difference for triggers"
    )
    sp.add_argument("--data", default="fashion-mnist")
    sp.add_argument("--data-root")
    sp.add_argument(
        "--trigger",
        action="append",
        help="trigger name (repeatable; 'all' or none for every trigger)",
    )
    sp.add_argument(
        "--trigger-opt",
        action="append",
        metavar="K=V",
        help="options (only with a single --trigger)",
    )
    sp.add_argument("--n", type=int, default=10, help="number of sample images [10]")
    sp.add_argument("--scale", type=int, default=3)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--out", default="gallery.png")
    sp.set_defaults(func=cmd_gallery)

"""Clean samples a defender was given: a ``.npz`` file, a class-per-folder image tree or a built-in
data set name, checked against the model they are for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import DataError
from .core import ImageData


def _read_folder(root: Path, shape: tuple[int, int, int] | None) -> ImageData:
    from .folder import IMAGE_EXTENSIONS, stack_images

    dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not dirs:
        raise DataError(f"{root}: no class subfolders (expected {root}/<class>/*.png)")
    numeric = all(d.name.isdigit() for d in dirs)
    files: list[Path] = []
    labels: list[int] = []
    for i, d in enumerate(dirs):
        imgs = sorted(f for f in d.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS)
        files += imgs
        labels += [int(d.name) if numeric else i] * len(imgs)
    if not files:
        raise DataError(f"{root}: no images in the class folders")
    size = shape[1] if shape and shape[1] == shape[2] else None
    x = stack_images(files, size=size, channels=shape[0] if shape else None)
    y = torch.tensor(labels, dtype=torch.long)
    return ImageData(x, y, name=root.name)


def load_samples(
    spec: str,
    input_shape: tuple[int, int, int] | None = None,
    per_class: int = 20,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Clean samples ``x`` float ``(N, C, H, W)`` in [0, 1] and labels (``None`` when not given)."""
    p = Path(spec)
    if p.suffix.lower() == ".npz" or p.is_file():
        if not p.exists():
            raise DataError(f"{p}: samples file not found")
        if p.suffix.lower() != ".npz":
            raise DataError(f"{p}: expected a .npz file, an image folder or a data set name")
        from .npz import read_npz

        c = read_npz(p)
        return c.x, c.y
    if p.is_dir():
        d = _read_folder(p, input_shape)
        return d.x, d.y
    from .registry import DATASETS, load_dataset

    if spec in DATASETS:
        test = load_dataset(spec).test
        sel = test.per_class(per_class, seed=seed)
        return sel.x, sel.y
    raise DataError(
        f"{spec}: not found: expected a .npz file, a class-per-folder image tree or a data set "
        f"name ({', '.join(DATASETS.names())})"
    )


def prepare_samples(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None,
    meta: dict[str, Any],
    source: str,
) -> ImageData:
    """Check samples against the model; fill missing labels with the model's predictions."""
    from ..models.loading import check_classifier
    from ..train.evaluate import predict

    if len(x) == 0:
        raise DataError(f"{source}: no images")
    shape = meta.get("input_shape")
    if shape is not None and tuple(x.shape[1:]) != tuple(shape):
        raise DataError(
            f"{source}: images of shape {tuple(x.shape[1:])} but the model expects {tuple(shape)} (C, H, W)"
        )
    k = check_classifier(model, x, meta.get("num_classes"))
    meta["num_classes"] = k
    meta["input_shape"] = tuple(int(s) for s in x.shape[1:])
    if y is None:
        y = predict(model, x)
        meta["labels"] = "predicted"
    else:
        meta["labels"] = "given"
        if y.numel() and int(y.max()) >= k:
            raise DataError(f"{source}: label {int(y.max())} but the model has only {k} classes")
    names = meta.get("classes")
    classes = list(names) if names and len(names) == k else [str(i) for i in range(k)]
    return ImageData(x, y.long(), classes=classes, name=Path(source).stem)

"""Images and labels from a NumPy ``.npz`` archive, read without unpickling.

Keys: ``x`` images (uint8 0..255, or float in [0, 1]) shaped ``(N, H, W)``, ``(N, H, W, C)`` or
``(N, C, H, W)`` with ``C`` in {1, 3}; ``y`` integer labels ``(N,)``; ``classes`` class names;
optionally ``x_test`` / ``y_test`` for a fixed test set. Keras-style ``x_train`` / ``y_train`` are
accepted for ``x`` / ``y``. Archives are opened with ``allow_pickle=False``: object arrays are an
error, never unpickled.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, DataError
from .core import ImageData, Splits
from .registry import DATASETS


@dataclass
class NpzContent:
    """What an ``.npz`` holds: images as float ``(N, C, H, W)`` in [0, 1], optional labels/names."""

    x: torch.Tensor
    y: torch.Tensor | None
    classes: list[str] | None
    x_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None


def _oneline(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0].rstrip(":") if lines else type(e).__name__


def infer_layout(shape: tuple[int, ...]) -> str:
    """The layout ("NHW", "NHWC" or "NCHW") of an image array shape; ``ValueError`` if none fits."""
    if len(shape) == 3:
        return "NHW"
    if len(shape) != 4:
        raise ValueError(f"expected 3 or 4 dimensions (N, H, W[, C]), got shape {shape}")
    first, last = shape[1] in (1, 3), shape[-1] in (1, 3)
    if first and not last:
        return "NCHW"
    if last and not first:
        return "NHWC"
    if first and last:  # e.g. (N, 3, 3, 3) or (N, 1, 1, 3): prefer square spatial dims, then NCHW
        return "NHWC" if shape[1] == shape[2] != shape[3] else "NCHW"
    raise ValueError(
        f"expected 1 or 3 channels on axis 1 (NCHW) or axis 3 (NHWC), got shape {shape}"
    )


def _images(a: np.ndarray, where: str) -> torch.Tensor:
    try:
        layout = infer_layout(tuple(a.shape))
    except ValueError as e:
        raise DataError(f"{where}: {e}") from None
    if a.dtype == np.uint8:
        t = torch.from_numpy(np.ascontiguousarray(a)).float().div_(255.0)
    elif a.dtype.kind == "f":
        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
        if t.numel():
            lo, hi = float(t.min()), float(t.max())
            if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0 or hi > 1:
                raise DataError(f"{where}: float images must lie in [0, 1], got [{lo:g}, {hi:g}]")
    else:
        raise DataError(f"{where}: expected uint8 (0..255) or float in [0, 1], got dtype {a.dtype}")
    if layout == "NHW":
        t = t.unsqueeze(1)
    elif layout == "NHWC":
        t = t.permute(0, 3, 1, 2)
    return t.contiguous()


def _labels(a: np.ndarray, n: int, where: str, num_classes: int | None) -> torch.Tensor:
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.dtype.kind not in "iu":
        raise DataError(f"{where}: expected integer labels, got dtype {a.dtype}")
    if a.ndim != 1:
        raise DataError(f"{where}: expected shape ({n},), got {a.shape}")
    if a.shape[0] != n:
        raise DataError(f"{where}: {a.shape[0]} labels for {n} images")
    if a.size:
        lo, hi = int(a.min()), int(a.max())
        if lo < 0:
            raise DataError(f"{where}: labels must be >= 0, got minimum {lo}")
        if num_classes is not None and hi >= num_classes:
            raise DataError(
                f"{where}: labels must lie in [0, {num_classes - 1}] ({num_classes} classes), "
                f"got maximum {hi}"
            )
    return torch.from_numpy(a.astype(np.int64))


def _classes(a: np.ndarray, where: str) -> list[str]:
    if a.ndim != 1 or a.dtype.kind not in "US":
        raise DataError(f"{where}: expected a 1-D array of strings, got {a.dtype} {a.shape}")
    if a.dtype.kind == "S":
        return [b.decode("utf-8", errors="replace") for b in a.tolist()]
    return [str(s) for s in a.tolist()]


def _get(npz: Any, key: str, path: Path) -> np.ndarray:
    try:
        return np.asarray(npz[key])
    except ValueError as e:
        if "pickle" in str(e).lower() or "object" in str(e).lower():
            raise DataError(
                f"{path}: field '{key}' is an object array; refusing to unpickle "
                "(save plain numeric/string arrays)"
            ) from None
        raise DataError(f"{path}: field '{key}' is corrupt ({_oneline(e)})") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as e:
        raise DataError(
            f"{path}: field '{key}' is corrupt ({type(e).__name__}: {_oneline(e)})"
        ) from None


def read_npz(path: str | os.PathLike[str]) -> NpzContent:
    """Read and validate an ``.npz``; ``y`` and ``classes`` are ``None`` when absent."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: file not found")
    if not zipfile.is_zipfile(p):
        raise DataError(f"{p}: not a .npz (zip) archive")
    try:
        npz = np.load(p, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{p}: cannot open as .npz ({_oneline(e)})") from None
    with npz:
        keys = set(npz.files)
        xk = "x" if "x" in keys else "x_train" if "x_train" in keys else None
        if xk is None:
            raise DataError(f"{p}: no 'x' array (keys: {', '.join(sorted(keys)) or 'none'})")
        yk = "y" if "y" in keys else "y_train" if "y_train" in keys else None
        classes = (
            _classes(_get(npz, "classes", p), f"{p}: field 'classes'")
            if "classes" in keys
            else None
        )
        k = len(classes) if classes is not None else None
        x = _images(_get(npz, xk, p), f"{p}: field '{xk}'")
        y = _labels(_get(npz, yk, p), len(x), f"{p}: field '{yk}'", k) if yk else None
        x_test = y_test = None
        if "x_test" in keys:
            x_test = _images(_get(npz, "x_test", p), f"{p}: field 'x_test'")
            if x_test.shape[1:] != x.shape[1:]:
                raise DataError(
                    f"{p}: field 'x_test': images of shape {tuple(x_test.shape[1:])}, "
                    f"expected {tuple(x.shape[1:])} like '{xk}'"
                )
            if "y_test" in keys:
                y_test = _labels(_get(npz, "y_test", p), len(x_test), f"{p}: field 'y_test'", k)
    return NpzContent(x=x, y=y, classes=classes, x_test=x_test, y_test=y_test)


@DATASETS.register(
    "npz", "images + labels from a .npz (keys x, y[, classes, x_test, y_test]); path as root"
)
def npz_dataset(
    root: str | os.PathLike[str] | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Splits:
    """A labelled ``.npz``: its ``x_test``/``y_test`` as test set, else a seeded ``test_fraction`` split."""
    if root is None:
        raise DataError(
            "npz: no file given; pass the .npz path as --data-root or as the data set name"
        )
    p = Path(root)
    c = read_npz(p)
    if c.y is None:
        raise DataError(f"{p}: no 'y' array; labels are needed to train")
    if c.x_test is not None and c.y_test is None:
        raise DataError(f"{p}: has 'x_test' but no 'y_test'")
    k = max(
        int(c.y.max()) + 1 if c.y.numel() else 0,
        int(c.y_test.max()) + 1 if c.y_test is not None and c.y_test.numel() else 0,
    )
    classes = c.classes or [str(i) for i in range(k)]
    data = ImageData(c.x, c.y, classes=classes, name=p.stem)
    if c.x_test is not None and c.y_test is not None:
        return Splits(train=data, test=ImageData(c.x_test, c.y_test, classes=classes, name=p.stem))
    if not 0 < test_fraction < 1:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}")
    train, test = data.split([1 - test_fraction, test_fraction], seed=seed)
    return Splits(train=train, test=test)

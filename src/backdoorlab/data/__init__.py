"""Data: the in-memory ``ImageData``, loaders for standard formats, and a synthetic colour set."""

from __future__ import annotations

import importlib

from .core import ImageData, Splits, from_uint8, to_uint8
from .idx import fashion_mnist_available, find_fashion_mnist, read_idx
from .registry import DATASETS, load_dataset

for _m in ("mnist", "cifar", "folder", "npz", "synthetic"):
    try:
        importlib.import_module(f"{__name__}.{_m}")
    except ModuleNotFoundError as _e:  # a loader module not written yet
        if _e.name != f"{__name__}.{_m}":
            raise

__all__ = [
    "DATASETS",
    "ImageData",
    "Splits",
    "fashion_mnist_available",
    "find_fashion_mnist",
    "from_uint8",
    "load_dataset",
    "read_idx",
    "to_uint8",
]

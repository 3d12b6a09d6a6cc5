"""Registered IDX data sets: Fashion-MNIST (Xiao et al. 2017) and MNIST (LeCun et al. 1998)."""

from __future__ import annotations

import os

from ..errors import DataError
from .core import Splits
from .idx import FASHION_MNIST_CLASSES, MNIST_CLASSES, find_fashion_mnist, load_mnist_like
from .registry import DATASETS


@DATASETS.register(
    "fashion-mnist",
    "Fashion-MNIST 28x28 grayscale, 10 classes (Debian dataset-fashion-mnist or --data-root)",
)
def fashion_mnist(root: str | os.PathLike[str] | None = None) -> Splits:
    """Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 60,000 train / 10,000 test images."""
    return load_mnist_like(find_fashion_mnist(root), FASHION_MNIST_CLASSES, "fashion-mnist")


@DATASETS.register("mnist", "MNIST 28x28 grayscale digits from IDX files (--data-root DIR)")
def mnist(root: str | os.PathLike[str] | None = None) -> Splits:
    """MNIST (LeCun et al. 1998) from the four IDX files (gzipped or raw) in ``root``."""
    if root is None:
        root = os.environ.get("BACKDOORLAB_MNIST")
    if root is None:
        raise DataError("mnist: no folder given; pass --data-root DIR holding the four IDX files")
    return load_mnist_like(root, MNIST_CLASSES, "mnist")

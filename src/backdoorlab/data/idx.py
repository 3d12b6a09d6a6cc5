"""IDX files (MNIST, Fashion-MNIST), gzipped or raw.

Format: LeCun et al., "The MNIST database" -- a big-endian header of magic ``0x00 0x00 <type> <ndim>``
followed by ``ndim`` uint32 sizes, then the data.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from .core import ImageData, Splits, from_uint8

_DTYPES: dict[int, Any] = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
MNIST_CLASSES = [str(i) for i in range(10)]
FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)
FASHION_MNIST_HINT = (
    "install Debian's package with `sudo apt-get install dataset-fashion-mnist` "
    "(files land in /usr/share/datasets/fashion-mnist) or pass --data-root DIR"
)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (``.gz`` or raw) into a numpy array; corrupt files raise ``DataError``."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: corrupt gzip data ({e})") from None
    if len(raw) < 4:
        raise DataError(f"{path}: too short for an IDX header ({len(raw)} bytes)")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise DataError(
            f"{path}: bad IDX magic {raw[:4].hex()} (expected 0000 08|09|0b|0c|0d|0e NN)"
        )
    ndim = raw[3]
    if ndim == 0 or len(raw) < 4 + 4 * ndim:
        raise DataError(
            f"{path}: IDX header declares {ndim} dimensions but the file is {len(raw)} bytes"
        )
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_DTYPES[raw[2]])
    need = int(np.prod(dims)) * dtype.itemsize
    have = len(raw) - 4 - 4 * ndim
    if have != need:
        kind = "truncated" if have < need else "has trailing bytes"
        raise DataError(
            f"{path}: {kind}: header says shape {dims} ({need} data bytes), found {have}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim).reshape(dims)


def _find(root: Path, stem: str) -> Path:
    for cand in (
        stem,
        stem + ".gz",
        stem.replace("-idx", ".idx"),
        stem.replace("-idx", ".idx") + ".gz",
    ):
        p = root / cand
        if p.exists():
            return p
    raise DataError(f"{root}: no {stem}[.gz] found")


def load_idx_pair(
    images: str | os.PathLike[str], labels: str | os.PathLike[str], classes: list[str], name: str
) -> ImageData:
    """Images + labels IDX files -> ``ImageData``, with count and label-range checks."""
    xi = read_idx(images)
    yi = read_idx(labels)
    if xi.ndim != 3:
        raise DataError(f"{images}: expected images of shape (N, H, W), got {xi.shape}")
    if yi.ndim != 1:
        raise DataError(f"{labels}: expected labels of shape (N,), got {yi.shape}")
    if xi.shape[0] != yi.shape[0]:
        raise DataError(
            f"{labels}: {yi.shape[0]} labels for {xi.shape[0]} images in {Path(images).name}"
        )
    y = torch.as_tensor(yi.astype(np.int64))
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= len(classes)):
        raise DataError(
            f"{labels}: labels must lie in [0, {len(classes) - 1}], got [{int(y.min())}, {int(y.max())}]"
        )
    if xi.dtype != np.uint8:
        raise DataError(f"{images}: expected uint8 pixels, got {xi.dtype}")
    return ImageData(from_uint8(xi, "NHW"), y, classes=list(classes), name=name)


def load_mnist_like(root: str | os.PathLike[str], classes: list[str], name: str) -> Splits:
    """Load the four standard IDX files of an MNIST-style folder."""
    r = Path(root)
    if not r.is_dir():
        raise DataError(f"{r}: not a directory")
    train = load_idx_pair(
        _find(r, "train-images-idx3-ubyte"), _find(r, "train-labels-idx1-ubyte"), classes, name
    )
    test = load_idx_pair(
        _find(r, "t10k-images-idx3-ubyte"), _find(r, "t10k-labels-idx1-ubyte"), classes, name
    )
    return Splits(train=train, test=test)


def find_fashion_mnist(root: str | os.PathLike[str] | None = None) -> Path:
    """The Fashion-MNIST folder: ``root`` if given, else ``$BACKDOORLAB_FASHION_MNIST``, else Debian's."""
    cands = [Path(root)] if root else []
    if not root and os.environ.get("BACKDOORLAB_FASHION_MNIST"):
        cands.append(Path(os.environ["BACKDOORLAB_FASHION_MNIST"]))
    if not root:
        cands += [Path(d) for d in FASHION_MNIST_DIRS]
    for c in cands:
        if c.is_dir() and any(c.glob("train-images*")):
            return c
    where = ", ".join(str(c) for c in cands)
    raise DataError(f"Fashion-MNIST not found in {where}: {FASHION_MNIST_HINT}")


def fashion_mnist_available(root: str | os.PathLike[str] | None = None) -> bool:
    """Whether Fashion-MNIST can be found without raising."""
    try:
        find_fashion_mnist(root)
    except DataError:
        return False
    return True

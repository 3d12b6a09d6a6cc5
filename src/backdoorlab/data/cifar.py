"""CIFAR-10 from its "python version" pickle batches, read with a restricted unpickler.

Data set: A. Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", tech. report,
University of Toronto, 2009.

The batches (``data_batch_1`` .. ``data_batch_5``, ``test_batch``, ``batches.meta``) are pickles.
A pickle can run arbitrary code when loaded, so they are never passed to ``pickle.load``: the
:class:`SafeUnpickler` here refuses every global except the few numpy needs to rebuild an array.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from .core import ImageData, Splits, from_uint8
from .registry import DATASETS

CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch"
CIFAR10_META_FILE = "batches.meta"
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_HINT = (
    "download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and pass "
    "--data-root pointing at it or at the folder it unpacks to"
)
_PIXELS = 3 * 32 * 32


def _numpy_globals() -> dict[tuple[str, str], Callable[..., Any]]:
    """The only globals a CIFAR batch may name: what numpy's array pickling refers to."""
    try:  # numpy >= 2
        from numpy._core import multiarray as ma
        from numpy._core import numeric as nu
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray as ma  # type: ignore[no-redef]
        from numpy.core import numeric as nu  # type: ignore[no-redef]
    allowed: dict[tuple[str, str], Callable[..., Any]] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    for mod in ("numpy.core", "numpy._core"):
        allowed[(f"{mod}.multiarray", "_reconstruct")] = ma._reconstruct
        # protocol-5 pickles of contiguous arrays (Python >= 3.14 default) use _frombuffer
        allowed[(f"{mod}.numeric", "_frombuffer")] = getattr(nu, "_frombuffer")  # noqa: B009
    return allowed


_ALLOWED_GLOBALS = _numpy_globals()


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that builds only plain containers, bytes, numbers and numpy arrays.

    ``find_class`` refuses every global except numpy's array reconstructors, ``numpy.ndarray``
    and ``numpy.dtype``, so a malicious pickle cannot call ``os.system`` and the like.
    """

    def find_class(self, module: str, name: str) -> Any:
        """Resolve one of the allowed numpy globals; anything else raises ``UnpicklingError``."""
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global {module}.{name}") from None


def safe_unpickle(data: bytes, source: str | os.PathLike[str]) -> Any:
    """Unpickle ``data`` (from file ``source``, named in errors) with :class:`SafeUnpickler`."""
    try:
        return SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as e:
        raise DataError(f"{source}: unsafe or corrupt pickle ({_oneline(e)})") from None
    except (
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        ImportError,
        OverflowError,
        MemoryError,
        RecursionError,
        UnicodeDecodeError,
    ) as e:
        raise DataError(f"{source}: corrupt pickle ({type(e).__name__}: {_oneline(e)})") from None


def _oneline(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0].rstrip(":") if lines else type(e).__name__


def _as_str_keys(obj: Any, source: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise DataError(f"{source}: expected a pickled dict, got {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def parse_batch(obj: Any, source: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Check one unpickled CIFAR batch dict; return uint8 ``(N, 3, 32, 32)`` images and labels."""
    d = _as_str_keys(obj, source)
    if "data" not in d:
        raise DataError(f"{source}: no 'data' entry (keys: {', '.join(sorted(d)) or 'none'})")
    label_key = next((k for k in ("labels", "fine_labels") if k in d), None)
    if label_key is None:
        raise DataError(f"{source}: no 'labels' entry (keys: {', '.join(sorted(d))})")
    data = d["data"]
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != _PIXELS
    ):
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(
            f"{source}: 'data' must be a uint8 array of shape (N, {_PIXELS}), got {got}"
        )
    try:
        labels = np.asarray(d[label_key])
    except (ValueError, TypeError) as e:
        raise DataError(f"{source}: '{label_key}' is not a list of integers ({e})") from None
    if labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iu"):
        raise DataError(
            f"{source}: '{label_key}' must be a list of integers, got {labels.dtype} {labels.shape}"
        )
    if labels.shape[0] != data.shape[0]:
        raise DataError(f"{source}: {labels.shape[0]} labels for {data.shape[0]} images")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"{source}: labels must lie in [0, {num_classes - 1}], "
            f"got [{labels.min()}, {labels.max()}]"
        )
    return data.reshape(-1, 3, 32, 32), labels


def parse_meta(obj: Any, source: str) -> list[str]:
    """Class names from an unpickled ``batches.meta`` dict (``label_names``)."""
    d = _as_str_keys(obj, source)
    names = d.get("label_names")
    if not isinstance(names, list) or not names:
        raise DataError(f"{source}: no 'label_names' list")
    out = []
    for n in names:
        if isinstance(n, bytes):
            out.append(n.decode("utf-8", errors="replace"))
        elif isinstance(n, str):
            out.append(n)
        else:
            raise DataError(f"{source}: 'label_names' must hold strings, got {type(n).__name__}")
    return out


class _Source:
    """Reads named batch files from a folder or, without extracting, from a tar(.gz) archive."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tar: tarfile.TarFile | None = None
        self.members: dict[str, tarfile.TarInfo] = {}
        self.folder: Path | None = None
        if root.is_dir():
            for cand in (root, root / CIFAR10_DIR):
                if (cand / CIFAR10_TEST_FILE).is_file() or (
                    cand / CIFAR10_TRAIN_FILES[0]
                ).is_file():
                    self.folder = cand
                    return
            if (root / CIFAR10_ARCHIVE).is_file():
                self._open_tar(root / CIFAR10_ARCHIVE)
                return
            raise DataError(
                f"{root}: no CIFAR-10 batches ({CIFAR10_TRAIN_FILES[0]}, {CIFAR10_TEST_FILE}) "
                f"here, in {CIFAR10_DIR}/ or in {CIFAR10_ARCHIVE}; {CIFAR10_HINT}"
            )
        if root.is_file():
            self._open_tar(root)
            return
        raise DataError(f"{root}: no such file or folder; {CIFAR10_HINT}")

    def _open_tar(self, path: Path) -> None:
        try:
            self.tar = tarfile.open(path, mode="r:*")  # noqa: SIM115 - closed by close()
            members = self.tar.getmembers()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise DataError(
                f"{path}: not a readable CIFAR-10 tar(.gz) archive ({_oneline(e)})"
            ) from None
        self.root = path
        for m in members:
            if m.isfile():
                self.members.setdefault(Path(m.name).name, m)

    def name(self, file: str) -> str:
        """How to refer to ``file`` in messages."""
        if self.folder is not None:
            return str(self.folder / file)
        return f"{self.root}:{file}"

    def has(self, file: str) -> bool:
        """Whether ``file`` exists in this source."""
        if self.folder is not None:
            return (self.folder / file).is_file()
        return file in self.members

    def read(self, file: str) -> bytes:
        """The bytes of ``file``; a missing or unreadable file raises ``DataError``."""
        if self.folder is not None:
            try:
                return (self.folder / file).read_bytes()
            except FileNotFoundError:
                raise DataError(f"{self.name(file)}: file not found; {CIFAR10_HINT}") from None
            except OSError as e:
                raise DataError(f"{self.name(file)}: cannot read ({e.strerror})") from None
        assert self.tar is not None
        if file not in self.members:
            raise DataError(f"{self.root}: archive has no member {file}; {CIFAR10_HINT}")
        try:
            f = self.tar.extractfile(self.members[file])
            if f is None:
                raise DataError(f"{self.name(file)}: not a regular file")
            return f.read()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise DataError(f"{self.name(file)}: corrupt archive member ({_oneline(e)})") from None

    def close(self) -> None:
        """Close the archive, if any."""
        if self.tar is not None:
            self.tar.close()


def _load_batches(src: _Source, files: tuple[str, ...], classes: list[str], name: str) -> ImageData:
    xs, ys = [], []
    for f in files:
        obj = safe_unpickle(src.read(f), src.name(f))
        x, y = parse_batch(obj, src.name(f), len(classes))
        xs.append(x)
        ys.append(y)
    x = np.concatenate(xs) if len(xs) > 1 else xs[0]
    y = np.concatenate(ys) if len(ys) > 1 else ys[0]
    return ImageData(from_uint8(x, "NCHW"), torch.from_numpy(y), classes=list(classes), name=name)


def read_cifar10(root: str | os.PathLike[str]) -> Splits:
    """CIFAR-10 from a batches folder, a folder holding ``cifar-10-batches-py``, or the tar.gz."""
    src = _Source(Path(root))
    try:
        classes = list(CIFAR10_CLASSES)
        if src.has(CIFAR10_META_FILE):
            where = src.name(CIFAR10_META_FILE)
            meta = parse_meta(safe_unpickle(src.read(CIFAR10_META_FILE), where), where)
            if len(meta) < len(classes):
                raise DataError(
                    f"{src.name(CIFAR10_META_FILE)}: {len(meta)} label_names, expected 10"
                )
            classes = meta
        train = _load_batches(src, CIFAR10_TRAIN_FILES, classes, "cifar10")
        test = _load_batches(src, (CIFAR10_TEST_FILE,), classes, "cifar10")
    finally:
        src.close()
    return Splits(train=train, test=test)


@DATASETS.register(
    "cifar10", "CIFAR-10 32x32 colour, 10 classes, from the python pickle batches (--data-root)"
)
def cifar10(root: str | os.PathLike[str] | None = None) -> Splits:
    """CIFAR-10 (Krizhevsky 2009): 50,000 train / 10,000 test, read without unsafe unpickling."""
    if root is None:
        root = os.environ.get("BACKDOORLAB_CIFAR10")
    if root is None:
        raise DataError(f"cifar10: no folder given; {CIFAR10_HINT}")
    return read_cifar10(root)

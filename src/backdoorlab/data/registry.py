"""The data-set registry and ``load_dataset``: names -> loaders returning ``Splits``."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError
from ..registry import Registry
from .core import Splits

Loader = Callable[..., Splits]
DATASETS: Registry[Loader] = Registry("datasets")


def load_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    val_fraction: float = 0.0,
    seed: int = 0,
    **options: Any,
) -> Splits:
    """Load a registered data set (or a ``.npz`` file / image folder given as a path) as ``Splits``.

    ``val_fraction`` carves a seeded validation split out of the training set.

    Example:
        >>> s = load_dataset("synthetic-signs", n_train=100, n_test=50)  # doctest: +SKIP
    """
    if name not in DATASETS:
        p = Path(name)
        if p.suffix == ".npz" and "npz" in DATASETS:
            root, name = p, "npz"
        elif p.is_dir() and "folder" in DATASETS:
            root, name = p, "folder"
        elif p.exists() or os.sep in name:
            raise DataError(f"{name}: not a .npz file or an image folder")
    factory: Any = DATASETS.get(name)
    if "seed" not in options and "seed" in inspect.signature(factory).parameters:
        options = {**options, "seed": seed}
    try:
        splits: Splits = factory(root=root, **options) if root is not None else factory(**options)
    except TypeError as e:
        raise ConfigError(f"data set {name!r}: bad options {sorted(options)} ({e})") from None
    if val_fraction:
        if not 0 < val_fraction < 1:
            raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
        train, val = splits.train.split([1 - val_fraction, val_fraction], seed=seed)
        splits = Splits(train=train, test=splits.test, val=val)
    return splits

"""A model's complete architecture configuration and its stable hash.

Models are registered factories (:mod:`.zoo`); ``create_model`` records what it was called with as
``model.arch_config``. :func:`model_config` turns that into the canonical form -- registered name,
``num_classes``, ``input_shape`` and *every* option the factory takes (defaults filled in) -- so
that two models of the same architecture have the same configuration and hash however they were
asked for, and :func:`model_from_config` rebuilds the architecture from it. The weights' seed is not
part of it: the configuration names the architecture, not a trained model.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from torch import nn

from ..config import config_hash, to_jsonable
from ..errors import ConfigError, ModelError
from .zoo import MODELS, create_model

# Arguments every factory takes; ``create_model`` derives them from ``input_shape``.
SHAPE_ARGS = ("num_classes", "in_channels", "input_size")


def model_options(arch: str) -> dict[str, Any]:
    """The options the factory of ``arch`` accepts besides the shape arguments, with their defaults."""
    factory = MODELS.get(arch)
    params = inspect.signature(factory).parameters
    return {
        n: p.default
        for n, p in params.items()
        if n not in SHAPE_ARGS
        and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        and p.default is not inspect.Parameter.empty
    }


def arch_config(
    arch: str,
    *,
    num_classes: int = 10,
    input_shape: tuple[int, int, int] | list[int] = (1, 28, 28),
    **options: Any,
) -> dict[str, Any]:
    """The canonical configuration of an architecture, without building it.

    Example:
        >>> arch_config("small_cnn", input_shape=(1, 28, 28))["options"]
        {'width': 32, 'bn': False}
    """
    name = MODELS.canonical(arch)
    known = model_options(name)
    bad = sorted(set(options) - set(known))
    if bad:
        raise ConfigError(
            f"model {name!r}: unknown option(s) {', '.join(bad)}; "
            f"accepted: {', '.join(sorted(known)) or '(none)'}"
        )
    shape = [int(v) for v in input_shape]
    if len(shape) != 3:
        raise ConfigError(f"model {name!r}: input_shape must be (C, H, W), got {input_shape}")
    return {
        "arch": name,
        "num_classes": int(num_classes),
        "input_shape": shape,
        "options": to_jsonable({**known, **options}),
    }


def model_config(model: nn.Module) -> dict[str, Any]:
    """The canonical configuration of a model built by ``create_model`` (from its ``arch_config``)."""
    cfg = getattr(model, "arch_config", None)
    if not cfg:
        raise ModelError(
            f"{type(model).__name__}: no arch_config; build it with backdoorlab.models.create_model"
        )
    return arch_config(
        cfg["arch"],
        num_classes=cfg["num_classes"],
        input_shape=cfg["input_shape"],
        **(cfg.get("kwargs") or cfg.get("options") or {}),
    )


def model_config_hash(model: nn.Module | Mapping[str, Any]) -> str:
    """Stable hash of a model's (or a configuration's) canonical architecture configuration."""
    cfg = model_config(model) if isinstance(model, nn.Module) else model
    return config_hash(cfg)


def model_from_config(cfg: Mapping[str, Any], seed: int | None = None) -> nn.Module:
    """Build the architecture a :func:`model_config` describes (fresh weights from ``seed``)."""
    try:
        arch, k, shape = cfg["arch"], cfg["num_classes"], cfg["input_shape"]
    except KeyError as e:
        raise ConfigError(f"model configuration lacks {e.args[0]!r}") from None
    c, h, w = (int(v) for v in shape)
    return create_model(
        arch, num_classes=int(k), input_shape=(c, h, w), seed=seed, **dict(cfg.get("options") or {})
    )


__all__ = [
    "SHAPE_ARGS",
    "arch_config",
    "model_config",
    "model_config_hash",
    "model_from_config",
    "model_options",
]

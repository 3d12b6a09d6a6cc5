"""Safe model files: safetensors weights + a JSON card, TorchScript export, and a loader that never
unpickles arbitrary objects.

A saved model is ``NAME.safetensors`` beside ``NAME.json`` (``{"arch", "num_classes", "input_shape",
"kwargs", "classes"}``). Loading rebuilds the architecture from our registry and reads tensors only.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelError
from ..utils import atomic_write_json
from .zoo import MODELS, create_model

CARD_VERSION = 1


def model_card(model: nn.Module, classes: list[str] | None = None) -> dict[str, Any]:
    """The JSON card of a model built by ``create_model`` (arch, classes, input shape, options)."""
    cfg = getattr(model, "arch_config", None)
    if not cfg:
        raise ModelError(
            "model has no arch_config: build it with backdoorlab.models.create_model, or export it with TorchScript"
        )
    card = {"format": "backdoorlab-model", "version": CARD_VERSION, **cfg}
    if classes is not None:
        card["classes"] = list(classes)
    return card


def save_model(
    model: nn.Module, path: str | os.PathLike[str], classes: list[str] | None = None
) -> Path:
    """Write ``path`` (``.safetensors``) and its ``.json`` card atomically; returns the weights path."""
    from safetensors.torch import save_file

    p = Path(path)
    if p.suffix != ".safetensors":
        p = p.with_suffix(".safetensors")
    card = model_card(model, classes)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp, metadata={"backdoorlab": json.dumps(card)})
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    atomic_write_json(p.with_suffix(".json"), card)
    return p


def _read_card(p: Path) -> dict[str, Any] | None:
    card_path = p.with_suffix(".json")
    if card_path.exists():
        try:
            card: dict[str, Any] = json.loads(card_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ModelError(f"{card_path}: not valid JSON ({e})") from None
        return card
    if p.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(p), framework="pt") as f:
                meta = f.metadata() or {}
        except Exception as e:  # safetensors raises its own error types
            raise ModelError(f"{p}: not a valid safetensors file ({e})") from None
        if "backdoorlab" in meta:
            loaded: dict[str, Any] = json.loads(meta["backdoorlab"])
            return loaded
    return None


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Tensors from a ``.safetensors`` file or a weights-only torch checkpoint (no arbitrary pickles)."""
    p = Path(path)
    if not p.exists():
        raise ModelError(f"{p}: file not found")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(p))
        except Exception as e:
            raise ModelError(f"{p}: not a valid safetensors file ({e})") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelError(
            f"{p}: refused: not a weights-only checkpoint (a pickled object would run code on load; "
            f"re-save with save_model/state_dict, or pass --trust-pickle if you trust its author) [{type(e).__name__}]"
        ) from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"{p}: expected a state dict of tensors, got {type(obj).__name__}")
    return obj


def load_model(
    path: str | os.PathLike[str],
    arch: str | None = None,
    *,
    num_classes: int | None = None,
    input_shape: tuple[int, int, int] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Rebuild a model from safetensors / weights-only weights and its JSON card (or ``arch=...``)."""
    p = Path(path)
    if not p.exists():
        raise ModelError(f"{p}: file not found")
    card = _read_card(p) or {}
    arch = arch or card.get("arch")
    if not arch:
        raise ModelError(
            f"{p}: no JSON card beside it; give the architecture (--arch NAME from `backdoorlab list models`)"
        )
    if arch not in MODELS:
        raise ModelError(f"{p}: unknown architecture {arch!r}; known: {', '.join(MODELS.names())}")
    nc = num_classes or card.get("num_classes")
    shape = input_shape or card.get("input_shape")
    if nc is None or shape is None:
        raise ModelError(
            f"{p}: number of classes and input shape unknown; give --classes and --input-shape C,H,W"
        )
    kw = {**card.get("kwargs", {}), **kwargs}
    model = create_model(arch, num_classes=int(nc), input_shape=tuple(int(s) for s in shape), **kw)  # type: ignore[arg-type]
    state = read_state_dict(p)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0:2]
        raise ModelError(
            f"{p}: weights do not fit architecture {arch!r} ({' '.join(first)[:300]})"
        ) from None
    model.eval()
    if card.get("classes"):
        model.classes = list(card["classes"])  # type: ignore[assignment]
    return model


def export_torchscript(
    model: nn.Module,
    path: str | os.PathLike[str],
    input_shape: tuple[int, int, int] | None = None,
    classes: list[str] | None = None,
) -> Path:
    """Trace ``model`` to TorchScript at ``path`` (atomically), with input shape and classes embedded."""
    cfg = getattr(model, "arch_config", {}) or {}
    shape = tuple(input_shape or cfg.get("input_shape") or ())
    if len(shape) != 3:
        raise ModelError("export_torchscript needs input_shape (C, H, W)")
    model = model.eval().cpu()
    example = torch.rand(2, *shape)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(model, example, check_trace=False)
    extra = {
        "backdoorlab.json": json.dumps(
            {
                "input_shape": list(shape),
                "num_classes": cfg.get("num_classes"),
                "arch": cfg.get("arch"),
                "classes": classes,
            }
        )
    }
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(traced, str(tmp), _extra_files=extra)
    os.replace(tmp, p)
    return p


def is_torchscript(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip holding ``constants.pkl`` / ``code/``)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def load_torchscript(path: str | os.PathLike[str]) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """Load a TorchScript model (no Python pickle of arbitrary classes) and its embedded card, if any."""
    p = Path(path)
    if not p.exists():
        raise ModelError(f"{p}: file not found")
    extra = {"backdoorlab.json": ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            m = torch.jit.load(str(p), map_location="cpu", _extra_files=extra)
    except Exception as e:
        raise ModelError(
            f"{p}: not a loadable TorchScript file ({str(e).strip().splitlines()[0][:200]})"
        ) from None
    card = json.loads(extra["backdoorlab.json"]) if extra["backdoorlab.json"] else {}
    m.eval()
    return m, card

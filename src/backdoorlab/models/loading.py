"""Load a model a defender was handed, safely, and check that it is an image classifier.

Formats: TorchScript (``.pt``), safetensors / weights-only checkpoints with an architecture name or a
JSON card, ONNX (through the optional ``onnx2torch``); a pickled full model only with
``trust_pickle=True`` (``--trust-pickle``), since unpickling runs the file's code.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, ModelError
from ..utils import model_device

ONNX_HINT = (
    "export the model to TorchScript instead, e.g. "
    "torch.jit.trace(model.eval(), example).save('model.pt'), and scan that"
)


def parse_shape(text: str | None) -> tuple[int, int, int] | None:
    """``"C,H,W"`` -> ``(C, H, W)``; a bad value gives a ``ConfigError``."""
    if text is None:
        return None
    try:
        parts = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise ConfigError(f"--input-shape {text!r}: expected C,H,W like 1,28,28") from None
    if len(parts) != 3 or min(parts) < 1:
        raise ConfigError(f"--input-shape {text!r}: expected three positive integers C,H,W")
    return (parts[0], parts[1], parts[2])


def _is_onnx(p: Path) -> bool:
    return p.suffix.lower() == ".onnx"


def _load_onnx(p: Path) -> nn.Module:
    try:
        import onnx2torch
    except ImportError:
        raise ModelError(
            f"{p}: ONNX model cannot be scanned: scanning needs gradients through the model and "
            f"the optional package onnx2torch is not installed; {ONNX_HINT}"
        ) from None
    try:
        model: nn.Module = onnx2torch.convert(str(p))
    except Exception as e:
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ModelError(
            f"{p}: onnx2torch cannot convert this ONNX model ({msg}); {ONNX_HINT}"
        ) from None
    return model.eval()


def _load_pickle(p: Path) -> nn.Module:
    """A full pickled model; only called with ``--trust-pickle`` (this runs the file's code)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ModelError(f"{p}: cannot load as a pickled model ({type(e).__name__}: {e})") from None
    if isinstance(obj, nn.Module):
        return obj.eval()
    raise ModelError(
        f"{p}: --trust-pickle loaded a {type(obj).__name__}, not a torch.nn.Module; "
        "for a state dict give --arch instead"
    )


def load_any_model(
    path: str | Path,
    arch: str | None = None,
    input_shape: tuple[int, int, int] | None = None,
    num_classes: int | None = None,
    trust_pickle: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a model to scan and what is known about it (``input_shape``, ``num_classes``, ``format``)."""
    from .io import is_torchscript, load_model, load_torchscript, read_state_dict

    p = Path(path)
    if p.suffix == ".json" and p.with_suffix(".safetensors").exists():
        p = p.with_suffix(".safetensors")  # the JSON card names the weights beside it
    if not p.exists():
        raise ModelError(f"{p}: model file not found")
    if p.is_dir():
        raise ModelError(f"{p}: is a folder; give the model file (.pt TorchScript, .safetensors)")
    meta: dict[str, Any] = {"path": str(p)}
    model: nn.Module
    if is_torchscript(p):
        model, card = load_torchscript(p)
        meta["format"] = "torchscript"
        shape = card.get("input_shape")
        meta["input_shape"] = input_shape or (tuple(int(s) for s in shape) if shape else None)
        meta["num_classes"] = num_classes or card.get("num_classes")
        meta["classes"] = card.get("classes")
        return model, meta
    if _is_onnx(p):
        meta.update(format="onnx", input_shape=input_shape, num_classes=num_classes)
        return _load_onnx(p), meta
    if p.suffix != ".safetensors":
        try:
            read_state_dict(p)  # weights-only: never runs code from the file
        except ModelError:
            if not trust_pickle:
                raise ModelError(
                    f"{p}: refused: not TorchScript, safetensors or a weights-only checkpoint; "
                    "a pickled model runs arbitrary code when loaded; export it to TorchScript, "
                    "or pass --trust-pickle only if you trust its author"
                ) from None
            model = _load_pickle(p)
            meta.update(format="pickle", input_shape=input_shape, num_classes=num_classes)
            return model, meta
    model = load_model(p, arch, num_classes=num_classes, input_shape=input_shape)
    cfg = getattr(model, "arch_config", {}) or {}
    meta.update(
        format="weights",
        arch=cfg.get("arch"),
        input_shape=tuple(cfg["input_shape"]) if cfg.get("input_shape") else input_shape,
        num_classes=cfg.get("num_classes") or num_classes,
        classes=getattr(model, "classes", None),
    )
    return model, meta


def check_classifier(model: nn.Module, x: torch.Tensor, num_classes: int | None = None) -> int:
    """Run ``model`` on a few images; return K if it outputs ``(N, K)`` logits, else a ``ModelError``."""
    dev = model_device(model)
    try:
        with torch.no_grad():
            out = model(x[:2].to(dev))
    except Exception as e:
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ModelError(
            f"model cannot run on images of shape {tuple(x.shape[1:])} ({msg})"
        ) from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != min(2, len(x)):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(
            f"model output must be (N, K) class logits, got {got} for {min(2, len(x))} images"
        )
    if out.shape[1] < 2:
        raise ModelError(f"model output must have K >= 2 classes, got {out.shape[1]}")
    if num_classes is not None and out.shape[1] != num_classes:
        raise ModelError(f"model outputs {out.shape[1]} classes, expected {num_classes}")
    return int(out.shape[1])

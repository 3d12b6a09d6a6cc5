"""The one evaluation path: clean accuracy, attack success rate, per-class accuracy."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..data.core import ImageData
from ..utils import eval_mode, model_device


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Predicted labels ``(N,)`` for images ``x`` in eval mode, batched, on the model's device."""
    return logits(model, x, batch_size).argmax(1)


@torch.no_grad()
def logits(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Model outputs ``(N, K)`` on CPU for images ``x``, batched, in eval mode."""
    dev = model_device(model)
    with eval_mode(model):
        outs = [
            model(x[i : i + batch_size].to(dev)).float().cpu() for i in range(0, len(x), batch_size)
        ]
    return torch.cat(outs) if outs else torch.empty(0)


def accuracy(model: nn.Module, data: ImageData, batch_size: int = 1024) -> float:
    """Fraction of ``data`` classified as labelled."""
    if len(data) == 0:
        return float("nan")
    return float((predict(model, data.x, batch_size) == data.y).float().mean())


def evaluate(
    model: nn.Module,
    test: ImageData,
    attack: Any | None = None,
    *,
    seed: int = 1,
    batch_size: int = 1024,
) -> dict[str, Any]:
    """Clean accuracy, per-class accuracy and, given an attack, its success rate on ``test``.

    ASR counts only test images whose true label differs from the backdoor's target (the attack's
    ``triggered_test``); it is the fraction of those, triggered, classified as the target.
    """
    pred = predict(model, test.x, batch_size)
    correct = pred == test.y
    per_class = {}
    for k, name in enumerate(test.classes):
        sel = test.y == k
        per_class[name] = float(correct[sel].float().mean()) if sel.any() else float("nan")
    out: dict[str, Any] = {
        "clean_acc": float(correct.float().mean()),
        "per_class": per_class,
        "n_test": len(test),
    }
    if attack is not None:
        trig = attack.triggered_test(test, seed=seed)
        out["asr"] = accuracy(model, trig, batch_size)
        out["n_asr"] = len(trig)
    return out

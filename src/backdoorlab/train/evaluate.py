"""The one evaluation path: clean accuracy, attack success rate, robust accuracy, per-class accuracy."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..data.core import ImageData
from ..metrics.detection import attack_success_rate, robust_accuracy
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
    """Clean accuracy, per-class accuracy and, given an attack, its success rate and robust accuracy.

    ASR and RA use the same triggered images (the attack's ``triggered_test``, seeded) and one forward
    pass: only eligible test images (``TargetMap.eligible``: all-to-one excludes the target class,
    all-to-all takes every image with target ``(y + 1) mod K``, source-specific only the source
    classes). ASR = fraction of them classified as the backdoor's target; RA = fraction classified
    as their true label.
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
        pred_trig = predict(model, trig.x, batch_size)
        out["asr"] = attack_success_rate(pred_trig, trig.y)
        out["n_asr"] = len(trig)
        target_map = getattr(attack, "target_map", None)
        if target_map is not None:
            y_true = test.y[target_map(test.num_classes).eligible(test.y)]
            out["ra"] = robust_accuracy(pred_trig, y_true)
    return out

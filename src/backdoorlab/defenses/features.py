"""Shared activation extraction for defenses: last-hidden-layer and last-conv features, batched.

* :func:`hidden_features` — the input of the model's final ``nn.Linear`` (the "last hidden layer" of
  Chen et al.'s Activation Clustering and the representation of Tran et al.'s Spectral Signatures),
  captured with a forward pre-hook, so any zoo model (and most classifiers) works unchanged.
* :func:`conv_features` — the last convolutional feature map (``model.features(x)``, every zoo model
  has it), flattened or as a map.
* :func:`final_linear` — the module whose input is the last hidden layer.

All functions run in eval mode under ``torch.no_grad`` in batches on the model's device and return
float32 CPU tensors; the model's train/eval state is restored afterwards.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..data.core import ImageData
from ..errors import ModelError
from ..utils import eval_mode, model_device


def final_linear(model: nn.Module) -> nn.Linear:
    """The last ``nn.Linear`` registered in ``model`` (the classifier head of every zoo model)."""
    last: nn.Linear | None = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            last = m
    if last is None:
        raise ModelError(
            f"{type(model).__name__}: no nn.Linear layer found; the last hidden layer is the input of "
            "the final Linear layer (use layer='features' for the last conv map instead)"
        )
    return last


@torch.no_grad()
def hidden_and_logits(
    model: nn.Module, x: torch.Tensor, batch_size: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Last-hidden-layer activations ``(N, D)`` (input of the final Linear) and logits ``(N, K)``."""
    head = final_linear(model)
    dev = model_device(model)
    grabbed: list[torch.Tensor] = []

    def hook(_m: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        grabbed.append(args[0].detach().flatten(1).float().cpu())

    handle = head.register_forward_pre_hook(hook)
    outs: list[torch.Tensor] = []
    try:
        with eval_mode(model):
            for i in range(0, len(x), batch_size):
                outs.append(model(x[i : i + batch_size].to(dev)).float().cpu())
    finally:
        handle.remove()
    if len(grabbed) != len(outs):
        raise ModelError(
            f"{type(model).__name__}: the final Linear layer ran {len(grabbed)} times for {len(outs)} "
            "batches; cannot tell which call is the classifier head"
        )
    if not outs:
        return torch.empty(0, head.in_features), torch.empty(0, head.out_features)
    return torch.cat(grabbed), torch.cat(outs)


def hidden_features(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Last-hidden-layer activations ``(N, D)``: the input of the model's final ``nn.Linear``."""
    return hidden_and_logits(model, x, batch_size)[0]


@torch.no_grad()
def conv_features(
    model: nn.Module, x: torch.Tensor, batch_size: int = 1024, flatten: bool = True
) -> torch.Tensor:
    """The last conv feature map ``model.features(x)`` ``(N, C', h, w)`` (or flattened ``(N, D)``)."""
    feats = getattr(model, "features", None)
    if not callable(feats):
        raise ModelError(
            f"{type(model).__name__}: no features(x) method (zoo models have one); "
            "use layer='hidden' (input of the final Linear layer) instead"
        )
    dev = model_device(model)
    outs: list[torch.Tensor] = []
    with eval_mode(model):
        for i in range(0, len(x), batch_size):
            f = feats(x[i : i + batch_size].to(dev)).float().cpu()
            outs.append(f.flatten(1) if flatten else f)
    return torch.cat(outs) if outs else torch.empty(0)


def activations(
    model: nn.Module, x: torch.Tensor, layer: str = "hidden", batch_size: int = 1024
) -> torch.Tensor:
    """Representations ``(N, D)`` of ``x``: ``layer`` is "hidden" (last hidden) or "features" (last conv)."""
    if layer == "hidden":
        return hidden_features(model, x, batch_size)
    if layer == "features":
        return conv_features(model, x, batch_size)
    from ..errors import ConfigError

    raise ConfigError(f"bad layer {layer!r}: expected 'hidden' or 'features'")


def reps_and_logits(
    model: nn.Module, x: torch.Tensor, layer: str = "hidden", batch_size: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Representations ``(N, D)`` at ``layer`` and logits ``(N, K)``; one pass for the last hidden layer."""
    if layer == "hidden":
        return hidden_and_logits(model, x, batch_size)
    return activations(model, x, layer, batch_size), hidden_and_logits(model, x, batch_size)[1]


def sanitizer_labels(
    model: nn.Module,
    train: ImageData,
    labels: str,
    batch_size: int = 1024,
    logits: torch.Tensor | None = None,
) -> torch.Tensor:
    """Labels that split the training set into groups for a sanitiser: "given" or "predicted".

    ``logits`` of ``train.x``, when the caller has them, spare "predicted" another forward pass.
    """
    if labels == "given":
        return train.y
    if labels == "predicted":
        if logits is None:
            logits = hidden_and_logits(model, train.x, batch_size)[1]
        return logits.argmax(1)
    from ..errors import ConfigError

    raise ConfigError(f"bad labels {labels!r}: expected 'given' or 'predicted'")


def loss_quantiles(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sample's cross-entropy loss ``(N,)`` and its quantile ``(N,)`` in [0, 1] among all ``N``.

    The quantile is a scale-free measure of how tightly the model fits a sample: backdoor samples
    are fitted faster and tighter than clean ones (Li et al., "Anti-Backdoor Learning", NeurIPS 2021).
    """
    loss = torch.nn.functional.cross_entropy(logits.float(), labels, reduction="none")
    q = torch.empty(len(loss), dtype=torch.float64)
    q[torch.argsort(loss, stable=True)] = torch.arange(len(loss), dtype=torch.float64) / max(
        1, len(loss) - 1
    )
    return loss, q


def class_groups(labels: torch.Tensor) -> list[torch.Tensor]:
    """Index tensors of the samples of each label present in ``labels`` (one stable sort)."""
    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels)
    return [g for g in torch.split(order, counts.tolist()) if len(g)]


def budget_keep_mask(scores: torch.Tensor, labels: torch.Tensor, fraction: float) -> torch.Tensor:
    """Keep-mask removing the ``ceil(fraction * n_c)`` highest-scoring samples of every class ``c``."""
    keep = torch.ones(len(scores), dtype=torch.bool)
    for idx in class_groups(labels):
        k = min(len(idx), math.ceil(fraction * len(idx) - 1e-9))
        if k > 0:
            keep[idx[torch.topk(scores[idx], k).indices]] = False
    return keep


# Budgets of eps="auto" (per class, as a fraction of the class): the papers' 10% where nothing marks a
# class, and the project's poison-rate convention where the loss rule marks one: an all-to-one attack
# on 10% of a 10-class set puts r K / (1 + r K) = 50% poison in its target class (docs/defenses.md).
EPS_PAPER = 0.1
EPS_HALF = 0.5


def auto_budget_keep(
    scores: torch.Tensor,
    labels: torch.Tensor,
    fired: dict[int, bool],
    eps: float | None,
    removal_factor: float,
) -> torch.Tensor:
    """Keep-mask dropping ``ceil(removal_factor * eps_c * n_c)`` top scores per class ``c``.

    ``eps_c`` is ``eps`` when given, else ``EPS_HALF`` in classes where the loss rule fired and
    ``EPS_PAPER`` in the others (``eps="auto"``).
    """
    keep = torch.ones(len(scores), dtype=torch.bool)
    for idx in class_groups(labels):
        c = int(labels[idx[0]])
        e = eps if eps is not None else (EPS_HALF if fired.get(c) else EPS_PAPER)
        k = min(len(idx), math.ceil(min(1.0, removal_factor * e) * len(idx) - 1e-9))
        if k > 0:
            keep[idx[torch.topk(scores[idx], k).indices]] = False
    return keep


def budget_verdict(
    name: str,
    eps: float | None,
    report: dict[str, dict[str, float]],
    n_removed: int,
    checked: bool = True,
) -> str:
    """One sentence: where the loss rule fired (if it was ``checked``), which budget was used, how much was removed."""
    fired = [c for c, r in report.items() if r.get("loss_rule")]
    if eps is not None:
        rule = (
            f"loss rule fired in {'class ' + ', '.join(fired) if fired else 'no class'}"
            if checked
            else "loss rule not used"
        )
        return f"{name}: fixed budget eps {eps:g} in every class ({rule}); removed {n_removed}"
    if not fired:
        return (
            f"{name}: no backdoor evidence found by the loss rule (no class has a tightly fitted "
            f"side); removed only the paper's budget eps {EPS_PAPER:g} of every class ({n_removed})"
        )
    gaps = ", ".join(f"{c} (gap {report[c]['loss_gap']:.2f})" for c in fired)
    return (
        f"{name}: loss rule fired in class {gaps}: budget eps {EPS_HALF:g} there, "
        f"eps {EPS_PAPER:g} elsewhere; removed {n_removed}"
    )

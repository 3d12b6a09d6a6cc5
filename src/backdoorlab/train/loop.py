"""The one training loop every attack and defense uses.

Data live in memory as tensors; each epoch draws a seeded permutation and slices batches, so the
loop costs no more than a bare hand-written torch loop (see ``benchmarks/bench_fit.py``).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..data.core import ImageData
from ..errors import ConfigError
from ..utils import make_generator, progress, resolve_device
from .augment import AUGMENTATIONS, augment
from .hooks import FunctionHooks, TrainHooks

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine", "step", "onecycle")


@dataclass
class TrainSpec:
    """How to train: epochs, batch size, optimiser and schedule, augmentation, seed, device.

    ``checkpoint`` names a file the loop writes after every epoch (atomically) and resumes from if it
    exists, so an interrupted run loses at most one epoch.
    """

    epochs: int = 5
    batch_size: int = 128
    lr: float = 3e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    scheduler: str = "onecycle"
    augment: str = "none"
    label_smoothing: float = 0.0
    seed: int = 0
    device: str = "auto"
    checkpoint: str | None = None
    progress: bool | None = None

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ConfigError(f"epochs must be >= 0, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"bad optimizer {self.optimizer!r}: expected one of {', '.join(OPTIMIZERS)}"
            )
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(
                f"bad scheduler {self.scheduler!r}: expected one of {', '.join(SCHEDULERS)}"
            )
        if self.augment not in AUGMENTATIONS:
            raise ConfigError(
                f"bad augment {self.augment!r}: expected one of {', '.join(AUGMENTATIONS)}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return asdict(self)


@dataclass
class History:
    """Per-epoch training loss and accuracy, and wall time."""

    loss: list[float] = field(default_factory=list)
    acc: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def make_optimizer(params: Any, spec: TrainSpec) -> torch.optim.Optimizer:
    """The optimiser named in ``spec``."""
    if spec.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=spec.lr,
            momentum=spec.momentum,
            weight_decay=spec.weight_decay,
            nesterov=spec.momentum > 0,
        )
    if spec.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
    return torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)


def make_scheduler(
    opt: torch.optim.Optimizer, spec: TrainSpec, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """A per-step learning-rate schedule, or ``None``."""
    total = max(1, spec.epochs * steps_per_epoch)
    if spec.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    if spec.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, total // 3), gamma=0.1)
    if spec.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=spec.lr, total_steps=total)
    return None


def fit(
    model: nn.Module,
    data: ImageData,
    spec: TrainSpec | None = None,
    *,
    history: History | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    batch_transform: Callable[
        [torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]
    ]
    | None = None,
    hooks: TrainHooks | None = None,
) -> nn.Module:
    """Train ``model`` on ``data`` in place with ``spec``; the same seed gives the same weights.

    ``hooks`` (``train.hooks.TrainHooks``) let a training-time attack or a defense add trainable parts,
    transform batches, add loss terms, set its own schedule and act after each epoch. The shortcuts
    ``batch_transform(x, y, generator)`` and ``loss_fn(out, y)`` (replaces cross-entropy) build such
    hooks from plain functions.

    Example:
        >>> from backdoorlab.models import create_model
        >>> d = ImageData(torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,)))
        >>> m = fit(create_model("lenet5", seed=0), d, TrainSpec(epochs=1, progress=False))
    """
    if hooks is not None and (batch_transform is not None or loss_fn is not None):
        raise ConfigError("fit: give either hooks or batch_transform/loss_fn, not both")
    hk = hooks or FunctionHooks(batch_transform, loss_fn)
    spec = hk.spec(spec or TrainSpec())
    device = resolve_device(spec.device)
    model.to(device)
    n = len(data)
    if n == 0:
        raise ConfigError(f"{data.name or 'data'}: cannot train on an empty data set")
    steps = math.ceil(n / spec.batch_size)
    opt = make_optimizer([*model.parameters(), *hk.parameters()], spec)
    sched = make_scheduler(opt, spec, steps)
    g = make_generator(spec.seed)
    torch.manual_seed(spec.seed)  # dropout and other in-model randomness
    start_epoch = 0
    ckpt = Path(spec.checkpoint) if spec.checkpoint else None
    if ckpt is not None and ckpt.exists():
        start_epoch = _load_checkpoint(ckpt, model, opt, sched, g, history)
    x_all, y_all = data.x, data.y
    on_device = device.type != "cpu"
    if on_device:
        x_all, y_all = x_all.to(device), y_all.to(device)
    hk.on_train_start(model, data, device)
    model.train()
    for epoch in progress(
        range(start_epoch, spec.epochs),
        desc="epochs",
        total=spec.epochs - start_epoch,
        enabled=spec.progress,
        leave=True,
    ):
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=g)
        if on_device:
            perm = perm.to(device)
        tot_loss = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        for i in progress(
            range(steps),
            desc=f"epoch {epoch + 1}/{spec.epochs}",
            total=steps,
            enabled=spec.progress,
        ):
            idx = perm[i * spec.batch_size : (i + 1) * spec.batch_size]
            xb, yb = x_all[idx], y_all[idx]
            if spec.augment != "none":
                xb = augment(xb, spec.augment, g)
            xb, yb = hk.batch(xb, yb, g)
            out = model(xb)
            base = F.cross_entropy(out, yb, label_smoothing=spec.label_smoothing)
            loss = hk.loss(model, xb, yb, out, base)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            tot_loss += loss.detach() * len(yb)
            correct += (out.detach().argmax(1) == yb).sum()
        if history is not None:
            history.loss.append(float(tot_loss) / n)
            history.acc.append(float(correct) / n)
            history.seconds.append(time.perf_counter() - t0)
        hk.on_epoch_end(epoch + 1, model)
        if ckpt is not None:
            _save_checkpoint(ckpt, epoch + 1, model, opt, sched, g, history)
    model.eval()
    return model


def _save_checkpoint(
    path: Path,
    epoch: int,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    sched: Any,
    g: torch.Generator,
    history: History | None,
) -> None:
    state = {
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict() if sched is not None else None,
        "generator": g.get_state(),
        "history": asdict(history) if history is not None else None,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _load_checkpoint(
    path: Path,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    sched: Any,
    g: torch.Generator,
    history: History | None,
) -> int:
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    if sched is not None and state.get("scheduler") is not None:
        sched.load_state_dict(state["scheduler"])
    g.set_state(state["generator"])
    if history is not None and state.get("history"):
        for k, v in state["history"].items():
            getattr(history, k).extend(v)
    return int(state["epoch"])

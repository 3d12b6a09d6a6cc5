"""Extension points of the one training loop.

A training-time attack (WaNet, input-aware generators) or a defense that trains (unlearning, ABL)
controls training through a ``TrainHooks`` object instead of a copy of the loop: extra trainable
parts (optimised together with the model), a per-batch transform, extra loss terms, an own schedule
and a callback after every epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from ..data.core import ImageData
    from .loop import TrainSpec


class TrainHooks:
    """Do-nothing hooks; subclasses override what they need."""

    def spec(self, spec: TrainSpec) -> TrainSpec:
        """The schedule to train with (default: the caller's)."""
        return spec

    def parameters(self) -> list[nn.Parameter]:
        """Extra trainable tensors (e.g. a trigger generator), optimised with the model."""
        return []

    def on_train_start(self, model: nn.Module, data: ImageData, device: torch.device) -> None:
        """Called once before the first epoch."""

    def batch(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Transform one training batch (after augmentation)."""
        return x, y

    def loss(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        out: torch.Tensor,
        base: torch.Tensor,
    ) -> torch.Tensor:
        """The loss to minimise; ``base`` is the loop's cross-entropy on ``(out, y)``."""
        return base

    def on_epoch_end(self, epoch: int, model: nn.Module) -> None:
        """Called after every epoch (``epoch`` counts from 1)."""


class FunctionHooks(TrainHooks):
    """Hooks from plain functions: ``batch_transform(x, y, g)`` and ``loss_fn(out, y)``."""

    def __init__(
        self,
        batch_transform: Callable[
            [torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]
        ]
        | None = None,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.batch_transform = batch_transform
        self.loss_fn = loss_fn

    def batch(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply ``batch_transform`` if given."""
        return self.batch_transform(x, y, generator) if self.batch_transform else (x, y)

    def loss(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        out: torch.Tensor,
        base: torch.Tensor,
    ) -> torch.Tensor:
        """``loss_fn(out, y)`` instead of cross-entropy if given."""
        return self.loss_fn(out, y) if self.loss_fn else base


def with_epochs(spec: TrainSpec, epochs: int) -> TrainSpec:
    """``spec`` with another number of epochs."""
    return replace(spec, epochs=epochs)

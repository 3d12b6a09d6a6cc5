"""The two attack kinds beyond data poisoning, as base classes the pipeline dispatches on.

Following the survey "Deep Learning Backdoors" (Li, Ma, Xue, Zhao), a backdoor gets in by

- ``poisoning`` (``PoisoningAttack``): change the training set; the standard ``fit`` trains on it;
- ``training`` (``TrainingAttack``): control training through the hooks of the one loop
  (``train.hooks.TrainHooks``): extra trainable parts such as a trigger generator, extra loss terms,
  on-the-fly poisoning of batches, an own schedule (WaNet, input-aware dynamic attacks);
- ``model`` (``ModelAttack``): modify a trained model (TrojanNN).

``pipeline.run_attack`` reads ``attack.kind``. Learned parts (``learned_parts()``, e.g. a generator)
are saved as safetensors beside the model in the run folder (``learned/NAME.safetensors``).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from ..data.core import ImageData
from ..train.hooks import TrainHooks
from .base import PoisonedData, PoisoningAttack


class TrainingAttack(PoisoningAttack):
    """An attack that controls training. Subclasses implement :meth:`hooks`.

    ``poison`` returns the training set unchanged by default (the hooks poison batches on the fly);
    the target mapping, rate and test-time ``trigger`` work as for poisoning attacks.
    """

    kind: ClassVar[str] = "training"

    def poison(self, train: ImageData, seed: int | torch.Generator = 0) -> PoisonedData:
        """The training set as given: nothing is poisoned ahead of training."""
        info = {"attack": self.name, "poisoned": 0, "rate": 0.0, "kind": self.kind}
        return PoisonedData(train, torch.zeros(0, dtype=torch.long), self, info)

    def hooks(self, train: ImageData, seed: int) -> TrainHooks:
        """The hooks that implant the backdoor while ``fit`` trains on ``train``."""
        raise NotImplementedError

    def learned_parts(self) -> dict[str, nn.Module]:
        """Trainable parts to save beside the model (name -> module); none by default."""
        return {}


class ModelAttack(PoisoningAttack):
    """An attack on a trained model. Subclasses implement :meth:`modify`.

    The pipeline trains a clean model on the unpoisoned training set, then calls ``modify`` with
    the attacker's data (by default the clean training set).
    """

    kind: ClassVar[str] = "model"

    def poison(self, train: ImageData, seed: int | torch.Generator = 0) -> PoisonedData:
        """The training set as given: a model-side attack does not touch training data."""
        info = {"attack": self.name, "poisoned": 0, "rate": 0.0, "kind": self.kind}
        return PoisonedData(train, torch.zeros(0, dtype=torch.long), self, info)

    def modify(self, model: nn.Module, data: ImageData, seed: int) -> nn.Module:
        """Return a backdoored copy of the trained ``model``."""
        raise NotImplementedError

    def learned_parts(self) -> dict[str, nn.Module]:
        """Learned parts to save beside the model (e.g. an optimised trigger); none by default."""
        return {}


ATTACK_KINDS = ("poisoning", "training", "model")

"""Neural Attention Distillation (NAD): erase a backdoor by distilling a fine-tuned teacher's attention.

Li, Lyu, Koren, Lyu, Li & Ma, "Neural Attention Distillation: Erasing Backdoor Triggers from Deep
Neural Networks", ICLR 2021. Sec. 3: the teacher is the backdoored network fine-tuned on the
defender's small clean set (5% of the training data in the paper); the student, initialised as the
backdoored network, is trained on the same clean set with

    L = CE(student(x), y) + beta * sum_l L_AT(F_T^l(x), F_S^l(x))                      (Eq. 2)

where the attention map of an activation ``F`` (C, H, W) is ``A(F) = sum_c |F_c|^p`` (Eq. 1,
``p = 2``), L2-normalised over positions, and ``L_AT`` is the distance between the normalised
teacher and student maps (the authors' code uses the mean squared difference, as here). The paper
sets ``beta = 5000`` (Sec. 4.1) and distils the outputs of the last residual groups.

Both stages use the project's one training loop (``train.fit``): the attention term is added through
``fit``'s ``batch_transform`` (teacher maps of the batch) and ``loss_fn`` hooks.

Clean data (issue 13): as in the paper, the defender needs about 5% of the training set (3,000
Fashion-MNIST images, ``backdoorlab defend --clean-fraction 0.3``): on the default attack run NAD
then costs 2.2 points of CA (ASR 0.993 -> 0.151). With ``defend``'s default 1,000 images it costs 4.0
points and leaves ASR 0.45 (docs/repairs.md, "Defaults on the default run").

Deviations: the distilled activations are the outputs of the last ``n_layers`` ``Conv2d`` modules
(for the small zoo CNNs: every conv layer) instead of residual-group outputs; epochs, optimiser and
learning rate are scaled down for small CPU models (paper: 10 teacher epochs, 20 student epochs, SGD
lr 0.1 decayed every 2 epochs, on WRN-16-1).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ...data.core import ImageData
from ...errors import ConfigError, ModelError
from ...train.evaluate import accuracy
from ...train.loop import TrainSpec, fit
from ..base import DEFENSES, FinetuneOptions, ModelRepair


def attention_map(fm: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """NAD / AT attention ``(N, H*W)``: channel mean of ``|F|^p``, L2-normalised per image (Eq. 1)."""
    a = fm.abs().pow(p).mean(dim=1).flatten(1)
    return F.normalize(a, p=2, dim=1, eps=1e-12)


def attention_loss(fs: torch.Tensor, ft: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Mean squared difference of student and teacher attention maps (the authors' ``AT`` loss)."""
    return (attention_map(fs, p) - attention_map(ft, p)).pow(2).mean()


def conv_layers(model: nn.Module, n_layers: int) -> list[str]:
    """Names of the last ``n_layers`` ``Conv2d`` modules in registration order."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not names:
        raise ModelError(f"{type(model).__name__}: NAD needs convolutional layers, found none")
    return names[-n_layers:]


class _Recorder:
    """Forward hooks that keep the latest outputs of named modules."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        self.out: dict[str, torch.Tensor] = {}
        mods = dict(model.named_modules())
        self.handles = [mods[n].register_forward_hook(self._hook(n)) for n in names]

    def _hook(self, name: str) -> Any:
        def h(_m: nn.Module, _a: Any, out: torch.Tensor) -> None:
            self.out[name] = out

        return h

    def remove(self) -> None:
        """Detach the hooks."""
        for h in self.handles:
            h.remove()


@DEFENSES.register(
    "nad",
    "Neural Attention Distillation (Li et al., ICLR 2021): fine-tuned teacher's attention guides the student",
    paper='Li, Lyu, Koren, Lyu, Li & Ma, "Neural Attention Distillation: Erasing Backdoor Triggers from Deep Neural Networks", ICLR 2021',
)
@dataclass(kw_only=True)
class NAD(FinetuneOptions, ModelRepair):
    """Fine-tune a teacher on clean data, then train the backdoored student with CE + beta * attention loss.

    Options: those below and the fine-tuning's ``lr``, ``batch_size``, ``optimizer``, ``seed``,
    ``device`` (:class:`FinetuneOptions`, defaults 1e-2, 32, adam, 0, auto).
    """

    beta: float = 5000.0
    p: float = 2.0
    n_layers: int = 3
    teacher_epochs: int = 5
    epochs: int = 5
    name = "nad"

    def __post_init__(self) -> None:
        if self.beta < 0:
            raise ConfigError(f"nad: beta must be >= 0, got {self.beta}")
        if self.n_layers < 1:
            raise ConfigError(f"nad: n_layers must be >= 1, got {self.n_layers}")
        self.info: dict[str, Any] = {}

    def _spec(self, epochs: int) -> TrainSpec:
        return self.finetune_spec(epochs)

    def teacher(self, model: nn.Module, clean: ImageData) -> nn.Module:
        """The backdoored model fine-tuned on the clean samples (a copy)."""
        return fit(copy.deepcopy(model), clean, self._spec(self.teacher_epochs)).eval()

    def repair(self, model: nn.Module, clean: ImageData) -> nn.Module:
        """Teacher fine-tuning, then attention distillation into a copy of ``model``."""
        if len(clean) == 0:
            raise ConfigError("nad: needs clean samples, got none")
        teacher = self.teacher(model, clean)
        for prm in teacher.parameters():
            prm.requires_grad_(False)
        student = copy.deepcopy(model)
        layers = conv_layers(student, self.n_layers)
        rec_s, rec_t = _Recorder(student, layers), _Recorder(teacher, layers)
        terms: list[float] = []

        def with_teacher(
            x: torch.Tensor, y: torch.Tensor, _g: torch.Generator
        ) -> tuple[torch.Tensor, torch.Tensor]:
            with torch.no_grad():
                teacher(x)
            return x, y

        def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            at = sum(
                (attention_loss(rec_s.out[n], rec_t.out[n], self.p) for n in layers),
                torch.zeros((), device=out.device),
            )
            terms.append(float(at.detach()))
            return F.cross_entropy(out, y) + self.beta * at

        try:
            fit(
                student,
                clean,
                self._spec(self.epochs),
                batch_transform=with_teacher,
                loss_fn=loss_fn,
            )
        finally:
            rec_s.remove()
            rec_t.remove()
        self.info = {
            "layers": layers,
            "teacher_clean_acc": accuracy(teacher, clean),
            "student_clean_acc": accuracy(student, clean),
            "attention_loss_first": terms[0] if terms else float("nan"),
            "attention_loss_last": terms[-1] if terms else float("nan"),
            "options": self.config(),
        }
        return student.eval()

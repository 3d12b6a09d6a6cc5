"""Adversarial Neuron Pruning (ANP): prune the neurons most sensitive to adversarial perturbation.

Wu & Wang, "Adversarial Neuron Pruning Purifies Backdoored Deep Models", NeurIPS 2021. Sec. 3.3
(Eq. 4) and Algorithm 1: every neuron ``k`` gets a mask ``m_k`` in [0, 1] and multiplicative
perturbations ``delta_k``, ``xi_k`` in [-eps, eps] of its weight and bias
(``(m_k + delta_k) * w_k``, ``(1 + xi_k) * b_k``). On the defender's clean samples the masks minimise

    alpha * L_nat(m) + (1 - alpha) * max_{delta, xi} L(m, delta, xi)

with one signed-gradient ascent step of size ``eps`` from a uniform random start for the inner
maximisation and SGD (lr 0.2, momentum 0.9) on the masks, clipped to [0, 1] after every step. Then
neurons whose mask is below a threshold (0.2 in the paper), or the lowest fraction, are pruned by
zeroing their weight (as in the authors' code; the bias stays). Paper settings: eps = 0.4,
alpha = 0.2, 2000 iterations of batch 128 on 1% of the CIFAR-10 training data.

As in the authors' code, the neurons are the channels of every BatchNorm layer (its affine weight
and bias). The mask optimisation uses the project's one training loop (``train.fit``) on a small
module whose only parameters are the masks (the inner ascent step runs in its forward).

Deviations: models without BatchNorm (``badnets_cnn``, ``lenet5``) get the masks and perturbations on
the output channels of every ``Conv2d`` (weight and bias) instead; BN layers keep their running
statistics (eval mode) during mask optimisation; the number of iterations defaults to 500 (CPU) and
is rounded up to whole passes over the clean samples; perturbations are clipped to [-eps, eps].
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ...data.core import ImageData
from ...errors import ConfigError, ModelError
from ...train.evaluate import accuracy
from ...train.loop import TrainSpec, fit
from ...utils import make_generator, model_device, resolve_device
from ..base import DEFENSES, ModelRepair, RepairOptions


def neuron_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers whose output channels ANP masks: every BatchNorm2d, or every Conv2d if there is none."""
    bns: list[tuple[str, nn.Module]] = [
        (n, m) for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d) and m.affine
    ]
    if bns:
        return bns
    convs: list[tuple[str, nn.Module]] = [
        (n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)
    ]
    if not convs:
        raise ModelError(
            f"{type(model).__name__}: ANP needs BatchNorm2d or Conv2d layers, found none"
        )
    return convs


class _MaskedNet(nn.Module):
    """Masks (the only parameters) over a frozen network, with ANP's perturbed and natural passes."""

    net: nn.Module

    def __init__(self, net: nn.Module, eps: float, steps: int) -> None:
        super().__init__()
        object.__setattr__(self, "net", net)  # frozen, deliberately not a submodule
        self.eps, self.steps = eps, steps
        self.layers = neuron_layers(net)
        dev = model_device(net)
        chans = [_channels(m) for _, m in self.layers]
        self.masks = nn.ParameterList([nn.Parameter(torch.ones(c, device=dev)) for c in chans])
        self.delta = [torch.zeros(c, device=dev) for c in chans]
        self.xi = [torch.zeros(c, device=dev) for c in chans]
        self.perturbed = False
        self.y: torch.Tensor | None = None
        self.handles = [
            m.register_forward_hook(self._hook(i)) for i, (_, m) in enumerate(self.layers)
        ]

    def _hook(self, i: int) -> Any:
        def h(m: nn.Module, _a: Any, out: torch.Tensor) -> torch.Tensor:
            b = getattr(m, "bias", None)
            shape = (1, -1) + (1,) * (out.dim() - 2)
            cw = self.masks[i] + self.delta[i] if self.perturbed else self.masks[i]
            if not isinstance(b, torch.Tensor):
                return out * cw.view(shape)
            bv = b.view(shape)
            cb = (1 + self.xi[i]).view(shape) if self.perturbed else 1.0
            return (out - bv) * cw.view(shape) + bv * cb

        return h

    def new_noise(self, g: torch.Generator) -> None:
        """Uniform random start in [-eps, eps] for the perturbations (Algorithm 1)."""
        for lst in (self.delta, self.xi):
            for j, t in enumerate(lst):
                r = torch.rand(t.shape, generator=g) * 2 * self.eps - self.eps
                lst[j] = r.to(t.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Natural and perturbed logits stacked ``(2N, K)`` after the inner maximisation step."""
        with torch.no_grad():
            for m in self.masks:
                m.clamp_(0.0, 1.0)  # the projection that follows each mask step
        if self.eps > 0 and self.y is not None:
            self.perturbed = True
            for _ in range(self.steps):
                noise = [t.requires_grad_(True) for t in self.delta + self.xi]
                loss = F.cross_entropy(self.net(x), self.y)
                grads = torch.autograd.grad(loss, noise)
                k = len(self.delta)
                with torch.no_grad():
                    step = self.eps / self.steps
                    self.delta = [
                        (d + step * gd.sign()).clamp(-self.eps, self.eps)
                        for d, gd in zip(self.delta, grads[:k], strict=True)
                    ]
                    self.xi = [
                        (d + step * gd.sign()).clamp(-self.eps, self.eps)
                        for d, gd in zip(self.xi, grads[k:], strict=True)
                    ]
            out_rob = self.net(x)
            self.perturbed = False
        else:
            out_rob = None
        out_nat = self.net(x)
        return torch.cat([out_nat, out_rob if out_rob is not None else out_nat])

    def remove(self) -> None:
        """Detach the hooks from the network."""
        for h in self.handles:
            h.remove()


def _channels(m: nn.Module) -> int:
    if isinstance(m, nn.BatchNorm2d):
        return int(m.num_features)
    if isinstance(m, nn.Conv2d):
        return int(m.out_channels)
    raise ModelError(f"ANP: cannot mask {type(m).__name__}")


@DEFENSES.register(
    "anp",
    "Adversarial Neuron Pruning (Wu & Wang, NeurIPS 2021): prune neurons sensitive to adversarial perturbation",
    paper='Wu & Wang, "Adversarial Neuron Pruning Purifies Backdoored Deep Models", NeurIPS 2021',
)
@dataclass(kw_only=True)
class ANP(RepairOptions, ModelRepair):
    """Optimise neuron masks under adversarial neuron perturbation, then prune low-mask neurons.

    Options: those below and ``batch_size`` (128 here), ``seed``, ``device`` (:class:`RepairOptions`).
    """

    eps: float = 0.4
    alpha: float = 0.2
    mask_lr: float = 0.2
    iterations: int = 500
    batch_size: int = 128
    steps: int = 1
    threshold: float = 0.2
    prune_fraction: float | None = None
    name = "anp"

    def __post_init__(self) -> None:
        if self.eps < 0:
            raise ConfigError(f"anp: eps must be >= 0, got {self.eps}")
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"anp: alpha must be in [0, 1], got {self.alpha}")
        if self.prune_fraction is not None and not 0 <= self.prune_fraction < 1:
            raise ConfigError(f"anp: prune_fraction must be in [0, 1), got {self.prune_fraction}")
        if self.iterations < 1 or self.steps < 1:
            raise ConfigError(
                f"anp: iterations and steps must be >= 1, got {self.iterations}, {self.steps}"
            )
        self.info: dict[str, Any] = {}
        self.verdict: str | None = None

    def masks(self, model: nn.Module, clean: ImageData) -> list[tuple[str, torch.Tensor]]:
        """Optimised masks ``(layer name, (C,))`` of a copy of ``model`` (Algorithm 1)."""
        if len(clean) == 0:
            raise ConfigError("anp: needs clean samples, got none")
        net = copy.deepcopy(model).to(resolve_device(self.device)).eval()
        for prm in net.parameters():
            prm.requires_grad_(False)
        steps_per_epoch = math.ceil(len(clean) / self.batch_size)
        spec = TrainSpec(
            epochs=math.ceil(self.iterations / steps_per_epoch),
            batch_size=self.batch_size,
            lr=self.mask_lr,
            optimizer="sgd",
            momentum=0.9,
            scheduler="none",
            seed=self.seed,
            device=self.device,
            progress=False,
        )
        wrapper = _MaskedNet(net, self.eps, self.steps)
        noise_g = make_generator(self.seed + 1)

        def remember(
            x: torch.Tensor, y: torch.Tensor, _g: torch.Generator
        ) -> tuple[torch.Tensor, torch.Tensor]:
            wrapper.y = y
            wrapper.new_noise(noise_g)
            return x, torch.cat([y, y])

        def loss_fn(out: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
            n = len(y2) // 2
            nat = F.cross_entropy(out[:n], y2[:n])
            rob = F.cross_entropy(out[n:], y2[n:])
            return self.alpha * nat + (1 - self.alpha) * rob

        try:
            fit(wrapper, clean, spec, batch_transform=remember, loss_fn=loss_fn)
        finally:
            wrapper.remove()
        return [
            (n, m.detach().clamp(0, 1).cpu())
            for (n, _), m in zip(wrapper.layers, wrapper.masks, strict=True)
        ]

    def repair(self, model: nn.Module, clean: ImageData) -> nn.Module:
        """Optimise masks on ``clean``, prune the low-mask neurons of a copy of ``model``."""
        masks = self.masks(model, clean)
        allm = torch.cat([m for _, m in masks])
        if self.prune_fraction is not None:
            k = int(self.prune_fraction * len(allm))
            thr = float(torch.sort(allm).values[k - 1]) if k > 0 else -1.0
            prune = [m <= thr for _, m in masks]
        else:
            prune = [m < self.threshold for _, m in masks]
        out = copy.deepcopy(model).eval()
        mods = dict(out.named_modules())
        with torch.no_grad():
            for (n, _), p in zip(masks, prune, strict=True):
                w = mods[n].weight
                w[p.to(w.device)] = 0.0  # zero the neuron's weight (whole out-channel for a conv)
        n_pruned = int(sum(int(p.sum()) for p in prune))
        rule = (
            f"the lowest {self.prune_fraction:g} of masks"
            if self.prune_fraction is not None
            else f"mask < {self.threshold:g}"
        )
        acc0, acc1 = accuracy(model, clean), accuracy(out, clean)
        self.verdict = (
            f"anp: pruned {n_pruned} of {len(allm)} neurons ({rule}); defender CA "
            f"{acc0:.3f} -> {acc1:.3f}"
            if n_pruned
            else f"anp: no neuron found by its rule ({rule}): nothing pruned, the model is unchanged"
        )
        self.info = {
            "layers": [n for n, _ in masks],
            "neurons": len(allm),
            "pruned": n_pruned,
            "pruned_fraction": n_pruned / max(1, len(allm)),
            "pruned_per_layer": {n: int(p.sum()) for (n, _), p in zip(masks, prune, strict=True)},
            "mask_mean": float(allm.mean()),
            "clean_acc_before": acc0,
            "clean_acc_after": acc1,
            "options": self.config(),
        }
        return out

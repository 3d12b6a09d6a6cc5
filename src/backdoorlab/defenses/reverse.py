"""Batched trigger reverse engineering: the optimisation core shared by Neural Cleanse and TABOR.

Wang, Yao, Shan, Li, Viswanath, Zheng & Zhao, "Neural Cleanse: Identifying and Mitigating Backdoor
Attacks in Neural Networks", IEEE S&P 2019, Sec. IV-C, Eq. (2)-(3): for a candidate target label
``t`` find a mask ``m`` ``(1, H, W)`` and a pattern ``p`` ``(C, H, W)``, both in [0, 1], such that

    x' = (1 - m) * x + m * p,   min  CE(f(x'), t) + lambda * |m|_1

over clean images ``x``. As in the authors' code (``visualizer.py``): ``m`` and ``p`` are
tanh-parameterised (``tanh(w) / (2 - eps) + 0.5``) from a uniform random start; Adam with learning rate
0.1 and betas (0.5, 0.9); lambda starts at ``init_cost = 1e-3`` and is adapted once per epoch: after
``patience`` (5) consecutive epochs with attack success >= 0.99 it is multiplied by 1.5, after
``patience`` epochs below it is divided by 1.5 ** 1.5; the best mask is the smallest-norm one with
attack success >= 0.99; a class stops early once lambda has moved both up and down and the best norm
has not improved for ``early_stop_patience`` (25) epochs.

All ``K`` candidate targets are optimised at once: the parameters are ``(K, 1, H, W)`` and
``(K, C, H, W)`` tensors, each step stamps one batch of clean images with every active class's
trigger (a ``(k * B, C, H, W)`` batch), and every class keeps its own lambda, counters and early stop.
The per-class losses are summed, so each class's gradient (and, Adam being element-wise, its
update) is the one it would get alone: ``reverse_triggers_sequential`` (one class per call) gives the
same triggers up to floating-point rounding.

Deviations: an epoch is one pass over the given clean samples (``ceil(N / batch_size)`` steps, with a
seeded permutation shared by all classes) instead of the authors' fixed 1000-sample mini-batch count;
``max_epochs`` caps the run (the authors' cap is 1000 epochs, too slow on a CPU).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..data.core import ImageData
from ..errors import ConfigError
from ..models.loading import check_classifier
from ..utils import make_generator, model_device

EPS = 1e-7

# extra_loss(mask (k,1,H,W), pattern (k,C,H,W), x (B,C,H,W), y (B,), targets (k,), model) -> (k,)
ExtraLoss = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, nn.Module], torch.Tensor
]


@dataclass
class ReverseSpec:
    """Hyper-parameters of the reverse-engineering optimisation (defaults: the NC authors' code)."""

    max_epochs: int = 40
    batch_size: int = 32
    lr: float = 0.1
    betas: tuple[float, float] = (0.5, 0.9)
    init_cost: float = 1e-3
    cost_multiplier: float = 1.5
    patience: int = 5
    attack_succ_threshold: float = 0.99
    early_stop: bool = True
    early_stop_threshold: float = 1.0
    early_stop_patience: int = 25
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.max_epochs < 1:
            raise ConfigError(f"max_epochs must be >= 1, got {self.max_epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.init_cost < 0:
            raise ConfigError(f"init_cost must be >= 0, got {self.init_cost}")
        if not self.cost_multiplier > 1:
            raise ConfigError(f"cost_multiplier must be > 1, got {self.cost_multiplier}")
        if not 0 < self.attack_succ_threshold <= 1:
            raise ConfigError(
                f"attack_succ_threshold must be in (0, 1], got {self.attack_succ_threshold}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d


@dataclass
class ReverseResult:
    """Reversed triggers of the classes in ``targets`` and how the optimisation went."""

    targets: list[int]
    masks: torch.Tensor  # (k, 1, H, W)
    patterns: torch.Tensor  # (k, C, H, W)
    norms: torch.Tensor  # (k,) L1 norm of each mask
    success: torch.Tensor  # (k,) attack success of each trigger on all given clean images
    reached: torch.Tensor  # (k,) bool: a trigger with success >= threshold was found
    epochs: torch.Tensor  # (k,) epochs run before the early stop
    cost: torch.Tensor  # (k,) final lambda
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def stack(parts: Sequence[ReverseResult]) -> ReverseResult:
        """Concatenate per-call results (e.g. from the sequential form)."""
        return ReverseResult(
            targets=[t for p in parts for t in p.targets],
            masks=torch.cat([p.masks for p in parts]),
            patterns=torch.cat([p.patterns for p in parts]),
            norms=torch.cat([p.norms for p in parts]),
            success=torch.cat([p.success for p in parts]),
            reached=torch.cat([p.reached for p in parts]),
            epochs=torch.cat([p.epochs for p in parts]),
            cost=torch.cat([p.cost for p in parts]),
            seconds=sum(p.seconds for p in parts),
        )


def to_unit(w: torch.Tensor) -> torch.Tensor:
    """tanh parameterisation of the NC code: real ``w`` -> value in (0, 1)."""
    return torch.tanh(w) / (2 - EPS) + 0.5


def from_unit(v: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_unit` for values in [0, 1]."""
    return torch.atanh(((v - 0.5) * (2 - EPS)).clamp(-1 + 1e-6, 1 - 1e-6))


def stamp(x: torch.Tensor, mask: torch.Tensor, pattern: torch.Tensor) -> torch.Tensor:
    """Stamp each of ``k`` triggers on every image: ``(B,C,H,W)`` -> ``(k*B, C, H, W)``, class-major."""
    k, b = mask.shape[0], x.shape[0]
    out = (1 - mask).unsqueeze(1) * x.unsqueeze(0) + (mask * pattern).unsqueeze(1)
    return out.reshape(k * b, *x.shape[1:])


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no parameter gradients inside the block; both restored afterwards."""
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    was_training = model.training
    model.eval()
    for p in params:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, f in zip(params, flags, strict=True):
            p.requires_grad_(f)
        model.train(was_training)


def _init_params(
    targets: Sequence[int], shape: tuple[int, int, int], seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform random initial mask and pattern per class, each from its own seeded generator."""
    c, h, w = shape
    ms, ps = [], []
    for t in targets:  # K small tensors: once per scan, not a hot path
        g = torch.Generator().manual_seed(int(seed) * 100_003 + int(t))
        ms.append(torch.rand(1, h, w, generator=g))
        ps.append(torch.rand(c, h, w, generator=g))
    return torch.stack(ms), torch.stack(ps)


@torch.no_grad()
def attack_success(
    model: nn.Module,
    x: torch.Tensor,
    masks: torch.Tensor,
    patterns: torch.Tensor,
    targets: Sequence[int],
    chunk: int = 4096,
) -> torch.Tensor:
    """Fraction of images ``x`` sent to each class's target by its trigger, ``(k,)``."""
    dev = model_device(model)
    k, n = masks.shape[0], x.shape[0]
    tg = torch.as_tensor(list(targets), dtype=torch.long)
    hits = torch.zeros(k)
    per = max(1, chunk // max(n, 1))
    for i in range(0, k, per):
        m, p = masks[i : i + per].to(dev), patterns[i : i + per].to(dev)
        xs = stamp(x.to(dev), m, p)
        pred = model(xs).argmax(1).view(m.shape[0], n).cpu()
        hits[i : i + per] = (pred == tg[i : i + per, None]).float().mean(1)
    return hits


def reverse_triggers(
    model: nn.Module,
    clean: ImageData,
    targets: Sequence[int] | None = None,
    spec: ReverseSpec | None = None,
    extra_loss: ExtraLoss | None = None,
) -> ReverseResult:
    """Reverse-engineer a minimal trigger for every class in ``targets`` (all classes by default), batched.

    ``extra_loss`` adds per-class regularisers (TABOR); it returns a ``(k,)`` tensor.
    """
    spec = spec or ReverseSpec()
    t0 = time.perf_counter()
    if len(clean) == 0:
        raise ConfigError("trigger reverse engineering needs at least one clean image")
    dev = model_device(model, spec.device)
    model.to(dev)
    k_out = check_classifier(model, clean.x)
    tlist = list(range(k_out)) if targets is None else [int(t) for t in targets]
    if not tlist:
        raise ConfigError("no target classes to reverse-engineer")
    bad = [t for t in tlist if not 0 <= t < k_out]
    if bad:
        raise ConfigError(f"target classes {bad} out of range: the model has {k_out} classes")
    K = len(tlist)
    x_all = clean.x.to(dev)
    y_all = clean.y.to(dev)
    n = len(x_all)
    bs = min(spec.batch_size, n)
    steps = math.ceil(n / bs)
    m0, p0 = _init_params(tlist, clean.shape, spec.seed)
    mask_w = from_unit(m0).to(dev).requires_grad_(True)
    pat_w = from_unit(p0).to(dev).requires_grad_(True)
    opt = torch.optim.Adam([mask_w, pat_w], lr=spec.lr, betas=spec.betas)
    tgt = torch.tensor(tlist, dtype=torch.long, device=dev)

    inf = float("inf")
    cost = torch.full((K,), float(spec.init_cost), dtype=torch.float64)
    reg_best = torch.full((K,), inf, dtype=torch.float64)
    es_reg_best = torch.full((K,), inf, dtype=torch.float64)
    es_counter = torch.zeros(K, dtype=torch.long)
    set_counter = torch.zeros(K, dtype=torch.long)
    up_counter = torch.zeros(K, dtype=torch.long)
    down_counter = torch.zeros(K, dtype=torch.long)
    up_flag = torch.zeros(K, dtype=torch.bool)
    down_flag = torch.zeros(K, dtype=torch.bool)
    active = torch.ones(K, dtype=torch.bool)
    epochs_run = torch.zeros(K, dtype=torch.long)
    best_m = torch.zeros(K, *m0.shape[1:])
    best_p = torch.zeros(K, *p0.shape[1:])
    last_m = torch.zeros_like(best_m)
    last_p = torch.zeros_like(best_p)
    g = make_generator(spec.seed)
    thr = spec.attack_succ_threshold
    up_mult, down_mult = spec.cost_multiplier, spec.cost_multiplier**1.5

    with frozen(model):
        for _epoch in range(spec.max_epochs):
            idx = torch.nonzero(active).flatten()
            if len(idx) == 0:
                break
            idx_d = idx.to(dev)
            k = len(idx)
            perm = torch.randperm(n, generator=g).to(dev)
            cost_d = cost[idx].to(dev, torch.float32)
            acc_sum = torch.zeros(k, device=dev)
            reg_sum = torch.zeros(k, device=dev)
            for s in range(steps):
                bi = perm[s * bs : (s + 1) * bs]
                xb, yb = x_all[bi], y_all[bi]
                b = len(bi)
                m = to_unit(mask_w[idx_d])
                p = to_unit(pat_w[idx_d])
                out = model(stamp(xb, m, p))
                tk = tgt[idx_d]
                ce = F.cross_entropy(out, tk.repeat_interleave(b), reduction="none").view(k, b)
                l1 = m.abs().sum(dim=(1, 2, 3))
                loss = ce.mean(1) + cost_d * l1
                if extra_loss is not None:
                    loss = loss + extra_loss(m, p, xb, yb, tk, model)
                opt.zero_grad(set_to_none=True)
                loss.sum().backward()
                opt.step()
                with torch.no_grad():
                    acc_sum += (out.argmax(1).view(k, b) == tk[:, None]).float().mean(1)
                    reg_sum += l1.detach()
            epochs_run[idx] += 1
            avg_acc = (acc_sum / steps).double().cpu()
            avg_reg = (reg_sum / steps).double().cpu()
            with torch.no_grad():
                cur_m = to_unit(mask_w[idx_d]).cpu()
                cur_p = to_unit(pat_w[idx_d]).cpu()
            last_m[idx], last_p[idx] = cur_m, cur_p
            # best trigger: smallest mask among those reaching the attack-success threshold
            better = (avg_acc >= thr) & (avg_reg < reg_best[idx])
            if better.any():
                sel = idx[better]
                best_m[sel], best_p[sel] = cur_m[better], cur_p[better]
                reg_best[sel] = avg_reg[better]
            rb = reg_best[idx]
            stop = torch.zeros(k, dtype=torch.bool)
            if spec.early_stop:
                found = rb < inf
                worse = rb >= spec.early_stop_threshold * es_reg_best[idx]
                es_counter[idx] = torch.where(
                    found, torch.where(worse, es_counter[idx] + 1, 0), es_counter[idx]
                )
                es_reg_best[idx] = torch.minimum(rb, es_reg_best[idx])
                stop = up_flag[idx] & down_flag[idx] & (es_counter[idx] >= spec.early_stop_patience)
            # lambda schedule (cost == 0 only when init_cost == 0: switch it on once attacks succeed)
            ok = avg_acc >= thr
            c = cost[idx]
            zero_ok = (c == 0) & ok
            set_counter[idx] = torch.where(zero_ok, set_counter[idx] + 1, 0)
            switch_on = set_counter[idx] >= spec.patience
            if switch_on.any():
                sel = idx[switch_on]
                cost[sel] = spec.init_cost
                up_counter[sel] = 0
                down_counter[sel] = 0
                up_flag[sel] = False
                down_flag[sel] = False
            up_counter[idx] = torch.where(ok, up_counter[idx] + 1, 0)
            down_counter[idx] = torch.where(ok, 0, down_counter[idx] + 1)
            go_up = up_counter[idx] >= spec.patience
            go_down = ~go_up & (down_counter[idx] >= spec.patience)
            cost[idx] = torch.where(
                go_up, cost[idx] * up_mult, torch.where(go_down, cost[idx] / down_mult, cost[idx])
            )
            up_counter[idx] = torch.where(go_up, 0, up_counter[idx])
            down_counter[idx] = torch.where(go_down, 0, down_counter[idx])
            up_flag[idx] |= go_up
            down_flag[idx] |= go_down
            active[idx[stop]] = False
        reached = reg_best < inf
        masks = torch.where(reached.view(K, 1, 1, 1), best_m, last_m)
        patterns = torch.where(reached.view(K, 1, 1, 1), best_p, last_p)
        success = attack_success(model, clean.x, masks, patterns, tlist)
    norms = masks.abs().sum(dim=(1, 2, 3))
    return ReverseResult(
        targets=tlist,
        masks=masks,
        patterns=patterns,
        norms=norms,
        success=success,
        reached=reached,
        epochs=epochs_run,
        cost=cost.float(),
        seconds=time.perf_counter() - t0,
        info={"steps_per_epoch": steps, "batch_size": bs, "n_images": n},
    )


def reverse_triggers_sequential(
    model: nn.Module,
    clean: ImageData,
    targets: Sequence[int] | None = None,
    spec: ReverseSpec | None = None,
    extra_loss: ExtraLoss | None = None,
) -> ReverseResult:
    """The one-class-at-a-time form (the original NC loop): same code path, ``K = 1`` per call."""
    k_out = check_classifier(model, clean.x)
    tlist = list(range(k_out)) if targets is None else [int(t) for t in targets]
    t0 = time.perf_counter()
    res = ReverseResult.stack(
        [reverse_triggers(model, clean, [t], spec, extra_loss) for t in tlist]
    )
    res.seconds = time.perf_counter() - t0
    return res


def mad_anomaly(norms: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """NC's MAD outlier test (Sec. IV-C): signed anomaly index ``(median - norm) / (1.4826 * MAD)``.

    Positive values lie below the median (smaller triggers: suspicious). Returns (index float32,
    median, 1.4826 * MAD); see :func:`backdoorlab.metrics.detection.anomaly_index` (zero-MAD floor).
    """
    from ..metrics.detection import anomaly_index, median_mad

    med, mad = median_mad(norms)
    return anomaly_index(norms, signed=True).float(), med, mad


def default_clean(clean: ImageData, per_class: int | None, seed: int) -> ImageData:
    """At most ``per_class`` images of each (given or predicted) label; all when ``None``."""
    return clean if per_class is None else clean.per_class(per_class, seed=seed)

"""ABS: Artificial Brain Stimulation, a model scanner for pixel-space and feature-space trojans.

Liu, Lee, Tao, Ma, Aafer & Zhang, "ABS: Scanning Neural Networks for Back-doors by Artificial Brain
Stimulation", ACM CCS 2019.

Implemented:

* **Neuron stimulation analysis** (Sec. 4): the model is cut at an inner layer (default: the last
  convolutional feature map, see :mod:`.layers`); for each neuron (channel) its whole feature map is
  set to each of ``n_values`` stimulation values ``v_i = i * stim_scale * max / n_values`` (``max``:
  the largest activation of the layer on the clean images; the sampling rule of the authors' code)
  on every clean image, all other neurons keep their values, and the output logits are recorded --
  one batched pass over (neuron, image, value). The elevation of label ``l`` on an image is its logit
  minus the largest other logit; a neuron's score for ``l`` is the minimum over images of the largest
  elevation over the stimulation values (so a positive score means the same label ``l`` wins on
  every image at some stimulation: the paper's "elevation difference" with the same-label
  condition). Neurons are ranked by their best label's score; the ``top_k`` (paper: 10) are kept.
* **Trigger reverse engineering** (Sec. 5), all candidates optimised at once:
  pixel space -- a mask ``m`` and pattern ``p`` (``x' = (1 - m) x + m p``, sigmoid-parametrised)
  maximising the candidate neuron's activation while suppressing the other neurons of the layer;
  while more than ``max_mask_size`` of the pixels (paper: 6% of the image) exceed ``MASK_EPS`` an L1
  push shrinks the mask (the size rule of the authors' code), and at the end the mask is projected
  onto the bound (only its largest ``max_mask_size`` fraction of pixels is kept);
  feature space -- a "filter" applied to the whole image: a learnable per-channel tone curve
  (piecewise linear, ``n_knots`` knots) followed by a 3x3 convolution (identity-initialised) mixing
  the channels, with the mean absolute pixel change bounded by ``filter_bound`` (penalty, then a
  hard rescale).
* **REASR** (Sec. 6): the fraction of the clean images (those not already of the label) that the
  reversed trigger turns into one label (the most frequent label under the trigger). The score is
  the largest REASR over candidates and trigger kinds; the model is flagged when the pixel REASR
  reaches ``threshold_pixel`` (0.95) or the filter REASR reaches ``threshold_filter`` (0.60). The
  defaults were calibrated on clean Fashion-MNIST models only: the largest clean REASR of each
  kind plus 0.04, rounded up to 0.05 (see ``docs/abs.md``).

Deviations: the paper's feature-space generator is a one-layer conv "filter" network bounded by
its input change; here it is a tone curve + 3x3 conv (so Instagram-style tone/colour filters are
reachable) bounded by the mean absolute change. The optimisation objective of Sec. 5 is used without
the extra logits term of the released code. Stimulation is applied to one layer (the paper scans
several inner layers). REASR counts only images whose label differs from the trigger's label.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ...data.core import ImageData
from ...errors import ConfigError, ModelError
from ...utils import make_generator
from ..base import DEFENSES, ModelDetector, ScanResult
from ..layers import LayerSplit, split_model
from ..reverse import stamp

MASK_EPS = 0.01  # a mask pixel counts towards the trigger size above this value

__all__ = ["ABS", "elevation_scores", "filter_transform", "stimulate"]


def _device_of(model: nn.Module) -> torch.device:
    try:
        return next(iter(model.parameters())).device
    except (StopIteration, RuntimeError):
        return torch.device("cpu")


def stimulate(
    split: LayerSplit, h: torch.Tensor, values: torch.Tensor, max_batch: int = 4096
) -> torch.Tensor:
    """Logits ``(U, N, V, K)`` with neuron ``u``'s feature map set to ``values[v]`` on image ``n``.

    ``h`` is the layer's clean activation ``(N, U, *spatial)``; batched over neurons, images and
    values (chunks of at most ``max_batch`` rows).
    """
    n, u = h.shape[:2]
    nv = len(values)
    rest = h.shape[2:]
    eye = torch.eye(u, dtype=h.dtype, device=h.device).view(u, 1, 1, u, *([1] * len(rest)))
    vals = values.to(h).view(1, 1, nv, 1, *([1] * len(rest)))
    per_neuron = n * nv
    step = max(1, max_batch // per_neuron)
    outs = []
    with torch.no_grad():
        for s in range(0, u, step):
            e = eye[s : s + step]  # (b, 1, 1, U, ...)
            hs = h.view(1, n, 1, u, *rest) * (1 - e) + vals * e  # (b, N, V, U, ...)
            logits = split.tail(hs.reshape(-1, u, *rest))
            outs.append(logits.float().view(-1, n, nv, logits.shape[-1]))
    return torch.cat(outs)


def elevation_scores(logits: torch.Tensor) -> torch.Tensor:
    """Scores ``(U, K)``: min over images of max over values of (logit_l - largest other logit).

    ``logits`` is ``(U, N, V, K)`` from :func:`stimulate`.
    """
    top2 = logits.topk(2, dim=-1).values
    other = torch.where(logits >= top2[..., :1], top2[..., 1:2], top2[..., :1])
    elev = logits - other  # (U, N, V, K)
    return elev.amax(dim=2).amin(dim=1)


def filter_transform(
    x: torch.Tensor, curve: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """Apply ``k`` filters to ``x`` ``(N, C, H, W)`` -> ``(k, N, C, H, W)`` in [0, 1].

    ``curve`` ``(k, C, J)``: offsets of a per-channel piecewise-linear tone curve at ``J`` evenly
    spaced knots on [0, 1] (0 = identity); ``weight`` ``(k, C, C, 3, 3)`` and ``bias`` ``(k, C)``: a
    3x3 convolution applied after the curve.
    """
    k, c, j = curve.shape
    n, _, hh, ww = x.shape
    pos = x.clamp(0, 1) * (j - 1)  # (N, C, H, W)
    lo = pos.floor().clamp(max=j - 2)
    frac = pos - lo
    lo_i = lo.long()
    # gather knot offsets for every candidate: (k, N, C, H, W)
    cv = curve.view(k, 1, c, j, 1).expand(k, n, c, j, hh * ww)
    idx = lo_i.view(1, n, c, 1, hh * ww).expand(k, n, c, 1, hh * ww)
    d0 = cv.gather(3, idx).view(k, n, c, hh, ww)
    d1 = cv.gather(3, idx + 1).view(k, n, c, hh, ww)
    y = x.unsqueeze(0) + d0 + (d1 - d0) * frac.unsqueeze(0)
    y = y.permute(1, 0, 2, 3, 4).reshape(n, k * c, hh, ww)
    out = F.conv2d(y, weight.reshape(k * c, c, 3, 3), bias.reshape(k * c), padding=1, groups=k)
    return out.view(n, k, c, hh, ww).permute(1, 0, 2, 3, 4).clamp(0, 1)


@DEFENSES.register(
    "abs",
    "ABS (Liu et al., CCS 2019): neuron stimulation + pixel/filter trigger reversal, REASR score",
    paper='Liu, Lee, Tao, Ma, Aafer & Zhang, "ABS: Scanning Neural Networks for Back-doors by Artificial Brain Stimulation", ACM CCS 2019',
)
@dataclass(kw_only=True)
class ABS(ModelDetector):
    """Artificial Brain Stimulation scanner (Liu et al., CCS 2019); see the module docstring.

    ``triggers`` may be given as a comma-separated string; it is kept as a tuple.
    """

    layer: str = "auto"
    top_k: int = 10
    n_values: int = 8
    stim_scale: float = 2.0
    n_images: int = 20
    max_mask_size: float = 0.06
    filter_bound: float = 0.1
    steps: int = 300
    lr: float = 0.1
    other_weight: float = 0.1
    bound_weight: float = 5.0
    n_knots: int = 9
    triggers: tuple[str, ...] = ("pixel", "filter")
    threshold_pixel: float = 0.95
    threshold_filter: float = 0.6
    max_batch: int = 4096
    seed: int = 0
    name = "abs"

    def __post_init__(self) -> None:
        triggers: Any = self.triggers
        if isinstance(triggers, str):
            triggers = tuple(t.strip() for t in triggers.split(",") if t.strip())
        bad = [t for t in triggers if t not in ("pixel", "filter")]
        if bad or not triggers:
            raise ConfigError(
                f"abs: triggers must be 'pixel' and/or 'filter', got {list(triggers)}"
            )
        if not 0 < float(self.max_mask_size) <= 1:
            raise ConfigError(f"abs: max_mask_size must be in (0, 1], got {self.max_mask_size}")
        for what, v in (
            ("top_k", self.top_k),
            ("n_values", self.n_values),
            ("n_images", self.n_images),
        ):
            if int(v) < 1:
                raise ConfigError(f"abs: {what} must be >= 1, got {v}")
        if int(self.n_knots) < 2:
            raise ConfigError(f"abs: n_knots must be >= 2, got {self.n_knots}")
        self.layer = str(self.layer)
        self.top_k = int(self.top_k)
        self.n_values = int(self.n_values)
        self.stim_scale = float(self.stim_scale)
        self.n_images = int(self.n_images)
        self.max_mask_size = float(self.max_mask_size)
        self.filter_bound = float(self.filter_bound)
        self.steps = int(self.steps)
        self.lr = float(self.lr)
        self.other_weight = float(self.other_weight)
        self.bound_weight = float(self.bound_weight)
        self.n_knots = int(self.n_knots)
        self.triggers = tuple(triggers)
        self.threshold_pixel = float(self.threshold_pixel)
        self.threshold_filter = float(self.threshold_filter)
        self.max_batch = int(self.max_batch)
        self.seed = int(self.seed)

    # --- stage 1 ----------------------------------------------------------------------------

    def select_neurons(
        self, split: LayerSplit, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """Top-k neurons by elevation score: (neurons, their labels, their scores, layer max)."""
        with torch.no_grad():
            h = split.head(x)
        if h.dim() < 2:
            raise ModelError(f"abs: layer {split.layer!r} output has shape {tuple(h.shape)}")
        layer_max = float(h.max().clamp_min(1e-6))
        values = torch.arange(self.n_values, dtype=torch.float32) * (
            self.stim_scale * layer_max / self.n_values
        )
        logits = stimulate(split, h, values, self.max_batch)
        scores = elevation_scores(logits)  # (U, K)
        best, label = scores.max(dim=1)
        k = min(self.top_k, len(best))
        order = torch.argsort(best, descending=True, stable=True)[:k]
        return order, label[order], best[order], layer_max

    # --- stage 2 ----------------------------------------------------------------------------

    def _neuron_loss(self, act: torch.Tensor, neurons: torch.Tensor, scale: float) -> torch.Tensor:
        """Per-candidate loss ``(k,)``: -target neuron + other_weight * mean of the other neurons."""
        k = len(neurons)
        a = act.reshape(k, -1, act.shape[1], *act.shape[2:])
        a = a.flatten(3).mean(3) if a.dim() > 3 else a  # (k, N, U)
        sel = F.one_hot(neurons, a.shape[2]).to(a).unsqueeze(1)  # (k, 1, U)
        target = (a * sel).sum(2)
        others = (a * (1 - sel)).sum(2) / max(1, a.shape[2] - 1)
        return (-target + self.other_weight * others).mean(1) / scale

    def reverse_pixel(
        self,
        split: LayerSplit,
        x: torch.Tensor,
        neurons: torch.Tensor,
        scale: float,
        g: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Masks ``(k, 1, H, W)`` and patterns ``(k, C, H, W)`` stimulating each candidate neuron."""
        k = len(neurons)
        _, c, hh, ww = x.shape
        dev = x.device
        m_logit = (torch.randn(k, 1, hh, ww, generator=g) * 0.1 - 4.0).to(dev).requires_grad_(True)
        p_logit = torch.randn(k, c, hh, ww, generator=g).to(dev).requires_grad_(True)
        opt = torch.optim.Adam([m_logit, p_logit], lr=self.lr)
        area_px = hh * ww
        for _ in range(self.steps):
            m, p = torch.sigmoid(m_logit), torch.sigmoid(p_logit)
            act = split.head(stamp(x, m, p))  # (k * N, C, H, W), class-major
            # size = pixels above MASK_EPS (authors' code); over the bound, an L1 push on the mask
            size = (m > MASK_EPS).flatten(1).float().sum(1) / area_px
            l1 = m.flatten(1).sum(1) / area_px
            over = (size > self.max_mask_size).float()
            loss = self._neuron_loss(act, neurons, scale) + self.bound_weight * over * l1
            gm, gp = torch.autograd.grad(loss.sum(), [m_logit, p_logit])
            m_logit.grad, p_logit.grad = gm, gp
            opt.step()
        with torch.no_grad():
            m, p = torch.sigmoid(m_logit), torch.sigmoid(p_logit)
            keep = max(1, int(self.max_mask_size * area_px))
            kth = m.flatten(1).topk(keep, dim=1).values[:, -1].view(k, 1, 1, 1)
            m = torch.where(m >= kth, m, torch.zeros_like(m))
        return m.detach(), p.detach()

    def _filter_params(
        self, k: int, c: int, g: torch.Generator, dev: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        curve = (torch.randn(k, c, self.n_knots, generator=g) * 0.01).to(dev)
        weight = (torch.randn(k, c, c, 3, 3, generator=g) * 0.01).to(dev)
        bias = torch.zeros(k, c, device=dev)
        return curve, weight, bias

    def _filter_apply(
        self, x: torch.Tensor, curve: torch.Tensor, dweight: torch.Tensor, bias: torch.Tensor
    ) -> torch.Tensor:
        c = x.shape[1]
        ident = torch.zeros(c, c, 3, 3, device=x.device, dtype=x.dtype)
        ident[torch.arange(c), torch.arange(c), 1, 1] = 1.0
        return filter_transform(x, curve, ident + dweight, bias)

    def reverse_filter(
        self,
        split: LayerSplit,
        x: torch.Tensor,
        neurons: torch.Tensor,
        scale: float,
        g: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Filter parameters (curve, conv weight delta, bias) per candidate, and their scale factor."""
        k = len(neurons)
        _, c, hh, ww = x.shape
        params = [p.requires_grad_(True) for p in self._filter_params(k, c, g, x.device)]
        opt = torch.optim.Adam(params, lr=self.lr * 0.1)
        for _ in range(self.steps):
            xs = self._filter_apply(x, *params)  # (k, N, C, H, W)
            act = split.head(xs.reshape(-1, c, hh, ww))
            dist = (xs - x.unsqueeze(0)).abs().flatten(1).mean(1)
            loss = (
                self._neuron_loss(act, neurons, scale)
                + self.bound_weight * F.relu(dist - self.filter_bound) / self.filter_bound
            )
            grads = torch.autograd.grad(loss.sum(), params)
            for p, gr in zip(params, grads, strict=True):
                p.grad = gr
            opt.step()
        with torch.no_grad():
            xs = self._filter_apply(x, *params)
            dist = (xs - x.unsqueeze(0)).abs().flatten(1).mean(1)
            shrink = (self.filter_bound / dist.clamp_min(1e-12)).clamp(max=1.0)
        curve, dw, b = (p.detach() for p in params)
        return curve, dw, b, shrink

    def apply_filters(
        self,
        x: torch.Tensor,
        curve: torch.Tensor,
        dweight: torch.Tensor,
        bias: torch.Tensor,
        shrink: torch.Tensor,
    ) -> torch.Tensor:
        """Reversed filters on ``x``: ``(k, N, C, H, W)``, each change scaled into the bound."""
        xs = self._filter_apply(x, curve, dweight, bias)
        return x.unsqueeze(0) + (xs - x.unsqueeze(0)) * shrink.view(-1, 1, 1, 1, 1)

    # --- stage 3 ----------------------------------------------------------------------------

    @staticmethod
    def reasr(
        model: nn.Module, xs: torch.Tensor, y: torch.Tensor, num_classes: int, batch: int = 1024
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """REASR ``(k,)`` and label ``(k,)`` of triggered images ``xs`` ``(k, N, C, H, W)``.

        The label is the most frequent prediction; REASR is the fraction of images whose label
        ``y`` differs from it that are predicted as it.
        """
        k, n = xs.shape[:2]
        flat = xs.reshape(k * n, *xs.shape[2:])
        with torch.no_grad():
            pred = torch.cat([model(flat[i : i + batch]).argmax(1) for i in range(0, k * n, batch)])
        pred = pred.view(k, n).cpu()
        counts = F.one_hot(pred, num_classes).sum(1)  # (k, K)
        label = counts.argmax(1)
        hit = pred == label.view(k, 1)
        elig = y.view(1, n).cpu() != label.view(k, 1)
        rate = (hit & elig).sum(1).double() / elig.sum(1).clamp_min(1).double()
        return rate.float(), label

    def scan(self, model: nn.Module, clean: ImageData) -> ScanResult:
        """Stimulate, reverse-engineer a trigger per candidate neuron, and score by REASR."""
        t0 = time.perf_counter()
        if len(clean) == 0:
            raise ConfigError("abs: needs clean images, got none")
        model.eval()
        dev = _device_of(model)
        split = split_model(model, clean.shape, self.layer, seed=self.seed)
        g = make_generator(self.seed)
        per = max(1, math.ceil(self.n_images / max(1, clean.num_classes)))
        opt_set = clean.per_class(per, seed=self.seed)
        opt_set = opt_set.subset(slice(0, self.n_images))
        x = opt_set.x.to(dev)
        neurons, stim_labels, stim_scores, layer_max = self.select_neurons(split, x)
        with torch.no_grad():
            h = split.head(x)
            a = h.flatten(2).mean(2) if h.dim() > 2 else h
            scale = float(a.max().clamp_min(1e-6))
        k = len(neurons)
        xr, yr = clean.x.to(dev), clean.y
        nk = clean.num_classes
        evidence: dict[str, torch.Tensor] = {"neurons": neurons.clone()}
        pix_r = torch.zeros(k)
        pix_l = torch.full((k,), -1, dtype=torch.long)
        fil_r = torch.zeros(k)
        fil_l = torch.full((k,), -1, dtype=torch.long)
        if "pixel" in self.triggers:
            masks, patterns = self.reverse_pixel(split, x, neurons.to(dev), scale, g)
            xs = (1 - masks.unsqueeze(1)) * xr.unsqueeze(0) + (masks * patterns).unsqueeze(1)
            pix_r, pix_l = self.reasr(model, xs, yr, nk)
            evidence["masks"], evidence["patterns"] = masks.cpu(), patterns.cpu()
        if "filter" in self.triggers:
            curve, dw, b, shrink = self.reverse_filter(split, x, neurons.to(dev), scale, g)
            with torch.no_grad():
                xs = self.apply_filters(xr, curve, dw, b, shrink)
            fil_r, fil_l = self.reasr(model, xs, yr, nk)
            evidence["filter_curves"], evidence["filter_weights"] = curve.cpu(), dw.cpu()
            evidence["filter_bias"], evidence["filter_shrink"] = b.cpu(), shrink.cpu()
            evidence["filtered_examples"] = xs[:, 0].detach().cpu()
        pix_best = float(pix_r.max()) if "pixel" in self.triggers else 0.0
        fil_best = float(fil_r.max()) if "filter" in self.triggers else 0.0
        flag_pix = "pixel" in self.triggers and pix_best >= self.threshold_pixel
        flag_fil = "filter" in self.triggers and fil_best >= self.threshold_filter
        hits: list[tuple[float, int]] = []
        if flag_pix:
            hits += [
                (float(r), int(lab))
                for r, lab in zip(pix_r, pix_l, strict=True)
                if r >= self.threshold_pixel
            ]
        if flag_fil:
            hits += [
                (float(r), int(lab))
                for r, lab in zip(fil_r, fil_l, strict=True)
                if r >= self.threshold_filter
            ]
        targets: list[int] = []
        for _, lab in sorted(hits, key=lambda t: -t[0]):
            if lab not in targets:
                targets.append(lab)
        per_class: dict[str, Any] = {"pixel_reasr": [], "filter_reasr": []}
        for cls in range(nk):
            pr = pix_r[pix_l == cls]
            fr = fil_r[fil_l == cls]
            per_class["pixel_reasr"].append(float(pr.max()) if len(pr) else 0.0)
            per_class["filter_reasr"].append(float(fr.max()) if len(fr) else 0.0)
        candidates = [
            {
                "neuron": int(neurons[i]),
                "stim_label": int(stim_labels[i]),
                "stim_score": float(stim_scores[i]),
                "pixel_reasr": float(pix_r[i]),
                "pixel_label": int(pix_l[i]),
                "filter_reasr": float(fil_r[i]),
                "filter_label": int(fil_l[i]),
            }
            for i in range(k)
        ]
        best_i = int(torch.argmax(torch.maximum(pix_r, fil_r)))
        rule = (
            f"pixel REASR {pix_best:.2f} {'>=' if flag_pix else '<'} {self.threshold_pixel:g}, "
            f"filter REASR {fil_best:.2f} {'>=' if flag_fil else '<'} {self.threshold_filter:g}"
        )
        said = (
            f"backdoor found by the REASR rule: target {', '.join(map(str, targets))} ({rule})"
            if flag_pix or flag_fil
            else f"no backdoor found by the REASR rule ({rule})"
        )
        info = {
            "layer": split.layer,
            "split": split.how,
            "layer_shape": list(split.shape),
            "layer_max": layer_max,
            "pixel_reasr": pix_best,
            "filter_reasr": fil_best,
            "best_label": int(pix_l[best_i] if pix_r[best_i] >= fil_r[best_i] else fil_l[best_i]),
            "threshold_pixel": self.threshold_pixel,
            "threshold_filter": self.threshold_filter,
            "candidates": candidates,
            "n_images_opt": len(opt_set),
            "n_images_reasr": len(clean),
        }
        # one score on one scale: the larger REASR relative to its own threshold (flagged iff >= 1)
        rel = [
            r / t
            for kind, r, t in (
                ("pixel", pix_best, self.threshold_pixel),
                ("filter", fil_best, self.threshold_filter),
            )
            if kind in self.triggers
        ]
        return ScanResult(
            defense=self.name,
            method=self.name,
            flagged=bool(flag_pix or flag_fil),
            score=float(max(rel, default=0.0)),
            threshold=1.0,
            criterion="reasr",
            score_meaning="largest REASR divided by its threshold "
            f"(pixel {self.threshold_pixel:g}, filter {self.threshold_filter:g})",
            suspect_targets=tuple(int(t) for t in targets),
            classes=tuple(range(nk)),
            per_class=per_class,
            evidence=evidence,
            seconds=time.perf_counter() - t0,
            verdict=said,
            extras=info,
        )

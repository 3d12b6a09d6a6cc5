"""SentiNet: run-time detection of localised triggers with GradCAM and a fooled-rate test.

Chou, Tramer & Pellegrino, "SentiNet: Detecting Localized Universal Attacks Against Deep Learning
Systems", IEEE S&P Workshops (DLS) 2020 (arXiv 1812.00292).

Why SentiNet and not Februus (Doan et al., ACSAC 2020): both find the trigger with GradCAM, but
Februus *removes* it (inpainting with a GAN trained per data set) and is a purification step; it
gives no suspicion score by itself. SentiNet's second stage is a detection test with a decision
boundary fitted on clean inputs only, which is what the ``InputDetector`` protocol asks for, and it
needs no generative model.

Implemented (Sec. 4):

1. *Class-relevant region* (Sec. 4.1): GradCAM (Selvaraju et al., ICCV 2017) of the predicted class
   on the last conv feature map (``model.features(x)`` of zoo models): channel weights = spatially
   averaged gradients, ``ReLU(sum_k w_k A_k)``, upsampled bilinearly to the input size; the mask is
   the top ``mask_fraction`` of its pixels.
2. *Attack test* (Sec. 4.2): the masked region of ``x`` is pasted onto ``n_clean`` held-out clean
   images; the *fooled rate* is the fraction of them then classified as ``x``'s predicted class. The
   same region filled with an *inert pattern* (uniform noise) is pasted too, and the *average
   confidence* (max softmax) of the model on those is recorded. Each input becomes a point
   ``(avg_conf, fooled)``.
3. *Decision boundary* (Sec. 4.3): from clean inputs only, the points are binned along ``avg_conf``;
   the highest ``fooled`` value in each bin is taken and a quadratic is least-squares fitted through
   these upper-envelope points. An input's suspicion is its height above that curve; the threshold
   is the ``(1 - FRR)`` quantile of the clean inputs' suspicions.

Out of sample (``fit``): besides the ``n_clean`` carriers, the defender's clean images are split,
seeded, into three disjoint thirds: the boundary is fitted on the first, the threshold set on the
second (whose points did not shape the boundary, so their heights are not biased low), and
``heldout_frr`` is the FRR of that threshold on the third. Before this split the boundary and the
threshold came from the same images.

Deviations: the paper subtracts the GradCAM regions of the top-k other classes from the mask and
selects the region with a fixed heat-map threshold; here one mask of the predicted class is kept
with a fixed pixel fraction (default 15%, covering the GradCAM peak at this resolution). The
distance to the boundary is the vertical residual instead of the Euclidean distance to the curve,
and the threshold is an empirical quantile at the chosen FRR instead of the paper's fixed cut.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from ...data.core import ImageData
from ...errors import ConfigError, DataError, ModelError
from ...metrics.detection import threshold_at_fpr
from ...utils import eval_mode, make_generator, model_device
from ..base import DEFENSES, InputDetector


def gradcam(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """GradCAM heat maps ``(N, H, W)`` in [0, 1] on the last conv map, and the logits ``(N, K)``.

    ``target`` selects the class per input (default: the predicted class). The model must compute
    its output through ``self.features(x)`` (all zoo models do).
    """
    orig = getattr(model, "features", None)
    if not callable(orig):
        raise ModelError(
            f"{type(model).__name__}: no features(x) method; GradCAM needs the last conv map"
        )
    maps: list[torch.Tensor] = []

    def grab(inp: torch.Tensor) -> torch.Tensor:
        a = orig(inp)
        maps.append(a)
        return a

    model.features = grab  # type: ignore[assignment]  # instance attribute shadows the method
    try:
        with eval_mode(model), torch.enable_grad():
            out = model(x)
            if len(maps) != 1 or maps[0].dim() != 4:
                raise ModelError(
                    f"{type(model).__name__}: forward must call self.features(x) once with a 4-D map"
                )
            cls = out.argmax(1) if target is None else target.to(out.device)
            (grad,) = torch.autograd.grad(out.gather(1, cls.view(-1, 1)).sum(), maps[0])
    finally:
        del model.features
    a = maps[0].detach()
    w = grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((w * a).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    lo = cam.flatten(1).min(1).values.view(-1, 1, 1)
    hi = cam.flatten(1).max(1).values.view(-1, 1, 1)
    return (cam - lo) / (hi - lo).clamp_min(1e-12), out.detach()


def top_fraction_mask(heat: torch.Tensor, fraction: float) -> torch.Tensor:
    """Binary masks ``(N, 1, H, W)`` selecting the ``fraction`` of hottest pixels of each map."""
    flat = heat.flatten(1)
    k = max(1, round(fraction * flat.shape[1]))
    idx = flat.topk(k, dim=1).indices
    m = torch.zeros_like(flat).scatter_(1, idx, 1.0)
    return m.view(heat.shape[0], 1, *heat.shape[1:])


@DEFENSES.register(
    "sentinet",
    "SentiNet (Chou et al. 2020): GradCAM region pasted on clean images, input detector",
    paper='Chou, Tramer & Pellegrino, "SentiNet: Detecting Localized Universal Attacks Against Deep Learning Systems", IEEE S&P Workshops 2020',
)
@dataclass(kw_only=True)
class SentiNet(InputDetector):
    """Chou et al. 2020 SentiNet: fooled rate vs. inert-pattern confidence, boundary fitted on clean inputs."""

    n_clean: int = 50
    mask_fraction: float = 0.15
    n_bins: int = 10
    batch_size: int = 64
    seed: int = 0
    model: nn.Module | None = field(default=None, init=False, repr=False, compare=False)
    carriers: torch.Tensor | None = field(default=None, init=False, repr=False, compare=False)
    coef: torch.Tensor = field(
        default_factory=lambda: torch.zeros(3, dtype=torch.float64),
        init=False,
        repr=False,
        compare=False,
    )
    threshold: float | None = field(default=None, init=False, repr=False, compare=False)
    clean_scores: torch.Tensor | None = field(default=None, init=False, repr=False, compare=False)
    heldout_scores: torch.Tensor | None = field(default=None, init=False, repr=False, compare=False)
    heldout_frr: float | None = field(default=None, init=False, repr=False, compare=False)
    name = "sentinet"

    def __post_init__(self) -> None:
        if int(self.n_clean) < 1:
            raise ConfigError(f"sentinet: n_clean must be >= 1, got {self.n_clean}")
        if not 0 < self.mask_fraction < 1:
            raise ConfigError(
                f"sentinet: mask_fraction must be in (0, 1), got {self.mask_fraction}"
            )
        self.n_clean = int(self.n_clean)
        self.mask_fraction = float(self.mask_fraction)
        self.n_bins = int(self.n_bins)
        self.batch_size = int(self.batch_size)
        self.seed = int(self.seed)

    def points(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """SentiNet's 2-D points per input: (average inert confidence ``(N,)``, fooled rate ``(N,)``)."""
        if self.model is None or self.carriers is None:
            raise RuntimeError("sentinet: call fit() before score()")
        if x.dim() != 4 or tuple(x.shape[1:]) != tuple(self.carriers.shape[1:]):
            raise DataError(
                f"sentinet: inputs must be (N, {', '.join(map(str, self.carriers.shape[1:]))}), got {tuple(x.shape)}"
            )
        model, car = self.model, self.carriers
        dev = car.device
        g = make_generator(self.seed)
        noise = torch.rand(len(x), *x.shape[1:], generator=g).to(dev)
        conf = torch.empty(len(x))
        fooled = torch.empty(len(x))
        for i in range(0, len(x), self.batch_size):
            xb = x[i : i + self.batch_size].to(dev)
            heat, out = gradcam(model, xb)
            pred = out.argmax(1)
            m = top_fraction_mask(heat, self.mask_fraction).unsqueeze(1)  # (B, 1, 1, H, W)
            c = car.unsqueeze(0)  # (1, M, C, H, W)
            pasted = (1 - m) * c + m * xb.unsqueeze(1)  # (B, M, C, H, W)
            inert = (1 - m) * c + m * noise[i : i + len(xb)].unsqueeze(1)
            b, n = len(xb), len(car)
            with torch.no_grad(), eval_mode(model):
                p_adv = model(pasted.flatten(0, 1)).argmax(1).view(b, n)
                p_inert = torch.softmax(model(inert.flatten(0, 1)).float(), 1).amax(1).view(b, n)
            fooled[i : i + b] = (p_adv == pred.view(-1, 1)).float().mean(1).cpu()
            conf[i : i + b] = p_inert.mean(1).cpu()
        return conf, fooled

    def _boundary(self, conf: torch.Tensor) -> torch.Tensor:
        c = conf.double()
        return self.coef[0] + self.coef[1] * c + self.coef[2] * c * c

    def fit(self, model: nn.Module, clean: ImageData, frr: float = 0.01) -> SentiNet:
        """Carriers, then three disjoint seeded thirds of the rest: boundary, threshold, held-out check.

        ``n_clean`` images become the carriers; the boundary (upper envelope) is fitted on one third
        of the remaining images, the threshold is the ``(1 - frr)`` quantile of a second third's
        heights above it, and ``heldout_frr`` is the share of the last third above the threshold.
        """
        if len(clean) < self.n_clean + 10:
            raise DataError(
                f"sentinet: need at least {self.n_clean + 10} clean images, got {len(clean)}"
            )
        if not 0 <= frr < 1:
            raise ConfigError(f"sentinet: frr must be in [0, 1), got {frr}")
        g = make_generator(self.seed)
        perm = torch.randperm(len(clean), generator=g)
        self.model = model
        self.carriers = clean.x[perm[: self.n_clean]].to(model_device(model))
        rest = perm[self.n_clean :]
        n3 = len(rest) // 3
        parts = rest[:n3], rest[n3 : 2 * n3], rest[2 * n3 :]
        conf, fooled = self.points(clean.x[parts[0]])
        # upper envelope: the highest fooled rate per confidence bin, then a least-squares quadratic
        edges = torch.linspace(float(conf.min()), float(conf.max()) + 1e-9, self.n_bins + 1)
        b = (torch.bucketize(conf, edges, right=True) - 1).clamp(0, self.n_bins - 1)
        top = torch.full((self.n_bins,), -1.0).scatter_reduce(0, b, fooled, reduce="amax")
        centres = torch.zeros(self.n_bins).scatter_reduce(
            0, b, conf, reduce="mean", include_self=False
        )
        ok = top >= 0
        xs, ys = centres[ok].double(), top[ok].double()
        deg = min(2, int(ok.sum()) - 1)
        design = torch.stack([xs**p for p in range(deg + 1)], 1)
        sol = torch.linalg.lstsq(design, ys.unsqueeze(1)).solution.flatten()
        self.coef = torch.zeros(3, dtype=torch.float64)
        self.coef[: deg + 1] = sol
        s = self.score(clean.x[parts[1]])
        self.clean_scores = s
        self.threshold = threshold_at_fpr(s, frr)
        self.heldout_scores = self.score(clean.x[parts[2]])
        self.heldout_frr = float((self.heldout_scores > self.threshold).float().mean())
        return self

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Suspicion ``(N,)``: fooled rate above the clean boundary at the input's inert confidence."""
        conf, fooled = self.points(x)
        return (fooled.double() - self._boundary(conf)).float()

"""STRIP: run-time detection of triggered inputs by the entropy of superimposed copies.

Gao, Xu, Wang, Chen, Ranasinghe & Nepal, "STRIP: A Defence Against Trojan Attacks on Deep Neural
Networks", ACSAC 2019 (arXiv 1902.06531). Sec. IV: each incoming input ``x`` is superimposed with
``N`` images drawn at random from the defender's held-out clean set; a trojaned input keeps being
classified as the target whatever is blended in, so the predictions of its perturbed copies have low
entropy. Eq. (1)-(3): ``H_n = -sum_i y_i log2 y_i`` for each perturbed copy, ``H = (1/N) sum_n H_n``.
The detection boundary is set from clean inputs only, at a chosen false rejection rate (FRR).

Superimposition follows the authors' released code, ``cv2.addWeighted(x, 1, x_b, 1, 0)``: the two
images are added pixel-wise. On 8-bit images that call saturates at 255, which is ``blend="add-clip"``
(default): the sum clipped to [0, 1], so the model only ever sees inputs in its domain (the toolkit's
convention). ``"add"`` is the unclipped sum (values up to 2, as with float images), ``"average"``
``(x + x_b) / 2`` (IBM ART's ``combine_images``).

Score: ``-H`` (higher = more suspicious), so the toolkit's convention holds.

Choice of ``N`` (``n_perturb``, default 64; the paper uses 100). Measured on Fashion-MNIST BadNets
(badnets_cnn, 3x3 patch, 10% poison; docs/defenses.md), FAR at a 1% FRR set on 1,000 defender images:
add-clip N=64 4.7% (AUROC 0.985), add-clip N=16 8.1% (0.984), add N=100 11.9% (0.978), add N=16
15.8% (0.975), average N=16 75% (0.79). N=64 is the smallest tested N that meets FAR <= 5%. STRIP
costs about N forward passes per input (``benchmarks/bench_strip.py`` reports the ratio to plain
inference), so 2,000 inputs/s at N=64 needs a model that runs 128,000 images/s; pass
``n_perturb=16`` to trade detection for 4x throughput.

Deviations:

* The threshold is the empirical ``(1 - FRR)`` quantile of the clean scores
  (``metrics.detection.threshold_at_fpr``); the paper fits a normal distribution to the clean
  entropies and takes its FRR percentile (``threshold_rule="normal"`` does that).
* Overlays are drawn with replacement from the clean set with a seeded generator that is re-seeded
  at every :meth:`STRIP.score` call, so scoring the same inputs twice gives the same numbers. When
  ``fit`` scores the clean set itself, an image may occasionally be overlaid with itself.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..data.core import ImageData
from ..errors import ConfigError, DataError
from ..metrics.detection import threshold_at_fpr
from ..utils import eval_mode, make_generator, model_device
from .base import DEFENSES, InputDetector

BLENDS = ("add", "add-clip", "average")


def superimpose(x: torch.Tensor, overlays: torch.Tensor, blend: str = "add") -> torch.Tensor:
    """Superimpose every input ``(B, C, H, W)`` with its overlays ``(B, N, C, H, W)`` -> ``(B, N, C, H, W)``."""
    s = x.unsqueeze(1) + overlays
    if blend == "add":
        return s
    if blend == "add-clip":
        return s.clamp_(0, 1)
    if blend == "average":
        return s.mul_(0.5)
    raise ConfigError(f"bad STRIP blend {blend!r}: expected one of {', '.join(BLENDS)}")


def entropy_bits(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in bits of ``softmax(logits)`` along the last dimension."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1) / math.log(2.0)


@DEFENSES.register(
    "strip", "STRIP (Gao et al. ACSAC 2019): entropy of superimposed copies, input detector"
)
class STRIP(InputDetector):
    """Gao et al. 2019 STRIP: flag inputs whose superimposed copies keep a low prediction entropy."""

    name = "strip"

    def __init__(
        self,
        n_perturb: int = 64,
        blend: str = "add-clip",
        threshold_rule: str = "empirical",
        chunk: int = 8192,
        seed: int = 0,
    ) -> None:
        if int(n_perturb) < 1:
            raise ConfigError(f"strip: n_perturb must be >= 1, got {n_perturb}")
        if blend not in BLENDS:
            raise ConfigError(f"strip: bad blend {blend!r}: expected one of {', '.join(BLENDS)}")
        if threshold_rule not in ("empirical", "normal"):
            raise ConfigError(
                f"strip: bad threshold_rule {threshold_rule!r}: expected 'empirical' or 'normal'"
            )
        self.n_perturb = int(n_perturb)
        self.blend = blend
        self.threshold_rule = threshold_rule
        self.chunk = max(int(chunk), self.n_perturb)
        self.seed = int(seed)
        self.model: nn.Module | None = None
        self.bank: torch.Tensor | None = None
        self.threshold = None
        self.clean_scores: torch.Tensor | None = None

    def fit(self, model: nn.Module, clean: ImageData, frr: float = 0.01) -> STRIP:
        """Keep ``clean`` as the overlay bank and set the threshold at ``frr`` on its own scores."""
        if len(clean) < 2:
            raise DataError(f"strip: need at least 2 clean images for overlays, got {len(clean)}")
        if not 0 <= frr < 1:
            raise ConfigError(f"strip: frr must be in [0, 1), got {frr}")
        self.model = model
        self.bank = clean.x.to(model_device(model))
        s = self.score(clean.x)
        self.clean_scores = s
        if self.threshold_rule == "normal":
            h = -s.double()
            z = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(max(frr, 1e-12))).item()
            self.threshold = float(-(h.mean() + z * h.std()))
        else:
            self.threshold = threshold_at_fpr(s, frr)
        return self

    @torch.no_grad()
    def entropy(self, x: torch.Tensor) -> torch.Tensor:
        """Mean entropy (bits) ``(N,)`` of the predictions on ``n_perturb`` superimposed copies of each input."""
        if self.model is None or self.bank is None:
            raise RuntimeError("strip: call fit() before score()")
        if x.dim() != 4 or tuple(x.shape[1:]) != tuple(self.bank.shape[1:]):
            raise DataError(
                f"strip: inputs must be (N, {', '.join(map(str, self.bank.shape[1:]))}), got {tuple(x.shape)}"
            )
        model, bank, n = self.model, self.bank, self.n_perturb
        dev = bank.device
        g = make_generator(self.seed)
        idx = torch.randint(0, len(bank), (len(x), n), generator=g).to(dev)
        per = max(1, self.chunk // n)  # inputs per forward pass
        out = torch.empty(len(x))
        with eval_mode(model):
            for i in range(0, len(x), per):
                xb = x[i : i + per].to(dev)
                mixed = superimpose(xb, bank[idx[i : i + per]], self.blend)
                logits = model(mixed.flatten(0, 1))
                out[i : i + len(xb)] = entropy_bits(logits).view(len(xb), n).mean(1).cpu()
        return out

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Suspicion ``(N,)`` = minus the mean entropy of the superimposed copies."""
        return -self.entropy(x)

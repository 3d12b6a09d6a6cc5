"""Stealth of a trigger: how much it changes the images (L0 / L2 / L_inf, PSNR, SSIM), batched.

All functions take float batches ``(N, C, H, W)`` in ``[0, data_range]`` and work per image.

* **L0** counts *pixel positions* ``(h, w)`` where any channel changed by more than half a uint8
  step (``0.5 / 255`` of ``data_range``), i.e. positions whose 8-bit value would differ after
  rounding. **L2** and **L_inf** are the Euclidean and max-abs norms of the whole ``C x H x W``
  difference.
* **PSNR** is ``10 log10(data_range^2 / MSE)`` with the MSE over all ``C x H x W`` values. Identical
  images have ``MSE = 0`` and PSNR ``+inf``; :func:`psnr` returns ``inf`` there unless ``cap`` is
  given, and :func:`stealth_report` averages PSNR over the *changed* images only (it also reports
  how many were unchanged).
* **SSIM** follows Wang, Bovik, Sheikh & Simoncelli, "Image Quality Assessment: From Error
  Visibility to Structural Similarity", IEEE TIP 13(4), 2004, Eq. (13) with the Gaussian window of
  Sec. III-C (11 x 11, sigma 1.5, normalised to sum 1), ``K1 = 0.01``, ``K2 = 0.03``,
  ``C1 = (K1 L)^2``, ``C2 = (K2 L)^2``, and the mean SSIM of Eq. (17).

SSIM convention: the same numbers as scikit-image's
``structural_similarity(a, b, data_range=..., gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, channel_axis=...)``: local statistics are Gaussian-weighted means with
*population* (biased) variances, the SSIM map is averaged only where the whole window lies inside
the image (a 'valid' convolution, which is what scikit-image's reflect-pad-then-crop amounts to),
and colour images get the mean of the per-channel SSIMs. No downsampling is applied (Wang et al.
suggest subsampling large images by ``max(1, round(min(H, W) / 256))``; irrelevant for 28-32 px).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.nn import functional as F

from ..errors import ConfigError
from ..triggers.base import Trigger

K1 = 0.01
K2 = 0.03


def _check_pair(x: torch.Tensor, x2: torch.Tensor, who: str) -> None:
    for t in (x, x2):
        if not isinstance(t, torch.Tensor) or t.dim() != 4 or not t.is_floating_point():
            got = f"{tuple(t.shape)} {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise ConfigError(f"{who}: expected float batches (N, C, H, W), got {got}")
    if x.shape != x2.shape:
        raise ConfigError(
            f"{who}: image batches differ in shape: {tuple(x.shape)} vs {tuple(x2.shape)}"
        )


def lp_norms(
    x: torch.Tensor, x2: torch.Tensor, data_range: float = 1.0, *, per_image: bool = False
) -> dict[str, Any]:
    """Mean (or, with ``per_image``, per-image) L0, L2 and L_inf of the change ``x2 - x``.

    Example:
        >>> a = torch.zeros(1, 1, 4, 4); b = a.clone(); b[0, 0, 0, :2] = 0.5
        >>> {k: round(v, 4) for k, v in lp_norms(a, b).items()}
        {'l0': 2.0, 'l2': 0.7071, 'linf': 0.5}
    """
    _check_pair(x, x2, "lp_norms")
    d = (x2.double() - x.double()).flatten(2)  # (N, C, H*W)
    changed = (d.abs() > 0.5 / 255 * data_range).any(1)  # (N, H*W)
    flat = d.flatten(1)
    out = {
        "l0": changed.sum(1).double(),
        "l2": flat.norm(dim=1),
        "linf": flat.abs().amax(1) if flat.shape[1] else flat.new_zeros(len(flat)),
    }
    if per_image:
        return out
    return {k: float(v.mean()) if len(v) else float("nan") for k, v in out.items()}


def psnr(
    x: torch.Tensor, x2: torch.Tensor, data_range: float = 1.0, cap: float | None = None
) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image ``(N,)``; ``inf`` for identical images unless ``cap``.

    Example:
        >>> a = torch.zeros(2, 1, 8, 8)
        >>> [round(v, 4) for v in psnr(a, a + 0.1).tolist()]  # 10 log10(1 / 0.1^2) = 20 dB
        [20.0, 20.0]
    """
    _check_pair(x, x2, "psnr")
    if not data_range > 0:
        raise ConfigError(f"psnr: data_range must be > 0, got {data_range}")
    mse = (x2.double() - x.double()).pow(2).flatten(1).mean(1)
    p = 10 * torch.log10(data_range**2 / mse)  # mse = 0 -> +inf
    if cap is not None:
        p = p.clamp(max=float(cap))
    return p.to(x.dtype)


def gaussian_window(window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """The 1-D Gaussian window ``(window,)`` of Wang et al. 2004, normalised to sum 1 (float64)."""
    if window < 1 or window % 2 != 1:
        raise ConfigError(f"SSIM window must be a positive odd number, got {window}")
    if not sigma > 0:
        raise ConfigError(f"SSIM sigma must be > 0, got {sigma}")
    r = torch.arange(window, dtype=torch.float64) - (window - 1) / 2
    g = torch.exp(-0.5 * (r / sigma) ** 2)
    return g / g.sum()


def ssim(
    x: torch.Tensor,
    x2: torch.Tensor,
    data_range: float = 1.0,
    window: int = 11,
    sigma: float = 1.5,
    *,
    batch_size: int = 1024,
) -> torch.Tensor:
    """Mean SSIM per image ``(N,)`` (Wang et al. 2004; scikit-image's Gaussian convention).

    Example:
        >>> a = torch.rand(2, 3, 16, 16)
        >>> ssim(a, a).tolist()
        [1.0, 1.0]
    """
    _check_pair(x, x2, "ssim")
    n, c, h, w = x.shape
    if h < window or w < window:
        raise ConfigError(f"ssim: {h}x{w} images are smaller than the {window}x{window} window")
    if not data_range > 0:
        raise ConfigError(f"ssim: data_range must be > 0, got {data_range}")
    g = gaussian_window(window, sigma).to(x.device)
    gh, gw = g.view(1, 1, window, 1), g.view(1, 1, 1, window)
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2

    def blur(t: torch.Tensor) -> torch.Tensor:  # separable 'valid' Gaussian filter
        return F.conv2d(F.conv2d(t, gh), gw)

    out = []
    for i in range(0, n, batch_size):
        a = x[i : i + batch_size].double().reshape(-1, 1, h, w)
        b = x2[i : i + batch_size].double().reshape(-1, 1, h, w)
        stats = blur(torch.cat([a, b, a * a, b * b, a * b], 1).view(-1, 1, h, w))
        stats = stats.view(len(a), 5, *stats.shape[-2:])
        ux, uy, uxx, uyy, uxy = stats.unbind(1)
        vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
        out.append(s.flatten(1).mean(1).view(-1, c).mean(1))
    res = torch.cat(out) if out else torch.empty(0, dtype=torch.float64)
    return res.to(x.dtype)


def stealth_report(
    trigger: Trigger,
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    data_range: float = 1.0,
) -> dict[str, Any]:
    """Mean L0, L2, L_inf, PSNR (over changed images) and SSIM of applying ``trigger`` to ``x``.

    The triggered images are clamped to ``[0, data_range]`` as the attacks do. ``unchanged`` counts
    images the trigger left identical (excluded from the PSNR mean; PSNR is ``inf`` if all are).
    """
    x2 = trigger(x, generator).clamp(0, data_range)
    norms = lp_norms(x, x2, data_range)
    p = psnr(x, x2, data_range).double()
    finite = torch.isfinite(p)
    return {
        **norms,
        "psnr": float(p[finite].mean()) if finite.any() else math.inf,
        "ssim": float(ssim(x, x2, data_range).double().mean()) if len(x) else float("nan"),
        "n": len(x),
        "unchanged": int((~finite).sum()),
    }

"""Metrics: stealth of a trigger (L_p norms, PSNR, SSIM) and the one detection protocol."""

from __future__ import annotations

from .detection import (
    auroc,
    detection_report,
    measure,
    precision_recall,
    repair_report,
    threshold_at_fpr,
    tpr_at_fpr,
)
from .stealth import gaussian_window, lp_norms, psnr, ssim, stealth_report

__all__ = [
    "auroc",
    "detection_report",
    "gaussian_window",
    "lp_norms",
    "measure",
    "precision_recall",
    "psnr",
    "repair_report",
    "ssim",
    "stealth_report",
    "threshold_at_fpr",
    "tpr_at_fpr",
]

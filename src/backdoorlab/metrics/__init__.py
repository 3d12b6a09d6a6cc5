"""Metrics: stealth of a trigger (L_p norms, PSNR, SSIM) and the one detection protocol."""

from __future__ import annotations

from .detection import (
    MAD_SCALE,
    anomaly_index,
    attack_success_rate,
    auroc,
    der,
    detection_report,
    frr_far,
    measure,
    median_mad,
    precision_recall,
    repair_report,
    robust_accuracy,
    threshold_at_fpr,
    tpr_at_fpr,
)
from .stealth import gaussian_window, lp_norms, psnr, ssim, stealth_report

__all__ = [
    "MAD_SCALE",
    "anomaly_index",
    "attack_success_rate",
    "auroc",
    "der",
    "detection_report",
    "frr_far",
    "gaussian_window",
    "lp_norms",
    "measure",
    "median_mad",
    "precision_recall",
    "psnr",
    "repair_report",
    "robust_accuracy",
    "ssim",
    "stealth_report",
    "threshold_at_fpr",
    "tpr_at_fpr",
]

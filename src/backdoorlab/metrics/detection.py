"""One detection protocol for every defense: AUROC, TPR at fixed FPR, precision/recall and FRR/FAR at
a threshold, the MAD anomaly index, attack success rate, robust accuracy, repair effectiveness (DER),
wall time and peak memory.

Scores follow one convention everywhere: higher means "more likely triggered / poisoned", and a
detector flags an input when ``score > threshold``.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import ConfigError

# Normal-consistency constant of the MAD: 1 / Phi^-1(3/4), so 1.4826 * MAD estimates a normal sd.
MAD_SCALE = 1.4826


def _as_float(t: torch.Tensor | Any) -> torch.Tensor:
    return torch.as_tensor(t).detach().double().flatten().cpu()


def auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (1 = positive), ties counted half.

    Equals the probability that a random positive scores above a random negative (Mann-Whitney U).

    Example:
        >>> auroc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1]))
        0.75
    """
    s, y = _as_float(scores), torch.as_tensor(labels).flatten().bool().cpu()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    # average ranks (ties get the mean rank)
    order = torch.argsort(s)
    sorted_s = s[order]
    ranks = torch.empty_like(s)
    ranks[order] = torch.arange(1, len(s) + 1, dtype=torch.float64)
    uniq, inv, counts = torch.unique(sorted_s, return_inverse=True, return_counts=True)
    if len(uniq) < len(s):
        first = torch.cumsum(counts, 0) - counts + 1
        mean_rank = first.double() + (counts.double() - 1) / 2
        ranks[order] = mean_rank[inv]
    u = float(ranks[y].sum()) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def _allowed_negatives(n: int, fpr: float) -> int:
    """The largest ``k`` in ``[0, n]`` with ``k / n <= fpr`` (float division, as ROC curves compute it)."""
    if not fpr >= 0:  # negative or NaN
        return 0
    if fpr >= 1:
        return n
    k = math.floor(fpr * n)
    while k < n and (k + 1) / n <= fpr:  # fpr * n rounded down below an integer (0.29 * 100)
        k += 1
    while k > 0 and k / n > fpr:
        k -= 1
    return k


def threshold_at_fpr(negative_scores: torch.Tensor, fpr: float) -> float:
    """The lowest threshold ``t`` with at most a fraction ``fpr`` of ``negative_scores`` above it (``> t``).

    ``t`` is the ``(k+1)``-th largest negative score, ``k = max{k : k / n <= fpr}``; ties at ``t`` stay
    below it, so the realised FPR may be lower than ``fpr`` but never higher; ``-inf`` when every
    negative may lie above (``fpr >= 1``), ``inf`` for no negatives. Used both to score a detector
    (FPR on clean test data) and, by detectors themselves, to set a threshold from clean samples at
    a chosen false-rejection rate (FRR).
    """
    s = torch.sort(_as_float(negative_scores), descending=True).values
    if len(s) == 0:
        return math.inf
    k = _allowed_negatives(len(s), fpr)  # number of negatives allowed above the threshold
    return -math.inf if k >= len(s) else float(s[k])


def tpr_at_fpr(scores: torch.Tensor, labels: torch.Tensor, fpr: float) -> float:
    """True-positive rate at the threshold that keeps the false-positive rate <= ``fpr``.

    The highest TPR over the ROC points with FPR <= ``fpr`` (``sklearn.metrics.roc_curve``'s), NaN
    when one class is missing.
    """
    s, y = _as_float(scores), torch.as_tensor(labels).flatten().bool().cpu()
    if y.all() or (~y).all():
        return float("nan")
    thr = threshold_at_fpr(s[~y], fpr)
    return float((s[y] > thr).double().mean())


def precision_recall(
    scores: torch.Tensor, labels: torch.Tensor, threshold: float
) -> dict[str, float]:
    """Precision, recall (TPR), FPR and F1 of the rule ``score > threshold``."""
    s, y = _as_float(scores), torch.as_tensor(labels).flatten().bool().cpu()
    pred = s > threshold
    tp = int((pred & y).sum())
    fp = int((pred & ~y).sum())
    fn = int((~pred & y).sum())
    tn = int((~pred & ~y).sum())
    prec = tp / (tp + fp) if tp + fp else float("nan")
    rec = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * prec * rec / (prec + rec) if tp else 0.0
    return {
        "precision": prec,
        "recall": rec,
        "fpr": fp / (fp + tn) if fp + tn else float("nan"),
        "f1": f1,
    }


def frr_far(
    clean_scores: torch.Tensor, triggered_scores: torch.Tensor, threshold: float
) -> tuple[float, float]:
    """``(FRR, FAR)`` of the rule ``score > threshold``: clean inputs flagged, triggered ones missed.

    FRR (false rejection rate) = fraction of clean inputs flagged (the FPR); FAR (false acceptance
    rate) = fraction of triggered inputs not flagged (1 - TPR), as STRIP (Gao et al., ACSAC 2019)
    reports them. NaN for an empty set.
    """
    c, t = _as_float(clean_scores), _as_float(triggered_scores)
    frr = float((c > threshold).double().mean()) if len(c) else float("nan")
    far = float((t <= threshold).double().mean()) if len(t) else float("nan")
    return frr, far


def detection_report(
    scores: torch.Tensor, labels: torch.Tensor, threshold: float | None = None
) -> dict[str, float]:
    """The protocol's figures for a detector: AUROC, TPR at 1%/5% FPR; P/R, FRR/FAR at ``threshold``."""
    s, y = _as_float(scores), torch.as_tensor(labels).flatten().bool().cpu()
    out = {
        "auroc": auroc(s, y),
        "tpr_at_1fpr": tpr_at_fpr(s, y, 0.01),
        "tpr_at_5fpr": tpr_at_fpr(s, y, 0.05),
        "n_positive": int(y.sum()),
        "n_negative": int((~y).sum()),
    }
    if threshold is not None:
        out["threshold"] = float(threshold)
        out.update(precision_recall(s, y, threshold))
        out["frr"], out["far"] = frr_far(s[~y], s[y], threshold)
    return out


def median_mad(values: torch.Tensor) -> tuple[float, float]:
    """``(median, 1.4826 * MAD)``: the median and the normal-consistent median absolute deviation.

    Medians are ``torch.quantile(., 0.5)``: the mean of the two middle values for an even count.
    """
    v = _as_float(values)
    if len(v) == 0:
        raise ConfigError("median_mad: no values")
    med = float(torch.quantile(v, 0.5))
    return med, MAD_SCALE * float(torch.quantile((v - med).abs(), 0.5))


def anomaly_index(values: torch.Tensor, *, signed: bool = False) -> torch.Tensor:
    """MAD anomaly index ``|x - median| / (1.4826 * MAD)`` of each value (float64, flattened).

    Neural Cleanse (Wang et al., S&P 2019, Sec. IV-C) flags a label whose index exceeds 2.
    ``signed=True`` gives ``(median - x) / (1.4826 * MAD)``: positive below the median (NC's
    suspicious side, small triggers). A zero MAD is floored at ``max(1e-6 * |median|, 1e-12)`` so
    that the index stays finite (and JSON-safe) yet huge for any value that does differ.
    """
    v = _as_float(values)
    med, mad = median_mad(v)
    scale = mad if mad > 0 else max(1e-6 * abs(med), 1e-12)
    d = med - v
    return (d if signed else d.abs()) / scale


def _rate(pred: torch.Tensor, want: torch.Tensor, eligible: torch.Tensor | None, who: str) -> float:
    p = torch.as_tensor(pred).flatten().cpu()
    w = torch.as_tensor(want).flatten().cpu()
    if p.shape != w.shape:
        raise ConfigError(f"{who}: {len(p)} predictions but {len(w)} labels")
    if eligible is not None:
        m = torch.as_tensor(eligible).flatten().bool().cpu()
        if m.shape != p.shape:
            raise ConfigError(f"{who}: {len(p)} predictions but an eligible mask of {len(m)}")
        p, w = p[m], w[m]
    return float((p == w).double().mean()) if len(p) else float("nan")


def attack_success_rate(
    pred: torch.Tensor, target: torch.Tensor, eligible: torch.Tensor | None = None
) -> float:
    """ASR: fraction of triggered eligible inputs classified as their backdoor ``target`` label.

    Eligible (``TargetMap.eligible``): all-to-one excludes target-class inputs, all-to-all counts all
    (``target = (y + 1) mod K``), source-specific only the source classes. ``eligible`` (bool mask)
    selects them when ``pred`` covers every input; NaN when none is eligible.
    """
    return _rate(pred, target, eligible, "attack_success_rate")


def robust_accuracy(
    pred: torch.Tensor, y_true: torch.Tensor, eligible: torch.Tensor | None = None
) -> float:
    """RA: fraction of triggered eligible inputs still classified as their true label ``y_true``.

    Same inputs as the ASR (BackdoorBench, Wu et al., NeurIPS 2022 Datasets and Benchmarks);
    NaN when none is eligible.
    """
    return _rate(pred, y_true, eligible, "robust_accuracy")


def der(ca_before: float, ca_after: float, asr_before: float, asr_after: float) -> float:
    """Defense effectiveness rating ``[max(0, dASR) - max(0, dCA) + 1] / 2`` in [0, 1].

    ``dASR = asr_before - asr_after``, ``dCA = ca_before - ca_after``: Zhu et al., "Enhancing
    Fine-Tuning Based Backdoor Defense with Sharpness-Aware Minimization" (ICCV 2023) and
    BackdoorBench. A CA drop LOWERS the rating (some code adds it; that is a sign error): 1 = a
    perfect backdoor removed at no accuracy cost, 0.5 = no change, 0 = all accuracy lost, no ASR drop.
    """
    return (max(0.0, asr_before - asr_after) - max(0.0, ca_before - ca_after) + 1.0) / 2.0


def repair_report(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CA, ASR (and RA when both dicts have ``"ra"``) before/after a repair, ``effectiveness`` and ``der``.

    ``effectiveness`` = ASR drop minus CA drop (both in [0, 1]); 1 would remove a perfect backdoor at
    no accuracy cost, <= 0 means the repair cost more accuracy than it removed backdoor. ``der`` is
    the defense effectiveness rating (:func:`der`).
    """
    ca_drop = before["clean_acc"] - after["clean_acc"]
    asr_drop = before["asr"] - after["asr"]
    out = {
        "clean_acc_before": before["clean_acc"],
        "asr_before": before["asr"],
        "clean_acc_after": after["clean_acc"],
        "asr_after": after["asr"],
        "clean_acc_drop": ca_drop,
        "asr_drop": asr_drop,
        "effectiveness": asr_drop - max(ca_drop, 0.0),
        "der": der(before["clean_acc"], after["clean_acc"], before["asr"], after["asr"]),
    }
    if "ra" in before and "ra" in after:
        out["ra_before"] = before["ra"]
        out["ra_after"] = after["ra"]
    return out


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


@dataclass
class Cost:
    """Wall time and peak memory of a block (filled when the block exits)."""

    seconds: float = 0.0
    peak_mem_mb: float = 0.0

    def to_json(self) -> dict[str, float]:
        """``{"seconds", "peak_mem_mb"}``."""
        return {"seconds": self.seconds, "peak_mem_mb": self.peak_mem_mb}


@contextlib.contextmanager
def measure(interval: float = 0.005) -> Iterator[Cost]:
    """Measure wall time and peak extra resident memory (MB above the start, sampled; CUDA peak too).

    Example:
        >>> with measure() as cost:
        ...     _ = torch.zeros(10_000_000).sum()
        >>> cost.seconds > 0
        True
    """
    cost = Cost()
    base = _rss_bytes()
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(interval):
            peak[0] = max(peak[0], _rss_bytes())

    th = threading.Thread(target=sample, daemon=True)
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    th.start()
    try:
        yield cost
    finally:
        stop.set()
        th.join()
        peak[0] = max(peak[0], _rss_bytes())
        cost.seconds = time.perf_counter() - t0
        cost.peak_mem_mb = (peak[0] - base) / 2**20
        if cuda:
            cost.peak_mem_mb = max(cost.peak_mem_mb, torch.cuda.max_memory_allocated() / 2**20)

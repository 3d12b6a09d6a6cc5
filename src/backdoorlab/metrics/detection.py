"""One detection protocol for every defense: AUROC, TPR at fixed FPR, precision/recall at a
threshold, repair effectiveness, wall time and peak memory.

Scores follow one convention everywhere: higher means "more likely triggered / poisoned".
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch


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


def threshold_at_fpr(negative_scores: torch.Tensor, fpr: float) -> float:
    """The threshold above which at most a fraction ``fpr`` of ``negative_scores`` lie.

    Used both to score a detector (FPR on clean test data) and, by detectors themselves, to set a
    threshold from clean samples at a chosen false-rejection rate (FRR).
    """
    s = torch.sort(_as_float(negative_scores), descending=True).values
    if len(s) == 0:
        return float("inf")
    k = int(fpr * len(s))  # number of negatives allowed above the threshold
    if k <= 0:
        return float(s[0])
    if k >= len(s):
        return float(s[-1]) - 1e-12
    return float(s[k])


def tpr_at_fpr(scores: torch.Tensor, labels: torch.Tensor, fpr: float) -> float:
    """True-positive rate at the threshold that keeps the false-positive rate <= ``fpr``."""
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


def detection_report(
    scores: torch.Tensor, labels: torch.Tensor, threshold: float | None = None
) -> dict[str, float]:
    """The protocol's figures for an input or data detector: AUROC, TPR at 1%/5% FPR, P/R at threshold."""
    out = {
        "auroc": auroc(scores, labels),
        "tpr_at_1fpr": tpr_at_fpr(scores, labels, 0.01),
        "tpr_at_5fpr": tpr_at_fpr(scores, labels, 0.05),
        "n_positive": int(torch.as_tensor(labels).bool().sum()),
        "n_negative": int((~torch.as_tensor(labels).bool()).sum()),
    }
    if threshold is not None:
        out["threshold"] = float(threshold)
        out.update(precision_recall(scores, labels, threshold))
    return out


def repair_report(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CA and ASR before/after a repair and the defense-effectiveness figure.

    ``effectiveness`` = ASR drop minus CA drop (both in [0, 1]); 1 would remove a perfect backdoor at
    no accuracy cost, <= 0 means the repair cost more accuracy than it removed backdoor.
    """
    ca_drop = before["clean_acc"] - after["clean_acc"]
    asr_drop = before["asr"] - after["asr"]
    return {
        "clean_acc_before": before["clean_acc"],
        "asr_before": before["asr"],
        "clean_acc_after": after["clean_acc"],
        "asr_after": after["asr"],
        "clean_acc_drop": ca_drop,
        "asr_drop": asr_drop,
        "effectiveness": asr_drop - max(ca_drop, 0.0),
    }


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

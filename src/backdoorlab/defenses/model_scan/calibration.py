"""Scanner scores as false-positive rates against clean reference models, and one combined verdict.

Each model scanner has its own score scale (Neural Cleanse / TABOR: a mask-norm ratio >= 1; ABS:
a REASR relative to its threshold), so "the largest score" of ``scan --method all`` mixes scales. Here a score is
turned into a **p-value**: the estimated false-positive rate of flagging at that score, i.e. the
probability that a *clean* model scores at least as high, estimated from the scores of clean
reference models shipped with the package (``reference_scores.json``, written by
``benchmarks/calibrate_scan_reference.py``: clean Fashion-MNIST models of six architectures and
several seeds, each scanned at the scanner's defaults with 20 clean test images per class).

The tail model. With n ~ 20 references an empirical rate cannot go below 1 / (n + 1) ~ 0.05, which
after a Bonferroni correction over three scanners could never flag. So a simple parametric tail is
fitted to the transformed clean scores: ``z = T(score)``, the clean ``z`` are taken as normal with
unknown mean and variance, and the p-value is the upper tail of the **predictive** distribution of
one more clean model: Student's t with n - 1 degrees of freedom, location the reference mean, scale
``sd * sqrt(1 + 1/n)`` (wider than a plain normal fit: it accounts for the mean and sd being
estimated from few models). The transform per method (``TRANSFORMS``):

* ``nc``, ``tabor`` -- ``log(score)``: the score is the ratio of the second-smallest to the smallest
  reversed-mask norm, a positive ratio (>= 1) whose clean values are right-skewed (most near 1-1.5,
  a few near 2); on the log scale they are roughly symmetric, and a trojan's ratio (3-8) lies
  several reference sds out.
* ``abs`` -- ``log(score)``: ABS's score is its larger REASR divided by that REASR's own threshold
  (pixel 0.95, filter 0.6; flagged at >= 1), a positive ratio like the others. (The ``logit``
  transform stays available for a raw REASR in [0, 1], clipped to ``[REASR_EPS, 1 - REASR_EPS]``.)
  The shipped references were converted from the cached raw REASRs (``raw_reasr`` in the JSON).

The reported p-value is ``max(tail, P_FLOOR)`` (1e-6: the fitted tail is not trusted further out
than that). A scanner run with non-default options (e.g. NC's ``criterion="mad"``, whose score is
an anomaly index) is not on the references' scale; pass its scores only at the defaults.

Combining. ``combine`` is the Bonferroni bound over the m scanners that have references:
``min(1, m * min_i p_i)``, valid whatever the dependence between scanners (they look at the same
model, so their scores are correlated). The combined verdict is "backdoored" when the combined
p-value is at most ``ALPHA`` (0.05), and the combined score ``1 - p`` is comparable across models and
agrees with the verdict (flagged exactly when ``score >= 1 - ALPHA``). A scanner without references
is left out of the combination with a note (``combined_verdict``); asking for its p-value directly
raises a ``ConfigError``. Pure Python (no torch).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from importlib import resources
from typing import Any

from ...errors import ConfigError

ALPHA = 0.05
P_FLOOR = 1e-6
REASR_EPS = 0.005  # about 1/200: the REASR of one image among the ~200 scored
TRANSFORMS: dict[str, str] = {"nc": "log", "tabor": "log", "abs": "log"}
REFERENCE_FILE = "reference_scores.json"

__all__ = [
    "ALPHA",
    "P_FLOOR",
    "TRANSFORMS",
    "combine",
    "combined_verdict",
    "methods_with_references",
    "p_value",
    "reference_scores",
    "tail_fit",
]


@lru_cache(maxsize=1)
def _references() -> dict[str, Any]:
    """The shipped reference document (``reference_scores.json``), read once."""
    try:
        text = resources.files(__package__).joinpath(REFERENCE_FILE).read_text()
    except (FileNotFoundError, OSError):
        return {"methods": {}}
    doc: dict[str, Any] = json.loads(text)
    return doc


def methods_with_references() -> list[str]:
    """Scanner names that have clean reference scores (and a tail model)."""
    return [
        m
        for m, v in _references().get("methods", {}).items()
        if len(v.get("scores", [])) >= 3 and m in TRANSFORMS
    ]


def reference_scores(method: str) -> list[float]:
    """The shipped clean-model scores of ``method``; a ``ConfigError`` when there are none."""
    entry = _references().get("methods", {}).get(method)
    if not entry or len(entry.get("scores", [])) < 3 or method not in TRANSFORMS:
        known = ", ".join(methods_with_references()) or "none"
        raise ConfigError(
            f"scanner {method!r} has no clean reference scores to calibrate against "
            f"(calibrated: {known}); run benchmarks/calibrate_scan_reference.py"
        )
    return [float(s) for s in entry["scores"]]


def _transform(method: str, score: float) -> float:
    how = TRANSFORMS.get(method)
    if how == "log":
        return math.log(max(float(score), 1e-12))
    if how == "logit":
        s = min(max(float(score), REASR_EPS), 1.0 - REASR_EPS)
        return math.log(s / (1.0 - s))
    raise ConfigError(f"scanner {method!r}: no tail model (known: {', '.join(TRANSFORMS)})")


def tail_fit(method: str, references: Sequence[float] | None = None) -> dict[str, float]:
    """The tail model of ``method``: mean, sd and count of the transformed reference scores,
    the predictive scale ``sd * sqrt(1 + 1/n)`` and the t degrees of freedom ``n - 1``."""
    refs = list(reference_scores(method) if references is None else references)
    if len(refs) < 3:
        raise ConfigError(f"scanner {method!r}: need at least 3 reference scores, got {len(refs)}")
    z = [_transform(method, s) for s in refs]
    n = len(z)
    mean = sum(z) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in z) / (n - 1))
    sd = max(sd, 1e-6)
    return {"mean": mean, "sd": sd, "n": n, "scale": sd * math.sqrt(1 + 1 / n), "df": n - 1}


def p_value(method: str, score: float, references: Sequence[float] | None = None) -> float:
    """Estimated false-positive rate of ``score`` for ``method``: the upper tail, at ``score``, of the
    predictive distribution of a clean model's score (see the module docstring), at least
    ``P_FLOOR``. ``references`` overrides the shipped clean scores."""
    if not math.isfinite(float(score)):
        raise ConfigError(f"scanner {method!r}: score must be finite, got {score}")
    fit = tail_fit(method, references)
    t = (_transform(method, score) - fit["mean"]) / fit["scale"]
    return max(t_sf(t, fit["df"]), P_FLOOR)


def combine(p_values: Sequence[float]) -> float:
    """Bonferroni: ``min(1, m * min_i p_i)`` over the ``m`` p-values."""
    ps = [float(p) for p in p_values]
    if not ps:
        raise ConfigError("combine: no p-values to combine")
    if any(not 0.0 <= p <= 1.0 for p in ps):
        raise ConfigError(f"combine: p-values must be in [0, 1], got {ps}")
    return min(1.0, len(ps) * min(ps))


def combined_verdict(scores: Mapping[str, float], alpha: float = ALPHA) -> dict[str, Any]:
    """One verdict from several scanners' scores (``{method: score}``, at the scanners' defaults).

    Returns ``p_values`` (per calibrated method), ``p`` (Bonferroni-combined), ``score`` (= 1 - p,
    comparable across models), ``flagged`` (``p <= alpha``), ``alpha``, ``used`` and
    ``excluded`` (method -> why it was left out)."""
    calibrated = set(methods_with_references())
    ps = {m: p_value(m, s) for m, s in scores.items() if m in calibrated}
    excluded = {
        m: "no clean reference scores; not part of the combined p-value"
        for m in scores
        if m not in calibrated
    }
    if not ps:
        raise ConfigError(
            f"none of the scanners {', '.join(scores) or '(none)'} has clean reference scores "
            f"(calibrated: {', '.join(sorted(calibrated)) or 'none'})"
        )
    p = combine(list(ps.values()))
    return {
        "p_values": ps,
        "p": p,
        "score": 1.0 - p,
        "flagged": p <= alpha,
        "alpha": alpha,
        "used": list(ps),
        "excluded": excluded,
    }


# --------------------------------------------------------------------------- Student's t tail


def t_sf(t: float, df: float) -> float:
    """Upper tail ``P(T > t)`` of Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ConfigError(f"t_sf: degrees of freedom must be positive, got {df}")
    x = df / (df + t * t)
    half = 0.5 * _betainc(0.5 * df, 0.5, x)  # P(|T| > |t|) / 2
    return half if t >= 0 else 1.0 - half


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta ``I_x(a, b)`` (continued fraction, Numerical Recipes 6.4)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    ln_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(ln_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(ln_front) * _betacf(b, a, 1.0 - x) / b


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h

"""Calibrated scanner scores: p-values against clean references, Bonferroni combination."""

from __future__ import annotations

import itertools
import math

import pytest

from backdoorlab.defenses.model_scan import calibration as cal
from backdoorlab.errors import ConfigError

# made-up clean reference scores on each scanner's scale
RATIOS = [1.05, 1.1, 1.2, 1.25, 1.3, 1.4, 1.5, 1.6, 1.8, 2.1]
REASRS = [0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 0.8]


@pytest.mark.parametrize(
    ("method", "refs", "grid"),
    [
        ("nc", RATIOS, [1.0, 1.2, 1.5, 2.0, 3.0, 5.0, 10.0, 100.0]),
        ("abs", REASRS, [0.0, 0.1, 0.4, 0.6, 0.8, 0.9, 0.95, 1.0]),
    ],
)
def test_p_value_is_monotone_and_bounded(method: str, refs: list[float], grid: list[float]) -> None:
    ps = [cal.p_value(method, s, refs) for s in grid]
    assert all(a >= b for a, b in itertools.pairwise(ps)), ps
    assert ps[0] > ps[-1]
    assert all(cal.P_FLOOR <= p <= 1 for p in ps)


def test_reference_typical_score_gives_large_p_and_outlier_small_p() -> None:
    z = sorted(math.log(r) for r in RATIOS)
    median = math.exp(z[len(z) // 2])
    assert cal.p_value("nc", median, RATIOS) > 0.3
    assert cal.p_value("tabor", min(RATIOS), RATIOS) > 0.8
    # a trojan-like ratio (the next label's trigger 6x larger) is far out
    assert cal.p_value("nc", 6.0, RATIOS) < 0.01
    assert cal.p_value("abs", 1.0, REASRS) < cal.p_value("abs", 0.8, REASRS) < 0.5


def test_floor() -> None:
    assert cal.p_value("nc", 1e9, RATIOS) == cal.P_FLOOR


def test_p_value_matches_the_empirical_rate_roughly() -> None:
    # the largest of 10 references: about 1 in 10 clean models score higher
    p = cal.p_value("nc", max(RATIOS), RATIOS)
    assert 0.02 < p < 0.25


def test_combine_is_bonferroni() -> None:
    assert cal.combine([0.01, 0.5, 0.9]) == pytest.approx(0.03)
    assert cal.combine([0.2]) == pytest.approx(0.2)
    assert cal.combine([0.6, 0.7]) == 1.0
    with pytest.raises(ConfigError, match="no p-values"):
        cal.combine([])
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        cal.combine([1.5])


def test_t_tail_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    for df in (2, 5, 14, 30):
        for t in (-3.0, -0.5, 0.0, 0.7, 2.0, 6.0, 15.0):
            assert cal.t_sf(t, df) == pytest.approx(float(stats.t.sf(t, df)), rel=1e-7, abs=1e-14)


def test_shipped_references_and_combined_verdict() -> None:
    methods = cal.methods_with_references()
    assert {"nc", "tabor", "abs"} <= set(methods)
    for m in methods:
        refs = cal.reference_scores(m)
        assert len(refs) >= 10
        # a clean reference's own median score is far from flagging
        assert cal.p_value(m, sorted(refs)[len(refs) // 2]) > 0.2
    typical = {
        m: sorted(cal.reference_scores(m))[len(cal.reference_scores(m)) // 2] for m in methods
    }
    v = cal.combined_verdict(typical)
    assert not v["flagged"] and v["score"] == pytest.approx(1 - v["p"])
    assert v["p"] == pytest.approx(cal.combine(list(v["p_values"].values())))
    out = cal.combined_verdict({**typical, "nc": 50.0, "mystery": 3.0})
    assert out["flagged"] and out["p"] <= cal.ALPHA and out["score"] >= 1 - cal.ALPHA
    assert "mystery" in out["excluded"] and "mystery" not in out["used"]


def test_verdict_agrees_with_score() -> None:
    methods = cal.methods_with_references()
    for nc_score in (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 8.0):
        v = cal.combined_verdict({m: (nc_score if m == "nc" else 0.0) for m in methods})
        assert v["flagged"] == (v["score"] >= 1 - cal.ALPHA)


def test_unknown_method_errors() -> None:
    with pytest.raises(ConfigError, match="mystery"):
        cal.reference_scores("mystery")
    with pytest.raises(ConfigError, match="mystery"):
        cal.p_value("mystery", 1.0)
    with pytest.raises(ConfigError, match="none of the scanners mystery"):
        cal.combined_verdict({"mystery": 1.0})
    with pytest.raises(ConfigError, match="at least 3"):
        cal.p_value("nc", 2.0, [1.1, 1.2])

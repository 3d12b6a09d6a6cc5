"""Detection and backdoor metrics: hand-computed cases and seeded random cases against scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from backdoorlab.attacks import PoisoningAttack
from backdoorlab.data import ImageData
from backdoorlab.errors import ConfigError
from backdoorlab.metrics import (
    anomaly_index,
    attack_success_rate,
    auroc,
    der,
    detection_report,
    frr_far,
    median_mad,
    precision_recall,
    repair_report,
    robust_accuracy,
    threshold_at_fpr,
    tpr_at_fpr,
)
from backdoorlab.train import evaluate
from backdoorlab.triggers.base import Trigger

N_RANDOM = 200  # seeded random cases per comparison
TOL = 1e-9
FPRS = (0.0, 0.01, 0.05, 0.1, 0.25, 0.29, 0.3, 0.5, 0.7, 1.0)


def t(v: list[float]) -> torch.Tensor:
    """A float64 tensor of ``v``."""
    return torch.tensor(v, dtype=torch.float64)


# --- hand-computed cases --------------------------------------------------------------------------


def test_auroc_hand_computed_with_ties() -> None:
    assert auroc(t([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1])) == 0.75
    # pos 2 vs neg {1, 2}: 1 + 1/2; pos 3 vs neg {1, 2}: 2 -> 3.5 / 4
    assert auroc(t([1, 2, 2, 3]), torch.tensor([0, 0, 1, 1])) == 0.875
    # pos {2, 2} vs neg {2, 1, 3}: each (1/2 + 1 + 0) -> 3 / 6
    assert auroc(t([2, 2, 2, 1, 3]), torch.tensor([1, 1, 0, 0, 0])) == 0.5


def test_auroc_all_equal_perfect_reversed_and_one_class() -> None:
    y = torch.tensor([0, 1, 0, 1, 1])
    assert auroc(torch.full((5,), 0.3), y) == 0.5
    assert auroc(t([0.1, 0.9, 0.2, 0.8, 0.7]), y) == 1.0
    assert auroc(t([0.9, 0.1, 0.8, 0.2, 0.3]), y) == 0.0
    assert math.isnan(auroc(t([0.1, 0.2]), torch.tensor([1, 1])))


def test_threshold_at_fpr_hand_computed() -> None:
    neg = t(list(range(1, 11)))  # 1..10
    assert threshold_at_fpr(neg, 0.2) == 8.0  # 9 and 10 lie above
    assert threshold_at_fpr(neg, 0.0) == 10.0  # nothing above the largest
    assert threshold_at_fpr(neg, 1.0) == -math.inf  # everything may lie above
    assert threshold_at_fpr(t([]), 0.1) == math.inf
    # 0.29 * 100 = 28.999999999999996 in floating point: still 29 negatives allowed above
    thr = threshold_at_fpr(torch.arange(100.0), 0.29)
    assert int((torch.arange(100.0) > thr).sum()) == 29
    # ties: the three 5s go above together or not at all; FPR 3/4 > 1/2, so none goes above
    assert threshold_at_fpr(t([5, 5, 5, 1]), 0.5) == 5.0


def test_tpr_at_fpr_hand_computed() -> None:
    scores = t([0.1, 0.2, 0.3, 0.4, 0.35, 0.5, 0.05])
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    assert tpr_at_fpr(scores, labels, 0.25) == pytest.approx(2 / 3)  # threshold 0.3
    assert tpr_at_fpr(scores, labels, 0.0) == pytest.approx(1 / 3)  # threshold 0.4
    assert tpr_at_fpr(scores, labels, 1.0) == 1.0
    assert tpr_at_fpr(torch.full((7,), 0.5), labels, 0.5) == 0.0  # all tied: no point in between
    assert math.isnan(tpr_at_fpr(scores, torch.zeros(7), 0.1))


def test_precision_recall_and_frr_far_hand_computed() -> None:
    clean, trig = t([0.1, 0.5, 0.9]), t([0.4, 0.6, 0.95, 0.5])
    frr, far = frr_far(clean, trig, 0.5)
    assert frr == pytest.approx(1 / 3)  # 0.9 flagged (> 0.5)
    assert far == 0.5  # 0.4 and 0.5 (not > 0.5) missed
    scores = torch.cat([clean, trig])
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    pr = precision_recall(scores, labels, 0.5)  # tp 2, fp 1, fn 2, tn 2
    assert pr == pytest.approx({"precision": 2 / 3, "recall": 0.5, "fpr": 1 / 3, "f1": 4 / 7})
    rep = detection_report(scores, labels, 0.5)
    assert rep["frr"] == pytest.approx(rep["fpr"]) and rep["far"] == pytest.approx(
        1 - rep["recall"]
    )
    assert (rep["n_positive"], rep["n_negative"]) == (4, 3)
    assert "frr" not in detection_report(scores, labels)
    assert all(math.isnan(v) for v in frr_far(t([]), t([]), 0.0))


def test_anomaly_index_hand_computed_and_zero_mad() -> None:
    v = t([10, 50, 52, 48, 51])
    med, mad = median_mad(v)
    # |v - 50| = 40, 0, 2, 2, 1 -> median 2
    assert (med, mad) == (50.0, pytest.approx(2 * 1.4826))
    expect = t([40, 0, 2, 2, 1]) / (2 * 1.4826)
    assert torch.allclose(anomaly_index(v), expect, rtol=0, atol=1e-12)
    signed = anomaly_index(v, signed=True)
    assert float(signed[0]) > 0 > float(signed[2])  # below the median is positive
    assert torch.allclose(signed.abs(), expect, rtol=0, atol=1e-12)
    assert median_mad(t([1, 2, 3, 4]))[0] == 2.5  # even count: mean of the two middle values
    flat = anomaly_index(t([3, 3, 3, 3, 7]))  # zero MAD: floored, finite, huge for the outlier
    assert torch.isfinite(flat).all() and float(flat[4]) > 1e5 and float(flat[:4].abs().max()) == 0
    with pytest.raises(ConfigError, match="no values"):
        median_mad(t([]))


def test_der_penalises_clean_accuracy_drop() -> None:
    # same ASR change (1.0 -> 0.1); the repair that costs 20 points of CA must rate LOWER
    keeps_ca = der(0.9, 0.9, 1.0, 0.1)
    drops_ca = der(0.9, 0.7, 1.0, 0.1)
    assert keeps_ca == pytest.approx((0.9 - 0 + 1) / 2)
    assert drops_ca == pytest.approx((0.9 - 0.2 + 1) / 2)
    assert drops_ca < keeps_ca
    assert der(0.9, 0.95, 0.2, 0.6) == 0.5  # CA gain and ASR rise are both clipped at 0
    assert der(1.0, 0.0, 0.0, 0.0) == 0.0 and der(0.5, 0.5, 1.0, 0.0) == 1.0


def test_repair_report_has_der_and_ra_when_given() -> None:
    before = {"clean_acc": 0.9, "asr": 1.0, "ra": 0.05}
    after = {"clean_acc": 0.7, "asr": 0.1, "ra": 0.6}
    rep = repair_report(before, after)
    assert rep["der"] == der(0.9, 0.7, 1.0, 0.1)
    assert (rep["ra_before"], rep["ra_after"]) == (0.05, 0.6)
    assert rep["asr_drop"] == pytest.approx(0.9) and rep["clean_acc_drop"] == pytest.approx(0.2)
    plain = repair_report({"clean_acc": 0.9, "asr": 1.0}, {"clean_acc": 0.7, "asr": 0.1})
    assert "ra_before" not in plain and plain["der"] == rep["der"]


def test_asr_ra_on_predictions_with_eligible_mask() -> None:
    y = torch.tensor([0, 1, 2, 3])
    pred = torch.tensor([0, 0, 2, 1])
    eligible = y != 0
    assert attack_success_rate(pred, torch.zeros(4), eligible) == pytest.approx(1 / 3)
    assert robust_accuracy(pred, y, eligible) == pytest.approx(1 / 3)
    assert robust_accuracy(pred, y) == 0.5
    assert math.isnan(attack_success_rate(pred, y, torch.zeros(4, dtype=torch.bool)))
    with pytest.raises(ConfigError, match="3 labels"):
        robust_accuracy(pred, y[:3])
    with pytest.raises(ConfigError, match="mask"):
        attack_success_rate(pred, y, eligible[:2])


# --- ASR / RA denominators through evaluate() with a hand-built model ---------------------------


class Flag(Trigger):
    """Sets pixel (0, 0, 0) to 1: the hand-built model reads it as "triggered"."""

    name = "flag"

    def apply(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        out = x.clone()
        out[:, 0, 0, 0] = 1.0
        return out


class Table(torch.nn.Module):
    """Predicts ``clean[i]`` or ``trig[i]`` for image ``i`` (its id is pixel (0, 0, 1) * 100)."""

    def __init__(self, clean: list[int], trig: list[int], k: int) -> None:
        super().__init__()
        self.clean, self.trig, self.k = torch.tensor(clean), torch.tensor(trig), k
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        ids = (x[:, 0, 0, 1] * 100).round().long()
        pred = torch.where(x[:, 0, 0, 0] > 0.5, self.trig[ids], self.clean[ids])
        return torch.nn.functional.one_hot(pred, self.k).float()


# 8 images, 4 classes, two per class; ids 0..7
Y = [0, 0, 1, 1, 2, 2, 3, 3]
CLEAN_PRED = [0, 1, 1, 1, 2, 0, 3, 3]  # 6 of 8 correct
TRIG_PRED = [0, 1, 0, 1, 3, 0, 0, 3]


def table_data() -> ImageData:
    """The 8 images: pixel (0,0,0) = 0 (clean), pixel (0,0,1) = id / 100."""
    x = torch.zeros(8, 1, 1, 2)
    x[:, 0, 0, 1] = torch.arange(8) / 100
    return ImageData(x, torch.tensor(Y), classes=["a", "b", "c", "d"])


@pytest.mark.parametrize(
    ("mode", "target", "sources", "asr", "ra", "n"),
    [
        # eligible ids 2..7 (not class 0); TRIG_PRED there 0,1,3,0,0,3: target 0 at ids 2,5,6;
        # true class at ids 3,7
        ("all-to-one", 0, (), 3 / 6, 2 / 6, 6),
        # every id, target (y+1) mod 4 = 1,1,2,2,3,3,0,0: hits at ids 1,4,6; true class at 0,3,7
        ("all-to-all", 0, (), 3 / 8, 3 / 8, 8),
        # sources {1, 2}: ids 2..5 with TRIG_PRED 0,1,3,0 -> target 3 at id 4; true class at id 3
        ("source-specific", 3, (1, 2), 1 / 4, 1 / 4, 4),
    ],
)
def test_evaluate_asr_ra_count_only_eligible_images(
    mode: str, target: int, sources: tuple[int, ...], asr: float, ra: float, n: int
) -> None:
    model = Table(CLEAN_PRED, TRIG_PRED, 4)
    attack = PoisoningAttack(Flag(), target=target, mode=mode, sources=sources)
    r = evaluate(model, table_data(), attack, seed=3)
    assert r["clean_acc"] == pytest.approx(6 / 8)
    assert (r["asr"], r["ra"], r["n_asr"]) == (pytest.approx(asr), pytest.approx(ra), n)
    assert (
        model.calls == 2
    )  # one pass on the clean images, one on the triggered: ASR and RA share it


# --- seeded random cases against scikit-learn and numpy -------------------------------------------


def random_case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Scores (heavy ties: rounded to 1 decimal, or a few integers, or continuous) and 0/1 labels."""
    n = int(rng.integers(2, 80))
    labels = rng.integers(0, 2, n)
    labels[0], labels[1] = 0, 1  # both classes present
    kind = rng.integers(0, 3)
    raw = rng.normal(labels * rng.uniform(0, 2), 1.0)
    scores = np.round(raw, 1) if kind == 0 else np.round(raw) if kind == 1 else raw
    return scores.astype(np.float64), labels


def max_auroc_difference(cases: int = N_RANDOM, seed: int = 0) -> float:
    """Max |auroc - sklearn roc_auc_score| over ``cases`` seeded random cases."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(cases):
        s, y = random_case(rng)
        ours = auroc(torch.from_numpy(s), torch.from_numpy(y))
        worst = max(worst, abs(ours - float(roc_auc_score(y, s))))
    return worst


def max_tpr_difference(cases: int = N_RANDOM, seed: int = 1) -> float:
    """Max |tpr_at_fpr - best roc_curve TPR with FPR <= fpr| over seeded cases and ``FPRS``."""
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(cases):
        s, y = random_case(rng)
        fpr_c, tpr_c, _ = roc_curve(y, s, drop_intermediate=False)
        for f in (*FPRS, float(rng.uniform())):
            ours = tpr_at_fpr(torch.from_numpy(s), torch.from_numpy(y), f)
            ok = fpr_c <= f
            worst = max(worst, abs(ours - float(tpr_c[ok].max())))
            # the FPR the threshold reaches is the largest one on the curve not above f
            neg = s[y == 0]
            reached = float((neg > threshold_at_fpr(torch.from_numpy(neg), f)).mean())
            worst = max(worst, abs(reached - float(fpr_c[ok].max())))
    return worst


def max_precision_recall_difference(cases: int = N_RANDOM, seed: int = 2) -> float:
    """Max difference of precision, recall and F1 at a threshold from sklearn's (zero_division=nan)."""
    from sklearn.metrics import f1_score, precision_score, recall_score

    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(cases):
        s, y = random_case(rng)
        thr = float(rng.choice(s))
        pred = (s > thr).astype(int)
        ours = precision_recall(torch.from_numpy(s), torch.from_numpy(y), thr)
        ref = {
            "precision": precision_score(y, pred, zero_division=np.nan),
            "recall": recall_score(y, pred, zero_division=np.nan),
            "f1": f1_score(y, pred, zero_division=0.0),
        }
        for k, v in ref.items():
            if math.isnan(v):
                assert math.isnan(ours[k]), k
            else:
                worst = max(worst, abs(ours[k] - float(v)))
    return worst


def max_anomaly_index_difference(cases: int = N_RANDOM, seed: int = 3) -> float:
    """Max |anomaly_index - numpy |x - median| / (1.4826 * median|x - median|)| over seeded cases."""
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(cases):
        n = int(rng.integers(3, 60))
        v = rng.gamma(2.0, 10.0, n)
        if rng.integers(0, 2):
            v = np.round(v)  # ties
        med = np.median(v)
        mad = np.median(np.abs(v - med))
        if mad == 0:
            continue
        ref = np.abs(v - med) / (1.4826 * mad)
        ours = anomaly_index(torch.from_numpy(v)).numpy()
        signed = anomaly_index(torch.from_numpy(v), signed=True).numpy()
        worst = max(worst, float(np.abs(ours - ref).max()))
        worst = max(worst, float(np.abs(signed - (med - v) / (1.4826 * mad)).max()))
    return worst


def test_auroc_matches_sklearn_with_heavy_ties() -> None:
    pytest.importorskip("sklearn")
    assert max_auroc_difference() < TOL


def test_tpr_at_fpr_matches_sklearn_roc_curve() -> None:
    pytest.importorskip("sklearn")
    assert max_tpr_difference() < TOL


def test_precision_recall_matches_sklearn() -> None:
    pytest.importorskip("sklearn")
    assert max_precision_recall_difference() < TOL


def test_anomaly_index_matches_numpy() -> None:
    assert max_anomaly_index_difference() < TOL

"""Shared fixtures: small real data (Fashion-MNIST subset when installed) and tiny models."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("BACKDOORLAB_NO_PROGRESS", "1")
# One place for the test suite's threads: 2 on the 2-core CI machine; set BACKDOORLAB_TEST_THREADS=1
# on a busy shared machine, where oversubscribed OpenMP threads run many times slower.
torch.set_num_threads(
    int(os.environ.get("BACKDOORLAB_TEST_THREADS", min(2, torch.get_num_threads())))
)

from backdoorlab.data import ImageData, Splits, fashion_mnist_available, load_dataset  # noqa: E402


def _toy_splits(n_train: int = 3000, n_test: int = 1000, seed: int = 0) -> Splits:
    """10 classes of 28x28 images told apart by a class-specific bar position plus noise."""
    g = torch.Generator().manual_seed(seed)

    def make(n: int) -> ImageData:
        y = torch.randint(0, 10, (n,), generator=g)
        x = torch.rand(n, 1, 28, 28, generator=g) * 0.3
        rows = (2 + 2 * y).view(n, 1, 1)
        r = torch.arange(28).view(1, 28, 1)
        x[:, 0] += ((r >= rows) & (r < rows + 2)).float().expand(n, 28, 28)[:, :, :] * 0.6
        return ImageData(x.clamp(0, 1), y, name="toy")

    return Splits(train=make(n_train), test=make(n_test))


@pytest.fixture(scope="session")
def small_splits() -> Splits:
    """~6,000 training and 2,000 test images of Fashion-MNIST (or a toy set when not installed)."""
    if fashion_mnist_available():
        s = load_dataset("fashion-mnist")
        return Splits(train=s.train.per_class(600, seed=0), test=s.test.per_class(200, seed=0))
    return _toy_splits(6000, 2000)


# --------------------------------------------------------------------------- report records


HOSTILE = '<script>alert("x")</script>'


def _nc_like(class_names: list[str]) -> object:
    """A Neural-Cleanse-like ratio result built by hand: class 3's mask is 4x smaller than any other."""
    from backdoorlab.records import ScanResult

    k = len(class_names)
    norms = [40.0 + 3 * i for i in range(k)]
    norms[3] = 10.0
    med = sorted(norms)[k // 2]
    g = torch.Generator().manual_seed(0)
    masks = torch.zeros(k, 1, 8, 8)
    masks[:, :, 5:8, 5:8] = 1.0
    patterns = torch.rand(k, 1, 8, 8, generator=g)
    ratio = sorted(norms)[1] / norms[3]
    return ScanResult(
        defense="nc",
        method="nc",
        flagged=ratio > 2.65,
        score=ratio,
        threshold=2.65,
        criterion="ratio",
        score_meaning="second-smallest / smallest mask L1 norm",
        suspect_targets=(3,),
        classes=tuple(range(k)),
        per_class={
            "mask_l1": norms,
            "anomaly_index": [round((med - v) / 5.0, 4) for v in norms],
            "reached": [True] * k,
        },
        p_value=0.004,
        seconds=12.5,
        verdict="class 3's reversed trigger is 4x smaller than any other class's",
        evidence={"masks": masks, "patterns": patterns},
        extras={"median_l1": med, "mad": 5.0, "min_norm_class": 3},
    )


def _abs_like(class_names: list[str]) -> object:
    """An ABS-like result: REASR per class over per-kind thresholds; the score is REASR / threshold."""
    from backdoorlab.records import ScanResult

    k = len(class_names)
    pix = [0.1 * (i % 4) for i in range(k)]
    fil = [0.05] * k
    score = max(max(pix) / 0.88, max(fil) / 0.9)
    return ScanResult(
        defense="abs",
        method="abs",
        flagged=score >= 1.0,
        score=score,
        threshold=1.0,
        criterion="reasr",
        score_meaning="largest REASR divided by its threshold (pixel 0.88, filter 0.9)",
        suspect_targets=(),
        classes=tuple(range(k)),
        per_class={"pixel_reasr": pix, "filter_reasr": fil},
        p_value=0.4,
        seconds=3.0,
        verdict="no candidate neuron's trigger reached its REASR threshold",
        evidence={
            "masks": torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1)),
            "patterns": torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(2)),
            "neurons": torch.tensor([7, 3, 12, 5]),
        },
        extras={
            "threshold_pixel": 0.88,
            "threshold_filter": 0.9,
            "layer": "conv2",
            "candidates": [
                {"neuron": n, "pixel_label": lab} for n, lab in ((7, 1), (3, 2), (12, 2), (5, -1))
            ],
        },
    )


@pytest.fixture
def scan_report_record() -> object:
    """A two-scanner ``ScanReport`` built by hand (class 1 named with a script tag)."""
    from backdoorlab.records import ScanReport

    names = ["zero", HOSTILE, "two", "dress", "four", "five"]
    nc, ab = _nc_like(names), _abs_like(names)
    return ScanReport(
        results=(nc, ab),  # type: ignore[arg-type]
        flagged=True,
        score=0.992,
        p_value=0.008,
        alpha=0.05,
        combination="Bonferroni: 2 x the smallest per-method p-value",
        suspect_targets=(3,),
        verdict="backdoor suspected: nc flags class 3 (p = 0.008 after correction)",
        model={"path": "models/" + HOSTILE + ".pt", "format": "torchscript", "num_classes": 6},
        class_names=tuple(names),
        seconds=15.5,
    )


@pytest.fixture
def demo_summary_record() -> object:
    """A demo summary with one record of every defense family, built by hand."""
    from backdoorlab.records import (
        AttackRun,
        BudgetRow,
        EvalMetrics,
        InputDetectionResult,
        RepairResult,
        SanitizeResult,
    )
    from backdoorlab.report.demo import DemoAttackRow, DemoDefenseRow, DemoSummary

    patch = AttackRun(
        attack="badnets",
        trigger="patch",
        clean_acc=0.903,
        asr=0.998,
        stealth={"psnr": 21.37, "ssim": 0.912},
    )
    lsb = AttackRun(
        attack="badnets",
        trigger="lsb",
        clean_acc=0.897,
        asr=0.951,
        stealth={"psnr": 51.2, "ssim": 0.999},
    )
    strip = InputDetectionResult(
        defense="strip",
        auroc=0.987,
        tpr_at_1fpr=0.81,
        frr=0.012,
        far=0.043,
        n_clean=500,
        n_triggered=450,
        seconds=4.2,
        verdict="flags 95.7% of triggered inputs at 1.2% FRR",
    )
    ac = SanitizeResult(
        defense="activation-clustering",
        auroc=0.97,
        n_train=12000,
        n_poison=1200,
        n_removed=1300,
        n_poison_removed=1169,
        removed_precision=0.899,
        removed_recall=0.974,
        clean_acc_before=0.903,
        clean_acc_after=0.9,
        asr_before=0.998,
        asr_after=0.023,
        der=0.986,
        budgets=(
            BudgetRow(
                label="half",
                factor=0.5,
                n_removed=600,
                n_poison_removed=590,
                precision=0.983,
                recall=0.492,
            ),
            BudgetRow(
                label="true count",
                factor=1.0,
                oracle=True,
                n_removed=1200,
                n_poison_removed=1100,
                precision=0.917,
                recall=0.917,
            ),
        ),
        seconds=30.1,
        verdict="removed 1300 samples",
    )
    nad = RepairResult(
        defense="nad",
        clean_acc_before=0.903,
        clean_acc_after=0.881,
        asr_before=0.998,
        asr_after=0.061,
        der=0.957,
        seconds=20.0,
        verdict="ASR 0.998 -> 0.061",
    )
    nc = _nc_like([str(i) for i in range(6)])
    from backdoorlab.report.images import amplified_difference, grid_image

    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    x2 = x.clone()
    x2[:, :, 5:8, 5:8] = 1.0
    img = grid_image([x, x2, amplified_difference(x, x2)], ["clean", "patch", "|diff|"], scale=4)
    return DemoSummary(
        data="fashion-mnist",
        epochs=3,
        seed=0,
        seconds=301.0,
        clean=EvalMetrics(clean_acc=0.911, seconds=55.0),
        attacks=(
            DemoAttackRow(
                label="BadNets patch",
                family="patch (replace)",
                run=patch,
                clean_model_asr=0.012,
                seconds=60.0,
            ),
            DemoAttackRow(
                label=HOSTILE,
                family="invisible | perturb",
                run=lsb,
                clean_model_asr=0.004,
                seconds=61.0,
            ),
        ),
        defenses=tuple(
            DemoDefenseRow(on="BadNets patch", record=r)  # type: ignore[arg-type]
            for r in (strip, ac, nad, nc)
        ),
        command="backdoorlab demo --quick",
        triggers=img,
    )

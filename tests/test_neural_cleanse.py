"""Neural Cleanse, TABOR and NC unlearning on tiny Fashion-MNIST models (trained once per module)."""

from __future__ import annotations

import pytest
import torch

from backdoorlab.attacks.badnets import BadNets
from backdoorlab.data import ImageData, Splits
from backdoorlab.defenses import DEFENSES
from backdoorlab.defenses.model_repair.unlearning import NCUnlearning
from backdoorlab.defenses.model_scan.neural_cleanse import (
    CALIBRATED_THRESHOLD,
    PAPER_THRESHOLD,
    NeuralCleanse,
)
from backdoorlab.defenses.model_scan.tabor import Tabor, total_variation
from backdoorlab.defenses.reverse import (
    ReverseSpec,
    mad_anomaly,
    reverse_triggers,
    stamp,
)
from backdoorlab.models import create_model
from backdoorlab.train import TrainSpec, evaluate, fit

TARGET = 3
# tiny settings for speed; the default verdict (norm ratio > 2.65)
FAST = dict(per_class=8, batch_size=16, max_epochs=20, early_stop_patience=8)


@pytest.fixture(scope="module")
def models(small_splits: Splits) -> dict[str, object]:
    """A clean and a patch-trojaned LeNet-5 (target 3, 20% poison), 3 epochs on 4,000 images."""
    train = small_splits.train.per_class(400, seed=0)
    attack = BadNets(target=TARGET, rate=0.2)
    poisoned = attack.poison(train, seed=0).data
    spec = TrainSpec(epochs=3, seed=0, device="cpu", progress=False)
    trojan = fit(create_model("lenet5", seed=0), poisoned, spec)
    clean = fit(create_model("lenet5", seed=0), train, spec)
    return {"trojan": trojan, "clean": clean, "attack": attack}


@pytest.fixture(scope="module")
def halves(small_splits: Splits) -> tuple[ImageData, ImageData]:
    """The defender's 1,000 clean images and a held-out half of the test split for scoring."""
    a, b = small_splits.test.split([0.5, 0.5], seed=0)
    return a, b


@pytest.fixture(scope="module")
def trojan_scan(models: dict, halves: tuple[ImageData, ImageData]):  # type: ignore[no-untyped-def]
    """NC's scan of the trojaned model with the defender's clean images."""
    return NeuralCleanse(**FAST).scan(models["trojan"], halves[0])


def test_registered() -> None:
    assert {"nc", "tabor", "nc-unlearning"} <= set(DEFENSES.names())
    assert NeuralCleanse().threshold == CALIBRATED_THRESHOLD > PAPER_THRESHOLD
    assert Tabor().threshold == CALIBRATED_THRESHOLD
    assert NeuralCleanse().criterion == Tabor().criterion == "ratio"


def test_verdict_ratio_and_mad_criteria() -> None:
    from backdoorlab.defenses.model_scan.neural_cleanse import RATIO_THRESHOLD, verdict
    from backdoorlab.defenses.reverse import ReverseResult

    def result(norms: list[float]) -> ReverseResult:
        k = len(norms)
        return ReverseResult(
            targets=list(range(k)),
            masks=torch.zeros(k, 1, 4, 4),
            patterns=torch.zeros(k, 1, 4, 4),
            norms=torch.tensor(norms),
            success=torch.ones(k),
            reached=torch.ones(k, dtype=torch.bool),
            epochs=torch.ones(k, dtype=torch.long),
            cost=torch.zeros(k),
        )

    # a trojan: one trigger 4x smaller than the next -> flagged by the ratio rule
    troj = verdict("nc", result([10.0, 40, 45, 50, 52, 55, 60]), 3.2, 0.0, criterion="ratio")
    assert troj.flagged and troj.suspect_targets == (0,) and troj.score == pytest.approx(4.0)
    assert troj.extras["anomaly_index"] > 3.2 and troj.threshold == RATIO_THRESHOLD
    # a clean model whose norms barely spread: tiny MAD inflates the anomaly index, not the ratio
    clean = [20.0, 29.5, 33.4, 41.0, 41.9, 45.7, 46.0, 47.3, 48.2, 69.0]
    by_ratio = verdict("nc", result(clean), 3.2, 0.0, criterion="ratio")
    by_mad = verdict("nc", result(clean), 3.2, 0.0, criterion="mad")
    assert not by_ratio.flagged and by_ratio.score < RATIO_THRESHOLD
    assert by_mad.flagged and by_mad.score > 3.2
    # the result says plainly what the rule found, or that it found nothing
    assert troj.verdict.startswith("backdoor found by the norm-ratio rule: target 0")
    assert by_ratio.verdict == (
        f"no backdoor found by the norm-ratio rule (mask-norm ratio "
        f"{by_ratio.score:.2f} <= {RATIO_THRESHOLD:g})"
    )
    assert by_mad.verdict.startswith("backdoor found by the MAD anomaly rule")
    with pytest.raises(Exception, match="criterion"):
        NeuralCleanse(criterion="median")


def test_mad_anomaly_matches_hand_computation() -> None:
    norms = torch.tensor([10.0, 50.0, 52.0, 48.0, 51.0])
    idx, med, mad = mad_anomaly(norms)
    assert med == 50.0
    # |x - 50| = 40, 0, 2, 2, 1 -> median 2 -> MAD 2 * 1.4826
    assert mad == pytest.approx(2 * 1.4826)
    assert float(idx[0]) == pytest.approx(40 / (2 * 1.4826), rel=1e-5)
    assert float(idx[2]) < 0  # larger than the median: the non-suspicious side


def test_stamp_shapes_and_formula() -> None:
    x = torch.rand(4, 1, 6, 6)
    m = torch.zeros(2, 1, 6, 6)
    m[1, :, :2, :2] = 1
    p = torch.ones(2, 1, 6, 6)
    out = stamp(x, m, p)
    assert out.shape == (8, 1, 6, 6)
    assert torch.equal(out[:4], x)  # class 0: empty mask, images unchanged
    assert torch.all(out[4:, :, :2, :2] == 1) and torch.equal(out[4:, :, 2:, 2:], x[:, :, 2:, 2:])


def test_nc_flags_trojan_with_right_target(trojan_scan) -> None:  # type: ignore[no-untyped-def]
    res = trojan_scan
    assert res.flagged and res.score > 2
    assert res.suspect_targets[0] == TARGET
    assert res.extras["min_norm_class"] == TARGET
    assert res.evidence["masks"].shape == (10, 1, 28, 28)
    assert res.evidence["patterns"].shape == (10, 1, 28, 28)
    norms = res.per_class["mask_l1"]
    assert norms[TARGET] < 0.5 * sorted(norms)[5]  # far smaller than the median trigger
    assert res.per_class["attack_success"][TARGET] >= 0.9


def test_nc_passes_clean_model(models: dict, small_splits: Splits) -> None:
    res = NeuralCleanse(**FAST).scan(models["clean"], small_splits.test)
    assert not res.flagged, res.per_class
    assert res.score <= 2


def test_nc_is_deterministic(models: dict, small_splits: Splits) -> None:
    data = small_splits.test.per_class(3, seed=0)
    spec = ReverseSpec(max_epochs=3, seed=5)
    a = reverse_triggers(models["trojan"], data, [0, TARGET], spec)
    b = reverse_triggers(models["trojan"], data, [0, TARGET], spec)
    assert torch.equal(a.masks, b.masks) and torch.equal(a.patterns, b.patterns)


def test_batched_equals_sequential(models: dict, small_splits: Splits) -> None:
    opts = dict(per_class=4, max_epochs=10, patience=2, early_stop_patience=3, threshold=2.0)
    det_b = NeuralCleanse(**opts)
    det_s = NeuralCleanse(**opts, batched=False)
    rb = det_b.scan(models["trojan"], small_splits.test)
    rs = det_s.scan(models["trojan"], small_splits.test)
    assert rb.flagged == rs.flagged and rb.suspect_targets == rs.suspect_targets
    nb = torch.tensor(rb.per_class["mask_l1"])
    ns = torch.tensor(rs.per_class["mask_l1"])
    assert torch.allclose(nb, ns, rtol=0.05, atol=0.5), (nb, ns)
    assert rb.per_class["epochs"] == rs.per_class["epochs"]


def test_tabor_regularisers_and_flag(models: dict, small_splits: Splits) -> None:
    v = torch.zeros(1, 1, 3, 3)
    v[0, 0, 1, 1] = 1.0
    assert float(total_variation(v)[0]) == pytest.approx(4.0)  # four neighbours differ by 1
    tabor = Tabor(per_class=6, max_epochs=15, early_stop_patience=8, criterion="mad", threshold=2.0)
    res = tabor.scan(models["trojan"], small_splits.test)
    assert res.method == "tabor"
    assert res.flagged and res.suspect_targets[0] == TARGET


def test_unlearning_removes_backdoor(models: dict, halves, trojan_scan) -> None:  # type: ignore[no-untyped-def]
    repair_set, held_out = halves  # 1,000 clean images for the defender
    attack = models["attack"]
    model = models["trojan"]
    scan = trojan_scan
    before = evaluate(model, held_out, attack)
    fixed = NCUnlearning(scan=scan, epochs=2).repair(model, repair_set)
    after = evaluate(fixed, held_out, attack)
    assert before["asr"] > 0.8
    assert after["asr"] < 0.2, (before, after)
    assert after["clean_acc"] > before["clean_acc"] - 0.05
    assert fixed is not model and evaluate(model, held_out, attack)["asr"] == before["asr"]


def test_bad_model_output_is_a_model_error(small_splits: Splits) -> None:
    from backdoorlab.errors import ModelError

    class Features(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(1)  # (N, H, W), not class logits

    with pytest.raises(ModelError, match=r"\(N, K\)"):
        NeuralCleanse(**FAST).scan(Features(), small_splits.test)


def test_unlearning_without_scan_runs_nc(models: dict) -> None:
    data = ImageData(torch.rand(40, 1, 28, 28), torch.arange(40) % 10)
    rep = NCUnlearning(epochs=1, scan_per_class=2)
    rep.scan_result = None
    import backdoorlab.defenses.model_repair.unlearning as un

    calls: list[int] = []
    orig = un.NeuralCleanse.scan

    def spy(self: NeuralCleanse, model: torch.nn.Module, clean: ImageData):  # type: ignore[no-untyped-def]
        calls.append(1)
        self.spec.max_epochs = 2
        return orig(self, model, clean)

    un.NeuralCleanse.scan = spy  # type: ignore[method-assign]
    try:
        out = rep.repair(models["clean"], data)
    finally:
        un.NeuralCleanse.scan = orig  # type: ignore[method-assign]
    assert calls and rep.used_targets and out(data.x[:2]).shape == (2, 10)

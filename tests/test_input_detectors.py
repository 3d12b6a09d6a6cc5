"""Run-time input detectors (STRIP, SentiNet) on a tiny patch-trojaned model and a clean one."""

from __future__ import annotations

import pytest
import torch

from backdoorlab.attacks.badnets import BadNets
from backdoorlab.data import ImageData, Splits
from backdoorlab.defenses import DEFENSES
from backdoorlab.defenses.input_detection.sentinet import SentiNet, gradcam
from backdoorlab.defenses.input_detection.strip import STRIP, entropy_bits, superimpose
from backdoorlab.metrics.detection import auroc
from backdoorlab.models import create_model
from backdoorlab.train import TrainSpec, fit
from backdoorlab.triggers import create_trigger


@pytest.fixture(scope="module")
def setup(small_splits: Splits) -> dict[str, object]:
    """A BadNets patch model (10% poison), a clean model, defender / evaluation clean splits, triggered inputs."""
    attack = BadNets(trigger=create_trigger("patch", size=5), target=0, rate=0.1)
    poisoned = attack.poison(small_splits.train, seed=0)
    spec = TrainSpec(epochs=8, seed=0, progress=False)
    bad = fit(create_model("badnets_cnn", seed=0), poisoned.data, spec)
    clean = fit(create_model("badnets_cnn", seed=0), small_splits.train, spec)
    test = small_splits.test
    defender, held_out = test.subset(slice(0, 1000)), test.subset(slice(1000, None))
    trig = attack.triggered_test(held_out, seed=1)
    return {"bad": bad, "clean": clean, "defender": defender, "held_out": held_out, "trig": trig}


def _auroc(det: object, clean_x: torch.Tensor, trig_x: torch.Tensor) -> float:
    s_c, s_t = det.score(clean_x), det.score(trig_x)  # type: ignore[attr-defined]
    return auroc(torch.cat([s_c, s_t]), torch.cat([torch.zeros(len(s_c)), torch.ones(len(s_t))]))


def test_registered() -> None:
    assert "strip" in DEFENSES and "sentinet" in DEFENSES
    assert isinstance(DEFENSES.create("strip", n_perturb=4), STRIP)


def test_superimpose_and_entropy() -> None:
    x = torch.full((2, 1, 2, 2), 0.25)
    ov = torch.full((2, 3, 1, 2, 2), 0.5)
    assert torch.allclose(superimpose(x, ov, "add"), torch.full((2, 3, 1, 2, 2), 0.75))
    assert torch.allclose(superimpose(x, ov.clone(), "average"), torch.full((2, 3, 1, 2, 2), 0.375))
    # uniform over 4 classes = 2 bits; a one-hot prediction = 0 bits
    h = entropy_bits(torch.tensor([[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]]))
    assert torch.allclose(h, torch.tensor([2.0, 0.0]), atol=1e-4)


def test_strip_flags_triggered_inputs_at_chosen_frr(setup: dict) -> None:
    det = STRIP(n_perturb=16, seed=0).fit(setup["bad"], setup["defender"], frr=0.05)
    s_c, s_t = det.score(setup["held_out"].x), det.score(setup["trig"].x)
    a = auroc(torch.cat([s_c, s_t]), torch.cat([torch.zeros(len(s_c)), torch.ones(len(s_t))]))
    assert a > 0.9
    frr = float((s_c > det.threshold).float().mean())  # held-out clean inputs, never seen by fit
    assert 0.01 <= frr <= 0.10
    assert float((s_t > det.threshold).float().mean()) > 0.7  # most triggered inputs rejected
    assert torch.equal(det.flag(setup["trig"].x[:50]), s_t[:50] > det.threshold)


def test_strip_threshold_set_out_of_sample(setup: dict) -> None:
    from backdoorlab.metrics.detection import threshold_at_fpr

    det = STRIP(n_perturb=16, seed=0).fit(setup["bad"], setup["defender"], frr=0.05)
    cal, bank = det.calib_index, det.bank_index
    assert cal is not None and bank is not None
    n = len(setup["defender"])
    assert len(cal) == n // 2 and len(cal) + len(bank) == n
    assert torch.equal(torch.sort(torch.cat([cal, bank])).values, torch.arange(n))  # disjoint
    assert torch.equal(det.bank, setup["defender"].x[bank])  # calibration images are no overlays
    assert det.clean_scores is not None and len(det.clean_scores) == len(cal)
    assert det.threshold == threshold_at_fpr(det.clean_scores, 0.05)  # set on calibration only
    assert det.heldout_scores is not None and len(det.heldout_scores) == len(bank)
    frr = float((det.heldout_scores > det.threshold).float().mean())
    assert det.heldout_frr == frr and 0.0 < frr <= 0.12
    # the figure it reports is close to the FRR on truly new clean inputs
    new = float((det.score(setup["held_out"].x) > det.threshold).float().mean())
    assert abs(det.heldout_frr - new) < 0.06
    other = STRIP(n_perturb=16, seed=1).fit(setup["bad"], setup["defender"], frr=0.05)
    assert not torch.equal(other.calib_index, cal)  # the split is seeded


def test_strip_score_shape_and_determinism(setup: dict) -> None:
    det = STRIP(n_perturb=8, seed=3).fit(setup["bad"], setup["defender"])
    x = setup["held_out"].x[:37]
    s1, s2 = det.score(x), det.score(x)
    assert s1.shape == (37,) and torch.equal(s1, s2)
    assert (s1 <= 0).all()  # minus an entropy
    other = STRIP(n_perturb=8, seed=4).fit(setup["bad"], setup["defender"]).score(x)
    assert not torch.equal(s1, other)  # the seed picks the overlays


def test_strip_early_stop_keeps_verdicts_with_fewer_overlays(setup: dict) -> None:
    fixed = STRIP(n_perturb=32, adaptive=False, seed=0).fit(setup["bad"], setup["defender"])
    fast = STRIP(n_perturb=32, seed=0).fit(setup["bad"], setup["defender"])
    assert fixed.threshold == fast.threshold  # fit always uses every overlay
    x = torch.cat([setup["held_out"].x[:300], setup["trig"].x[:300]])
    v_fixed, v_fast = fixed.flag(x), fast.flag(x)
    used = fast.overlays_used
    assert used is not None and int(used.min()) == 8 and int(used.max()) <= 32
    assert float(used.float().mean()) < 24  # most inputs stop early
    assert float((v_fixed != v_fast).float().mean()) <= 0.03
    assert torch.equal(fast.score(x), fast.score(x))  # still deterministic


def test_inference_module_same_logits_and_fallback(setup: dict) -> None:
    from backdoorlab.utils import inference_module

    model = setup["bad"]
    x = setup["held_out"].x[:64]
    fast = inference_module(model, x)
    assert isinstance(fast, torch.jit.ScriptModule)
    with torch.no_grad():
        assert torch.allclose(fast(x), model(x), atol=1e-4)
    model.train()
    inference_module(model, x)
    assert model.training  # restored
    model.eval()

    class Dicty(torch.nn.Module):  # output is not a tensor: cannot be frozen, runs eagerly
        def forward(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"logits": z.flatten(1)[:, :10]}

    d = Dicty()
    assert inference_module(d, x) is d


def test_strip_passes_clean_model(setup: dict) -> None:
    det = STRIP(n_perturb=16).fit(setup["clean"], setup["defender"], frr=0.05)
    assert float(det.flag(setup["trig"].x).float().mean()) < 0.3


def test_strip_errors(setup: dict) -> None:
    with pytest.raises(RuntimeError):
        STRIP().flag(torch.zeros(1, 1, 28, 28))
    det = STRIP(n_perturb=2).fit(setup["bad"], setup["defender"].subset(slice(0, 20)))
    with pytest.raises(Exception, match="inputs must be"):
        det.score(torch.zeros(2, 3, 28, 28))


def test_gradcam_shape_and_no_param_grads(setup: dict) -> None:
    model = setup["bad"]
    before = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    heat, out = gradcam(model, setup["trig"].x[:8])
    assert heat.shape == (8, 28, 28) and out.shape == (8, 10)
    assert float(heat.min()) >= 0 and float(heat.max()) <= 1
    for b, p in zip(before, model.parameters(), strict=True):  # parameter grads untouched
        assert (b is None and p.grad is None) or torch.equal(b, p.grad)
    assert "features" not in vars(model)  # the temporary hook is gone


def test_sentinet_separates_triggered_from_clean(setup: dict) -> None:
    det = SentiNet(n_clean=30, seed=0).fit(
        setup["bad"], setup["defender"].subset(slice(0, 400)), frr=0.05
    )
    a = _auroc(det, setup["held_out"].x[:300], setup["trig"].x[:300])
    assert a > 0.85
    s = det.score(setup["trig"].x[:10])
    assert s.shape == (10,) and torch.equal(s, det.score(setup["trig"].x[:10]))


def test_sentinet_threshold_set_out_of_sample(setup: dict) -> None:
    from backdoorlab.metrics.detection import threshold_at_fpr

    det = SentiNet(n_clean=30, seed=0).fit(
        setup["bad"], setup["defender"].subset(slice(0, 400)), frr=0.05
    )
    assert det.clean_scores is not None and det.heldout_scores is not None
    assert len(det.clean_scores) == 123 and len(det.heldout_scores) == 124  # thirds of 370
    assert det.threshold == threshold_at_fpr(det.clean_scores, 0.05)
    frr = float((det.heldout_scores > det.threshold).float().mean())
    assert det.heldout_frr == frr and frr <= 0.15


def test_sentinet_needs_enough_clean(setup: dict) -> None:
    small = ImageData(setup["defender"].x[:20], setup["defender"].y[:20])
    with pytest.raises(Exception, match="clean images"):
        SentiNet(n_clean=30).fit(setup["bad"], small)

"""ABS (Liu et al., CCS 2019): layer splitting (nn.Module + TorchScript), detection, determinism, errors."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from backdoorlab.attacks.badnets import BadNets
from backdoorlab.data import ImageData, Splits
from backdoorlab.defenses.base import DEFENSES
from backdoorlab.defenses.layers import split_model
from backdoorlab.defenses.model_scan.abs import ABS, elevation_scores, stimulate
from backdoorlab.errors import ModelError
from backdoorlab.models import create_model
from backdoorlab.models.io import export_torchscript, load_torchscript
from backdoorlab.train import TrainSpec, evaluate, fit
from backdoorlab.triggers import create_trigger

ARCHS = [
    ("badnets_cnn", {}),
    ("small_cnn", {"width": 8, "bn": True}),
    ("gap_cnn", {"width": 8, "bn": True}),
]


def _bn_stats(m: nn.Module) -> nn.Module:
    """Give batch-norm layers non-trivial running statistics so that eval mode differs from identity."""
    g = torch.Generator().manual_seed(1)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.1)
            mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
    return m.eval()


@pytest.mark.parametrize(("arch", "kw"), ARCHS)
def test_split_matches_features_for_module_and_torchscript(arch, kw, tmp_path):
    m = _bn_stats(create_model(arch, input_shape=(1, 28, 28), seed=0, **kw))
    ts, _ = load_torchscript(export_torchscript(m, tmp_path / f"{arch}.pt"))
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref_h, ref_y = m.features(x), m(x)
    sm = split_model(m, (1, 28, 28))
    st = split_model(ts, (1, 28, 28))
    assert sm.how == "features-method" and st.how == "torchscript-graph"
    assert sm.shape == st.shape == tuple(ref_h.shape[1:])
    with torch.no_grad():
        for s in (sm, st):
            torch.testing.assert_close(s.head(x), ref_h)
            torch.testing.assert_close(s.tail(s.head(x)), ref_y)
        # an edited activation reaches the output the same way in both (the override really works)
        h = ref_h.clone()
        h[:, 3] = 5.0
        torch.testing.assert_close(st.tail(h), sm.tail(h))
        assert not torch.allclose(st.tail(h), ref_y)
    # gradients flow from the activation back to the input through the TorchScript head
    xg = x.clone().requires_grad_(True)
    (gx,) = torch.autograd.grad(st.head(xg)[:, 0].sum(), [xg])
    assert gx.abs().sum() > 0


def test_split_named_layers_hooks_and_graph(tmp_path):
    m = _bn_stats(create_model("small_cnn", input_shape=(1, 28, 28), seed=0, width=8, bn=True))
    ts, _ = load_torchscript(export_torchscript(m, tmp_path / "s.pt"))
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = m(x)
        for model, layer, how in (
            (m, "body.3", "forward-hook"),
            (m, "fc1:input", "forward-hook"),
            (ts, "body", "torchscript-graph"),
            (ts, "fc1:input", "torchscript-graph"),
        ):
            s = split_model(model, (1, 28, 28), layer=layer)
            assert s.how == how
            torch.testing.assert_close(s.tail(s.head(x)), ref)
    assert split_model(m, (1, 28, 28), layer="fc1:input").shape == (8 * 2 * 7 * 7,)


class _Skip(nn.Module):
    """Input reaches the output around every conv layer: no inner layer is a cut."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 28 * 28, 10)
        self.skip = nn.Linear(28 * 28, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1)) + self.skip(x.flatten(1))


def test_unsplittable_model_raises_one_line_model_error(tmp_path):
    m = _Skip().eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ts = torch.jit.trace(m, torch.rand(2, 1, 28, 28))
    clean = ImageData(torch.rand(20, 1, 28, 28), torch.arange(20) % 10)
    for model in (m, ts):
        with pytest.raises(ModelError) as e:
            ABS(steps=2).scan(model, clean)
        msg = str(e.value)
        assert "\n" not in msg and "cannot split" in msg
    with pytest.raises(ModelError, match="not found"):
        split_model(create_model("badnets_cnn", seed=0), (1, 28, 28), layer="nope")


def test_elevation_scores_by_hand():
    # 1 neuron, 2 images, 2 values, 3 labels: label 2 wins on both images at the high value
    logits = torch.tensor(
        [[[[1.0, 0.0, 0.0], [0.0, 0.0, 3.0]], [[0.0, 2.0, 0.0], [1.0, 0.0, 2.0]]]]
    )
    s = elevation_scores(logits)
    # label 2: image0 max(0-1, 3-0)=3, image1 max(0-2, 2-1)=1 -> min 1
    assert s[0, 2] == pytest.approx(1.0)
    assert s[0, 0] == pytest.approx(-1.0)  # image1: max(0-2, 1-2) = -1


def test_stimulate_sets_one_channel():
    m = create_model("badnets_cnn", seed=0).eval()
    s = split_model(m, (1, 28, 28))
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        h = s.head(x)
        out = stimulate(s, h, torch.tensor([0.0, 1.5]), max_batch=7)
        h2 = h.clone()
        h2[:, 5] = 1.5
        torch.testing.assert_close(out[5, :, 1], s.tail(h2))
    assert out.shape == (32, 3, 2, 10)


@pytest.fixture(scope="module")
def trained(small_splits: Splits) -> dict[str, object]:
    """A patch-trojaned (target 3) and a clean LeNet-5 on 3,000 Fashion-MNIST images, 3 epochs."""
    train = small_splits.train.per_class(300, seed=0)
    spec = TrainSpec(epochs=3, batch_size=32, lr=5e-3, seed=0, progress=False)
    attack = BadNets(create_trigger("patch", size=4), target=3, rate=0.1)
    troj = fit(create_model("lenet5", seed=0), attack.poison(train, seed=0).data, spec)
    clean = fit(create_model("lenet5", seed=1), train, spec)
    ev = evaluate(troj, small_splits.test, attack)
    return {"trojan": troj, "clean": clean, "eval": ev, "data": small_splits.test.per_class(10)}


FAST = {"n_images": 10, "top_k": 5, "triggers": ("pixel",)}


def test_abs_flags_patch_trojan_with_target_and_passes_clean(trained):
    assert trained["eval"]["asr"] > 0.9  # the backdoor exists
    det = DEFENSES.create("abs", **FAST)
    r_clean = det.scan(trained["clean"], trained["data"])
    assert (
        not r_clean.flagged and r_clean.suspect_targets == ()
    )  # default (clean-calibrated) thresholds
    assert r_clean.verdict.startswith("no backdoor found by the REASR rule")
    # this tiny 3-epoch trojan is weaker than the benchmark ones: threshold from the clean model + margin
    det.threshold_pixel = min(det.threshold_pixel, r_clean.extras["pixel_reasr"] + 0.1)
    r_troj = det.scan(trained["trojan"], trained["data"])
    assert r_troj.flagged and r_troj.suspect_targets[0] == 3
    assert r_troj.verdict.startswith("backdoor found by the REASR rule: target 3")
    assert r_troj.extras["best_label"] == 3
    assert r_troj.evidence["masks"].shape == (5, 1, 28, 28)
    area = (r_troj.evidence["masks"] > 0).flatten(1).sum(1)
    assert int(area.max()) <= int(0.06 * 28 * 28)


def test_abs_deterministic_with_seed(trained):
    cfg = {"steps": 6, "n_images": 10, "top_k": 3, "seed": 4}
    a = ABS(**cfg).scan(trained["trojan"], trained["data"])
    b = ABS(**cfg).scan(trained["trojan"], trained["data"])
    assert a.score == b.score and a.extras["candidates"] == b.extras["candidates"]
    for k in a.evidence:
        torch.testing.assert_close(a.evidence[k], b.evidence[k])
    assert "filter_curves" in a.evidence and a.to_json()["method"] == "abs"

"""Registries, the model zoo, and safe model files (safetensors, weights-only, TorchScript)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from backdoorlab.errors import ConfigError, ModelError, UnknownNameError
from backdoorlab.models import (
    MODELS,
    create_model,
    export_torchscript,
    is_torchscript,
    load_model,
    load_torchscript,
    read_state_dict,
    save_model,
)
from backdoorlab.registry import Registry


def test_registry_register_create_and_errors() -> None:
    reg: Registry[object] = Registry("widgets")

    @reg.register("a-widget", "makes an a")
    def make(size: int = 1) -> int:
        return size * 2

    assert reg.create("a-widget", size=3) == 6
    assert reg.names("a-*") == ["a-widget"]
    with pytest.raises(UnknownNameError, match="unknown widget 'b'"):
        reg.get("b")
    with pytest.raises(ConfigError, match="unknown option"):
        reg.create("a-widget", colour=1)
    with pytest.raises(ConfigError, match="registered twice"):
        reg.register("a-widget")(make)


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_every_model_builds_and_is_seeded(name: str, shape: tuple[int, int, int]) -> None:
    if "resnet" in name and shape[0] == 1:
        pytest.skip("ResNets are for 32x32 colour input")
    kw = {"width": 8} if "resnet" in name else {}
    m1 = create_model(name, num_classes=7, input_shape=shape, seed=3, **kw)
    m2 = create_model(name, num_classes=7, input_shape=shape, seed=3, **kw)
    m1.eval()
    m2.eval()
    x = torch.rand(2, *shape)
    out = m1(x)
    assert out.shape == (2, 7)
    assert torch.equal(out, m2(x))
    assert hasattr(m1, "features")


def test_safetensors_round_trip(tmp_path: Path) -> None:
    m = create_model("small_cnn", num_classes=5, input_shape=(3, 32, 32), seed=0, width=8, bn=True)
    m.eval()
    p = save_model(m, tmp_path / "m.safetensors", classes=list("abcde"))
    assert p.exists() and p.with_suffix(".json").exists()
    m2 = load_model(p)
    x = torch.rand(4, 3, 32, 32)
    assert torch.equal(m(x), m2(x))
    assert m2.classes == list("abcde")
    # without the JSON card the architecture must be given
    p.with_suffix(".json").unlink()
    m3 = load_model(p)  # card is also embedded in the safetensors metadata
    assert torch.equal(m(x), m3(x))


def test_weights_only_checkpoint_and_arch_flag(tmp_path: Path) -> None:
    m = create_model("lenet5", seed=1)
    torch.save(m.state_dict(), tmp_path / "w.pt")
    with pytest.raises(ModelError, match="architecture"):
        load_model(tmp_path / "w.pt")
    m2 = load_model(tmp_path / "w.pt", arch="lenet5", num_classes=10, input_shape=(1, 28, 28))
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(m.eval()(x), m2(x))
    with pytest.raises(ModelError, match="do not fit"):
        load_model(tmp_path / "w.pt", arch="badnets_cnn", num_classes=10, input_shape=(1, 28, 28))


def test_torchscript_round_trip(tmp_path: Path) -> None:
    m = create_model("gap_cnn", seed=0, width=8)
    p = export_torchscript(m, tmp_path / "m.pt", classes=[str(i) for i in range(10)])
    assert is_torchscript(p)
    ts, card = load_torchscript(p)
    x = torch.rand(2, 1, 28, 28)
    assert torch.allclose(ts(x), m.eval()(x), atol=1e-6)
    assert card["input_shape"] == [1, 28, 28] and card["arch"] == "gap_cnn"


class _Evil:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        import os

        return (os.system, ("touch /tmp/backdoorlab-pwned-marker",))


def test_malicious_pickle_is_refused_without_running(tmp_path: Path) -> None:
    marker = Path("/tmp/backdoorlab-pwned-marker")
    marker.unlink(missing_ok=True)
    bad = tmp_path / "evil.pt"
    with open(bad, "wb") as f:
        pickle.dump({"weight": _Evil()}, f)
    with pytest.raises(ModelError, match="refused"):
        read_state_dict(bad)
    with pytest.raises(ModelError):
        load_model(bad, arch="lenet5", num_classes=10, input_shape=(1, 28, 28))
    assert not marker.exists()
    assert not is_torchscript(bad)


def test_corrupt_files_give_model_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelError, match=r"junk\.safetensors"):
        load_model(junk, arch="lenet5", num_classes=10, input_shape=(1, 28, 28))
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "missing.safetensors")
    with pytest.raises(ModelError, match="TorchScript"):
        load_torchscript(junk)

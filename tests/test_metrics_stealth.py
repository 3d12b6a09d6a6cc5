"""Stealth metrics: known values for PSNR, SSIM (vs scikit-image numbers) and L0/L2/L_inf."""

from __future__ import annotations

import math

import pytest
import torch

from backdoorlab.errors import ConfigError
from backdoorlab.metrics import gaussian_window, lp_norms, psnr, ssim, stealth_report
from backdoorlab.triggers import PatchTrigger


def smooth_pair() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Deterministic (2, 3, 16, 16) float64 images: x, a distortion x2 of x, and an unrelated y."""
    grids = torch.meshgrid(
        torch.arange(2), torch.arange(3), torch.arange(16), torch.arange(16), indexing="ij"
    )
    n, c, h, w = (t.double() for t in grids)
    x = 0.5 + 0.4 * torch.sin(0.7 * h + 1.3 * w + c + 2 * n)
    x2 = (x + 0.3 * torch.cos(1.9 * h - 0.8 * w + 0.5 * c * n) * (w / 15)).clamp(0, 1)
    y = 0.5 + 0.3 * torch.cos(1.1 * h - 0.6 * w + c + n)
    return x, x2, y


# Reference numbers from scikit-image 0.26.0 (not a test dependency), computed per image as
#   skimage.metrics.structural_similarity(a, b, data_range=1.0, gaussian_weights=True, sigma=1.5,
#                                         use_sample_covariance=False, channel_axis=2)
# with a = x[i].permute(1, 2, 0).numpy() (float64, HWC) and b likewise, for the images of
# smooth_pair(); the grayscale values use x[i, 0] and x2[i, 0] without channel_axis.
SKIMAGE_SSIM_RGB_X_X2 = [0.9323820791925588, 0.9316365412927287]
SKIMAGE_SSIM_GRAY_X_X2 = [0.9334105067180369, 0.9311978444692272]
SKIMAGE_SSIM_RGB_X_Y = [0.007200100593733886, 0.007222846553625431]


def test_psnr_constant_offset_is_exact() -> None:
    x = torch.full((3, 2, 8, 8), 0.25, dtype=torch.float64)
    for d in (1 / 255, 0.05, 0.5):
        got = psnr(x, x + d)
        assert torch.allclose(got, torch.full((3,), 10 * math.log10(1 / d**2), dtype=torch.float64))
    # data_range 255: an offset of 1 grey level gives 10 log10(255^2) = 48.13 dB
    assert psnr(x * 255, x * 255 + 1, data_range=255).tolist() == pytest.approx(
        [20 * math.log10(255)] * 3
    )


def test_psnr_identical_is_inf_or_capped() -> None:
    x = torch.rand(2, 1, 8, 8)
    assert torch.isinf(psnr(x, x)).all()
    assert psnr(x, x, cap=100.0).tolist() == [100.0, 100.0]


def test_ssim_identical_is_one() -> None:
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ssim(x, x), torch.ones(4), atol=1e-6)
    assert torch.allclose(ssim(x.double(), x.double()), torch.ones(4, dtype=torch.float64))


def test_ssim_matches_scikit_image() -> None:
    x, x2, y = smooth_pair()
    assert ssim(x, x2).tolist() == pytest.approx(SKIMAGE_SSIM_RGB_X_X2, abs=1e-10)
    assert ssim(x[:, :1], x2[:, :1]).tolist() == pytest.approx(SKIMAGE_SSIM_GRAY_X_X2, abs=1e-10)
    assert ssim(x, y).tolist() == pytest.approx(SKIMAGE_SSIM_RGB_X_Y, abs=1e-10)
    # float32 input and data_range scaling give the same numbers
    assert ssim(x.float(), x2.float()).tolist() == pytest.approx(SKIMAGE_SSIM_RGB_X_X2, abs=1e-6)
    assert ssim(255 * x, 255 * x2, data_range=255).tolist() == pytest.approx(
        SKIMAGE_SSIM_RGB_X_X2, abs=1e-10
    )
    # batching does not change the result
    assert torch.allclose(ssim(x, x2, batch_size=1), ssim(x, x2))


def test_ssim_symmetric_and_bounded() -> None:
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(3, 1, 12, 12, generator=g), torch.rand(3, 1, 12, 12, generator=g)
    s = ssim(a, b)
    assert torch.allclose(s, ssim(b, a))
    assert (s <= 1).all() and (s >= -1).all() and (s < 0.5).all()


def test_gaussian_window() -> None:
    g = gaussian_window(11, 1.5)
    assert g.shape == (11,) and float(g.sum()) == pytest.approx(1.0)
    assert int(g.argmax()) == 5 and torch.allclose(g, g.flip(0))
    with pytest.raises(ConfigError, match="odd"):
        gaussian_window(10)


def test_lp_norms_hand_computed() -> None:
    x = torch.zeros(2, 3, 4, 4)
    x2 = x.clone()
    # image 0: pixel (0, 0) changes in two channels, pixel (1, 2) in one; a sub-quantum change
    # at (3, 3) (0.1 / 255 < 0.5 / 255) is not counted by L0 but enters L2 and L_inf.
    x2[0, 0, 0, 0], x2[0, 2, 0, 0] = 0.3, -0.4
    x2[0, 1, 1, 2] = 1.0
    x2[0, 0, 3, 3] = 0.1 / 255
    # image 1: unchanged
    per = lp_norms(x, x2, per_image=True)
    assert per["l0"].tolist() == [2.0, 0.0]
    l2_0 = math.sqrt(0.3**2 + 0.4**2 + 1.0 + (0.1 / 255) ** 2)
    assert per["l2"].tolist() == pytest.approx([l2_0, 0.0], rel=1e-6)
    assert per["linf"].tolist() == pytest.approx([1.0, 0.0])
    mean = lp_norms(x, x2)
    assert mean == pytest.approx({"l0": 1.0, "l2": l2_0 / 2, "linf": 0.5}, rel=1e-6)


def test_stealth_report_patch_trigger() -> None:
    x = torch.zeros(5, 1, 28, 28)
    x[1] = 1.0  # already white: the white patch changes nothing
    rep = stealth_report(PatchTrigger(size=3), x)
    assert rep["n"] == 5 and rep["unchanged"] == 1
    assert rep["l0"] == pytest.approx(9 * 4 / 5)
    assert rep["l2"] == pytest.approx(3 * 4 / 5)
    assert rep["linf"] == pytest.approx(4 / 5)
    # changed images: MSE = 9 / 784 -> PSNR 10 log10(784 / 9)
    assert rep["psnr"] == pytest.approx(10 * math.log10(784 / 9), rel=1e-5)
    assert 0 < rep["ssim"] < 1


def test_bad_inputs() -> None:
    with pytest.raises(ConfigError, match="shape"):
        psnr(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 9))
    with pytest.raises(ConfigError, match="smaller than"):
        ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))
    with pytest.raises(ConfigError, match="float batches"):
        lp_norms(torch.zeros(8, 8), torch.zeros(8, 8))

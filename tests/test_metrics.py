"""Frame metrics (OpenSTL MSE/MAE, PSNR, SSIM), MMD and the Frechet distance against their definitions."""

import math

import pytest
import torch

from minisora.metrics import frechet_distance, mae_per_frame, mse_per_frame, psnr, ssim


def test_psnr_matches_its_definition():
    x = torch.zeros(2, 3, 16, 16)
    y = x.clone()
    y[0] += 0.1  # frame MSE 0.01 -> 20 dB
    y[1] += 0.01  # frame MSE 1e-4 -> 40 dB
    torch.testing.assert_close(psnr(y, x), torch.tensor(30.0))
    assert psnr(x, x) > 90


def test_ssim_is_one_for_identical_frames_and_lower_otherwise():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 32, 32, generator=g)
    torch.testing.assert_close(ssim(x, x), torch.tensor(1.0))
    noisy = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    assert 0 < ssim(noisy, x) < 0.9
    assert ssim(x, noisy) == pytest.approx(float(ssim(noisy, x)), abs=1e-6)  # symmetric


def test_ssim_of_a_constant_shift_follows_the_luminance_term():
    x = torch.full((1, 16, 16), 0.5)
    y = torch.full((1, 16, 16), 0.6)
    c1 = 0.01 ** 2
    expected = (2 * 0.5 * 0.6 + c1) / (0.5 ** 2 + 0.6 ** 2 + c1)  # no variance: only luminance remains
    assert float(ssim(x, y)) == pytest.approx(expected, rel=1e-4)
    assert math.isfinite(float(psnr(x, y)))


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="same shape"):
        psnr(torch.zeros(2, 8, 8), torch.zeros(3, 8, 8))


def test_mmd_is_small_for_the_same_distribution_and_large_otherwise():
    from minisora.metrics import mmd

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(800, 2, generator=g), torch.randn(800, 2, generator=g)
    shifted = torch.randn(800, 2, generator=g) + torch.tensor([0.5, 0.0])
    assert mmd(a, b, 0.5) < 0.05 < 0.1 < mmd(a, shifted, 0.5)  # measured: 0.031 and 0.124
    with pytest.raises(ValueError, match="samples"):
        mmd(a, torch.randn(10, 3))


def test_openstl_mse_and_mae_sum_over_the_pixels_of_a_frame():
    x, y = torch.zeros(2, 10, 64, 64), torch.zeros(2, 10, 64, 64)
    y[..., :8, :] = 0.5  # 8 rows of 64 pixels off by 0.5 in every frame
    assert mse_per_frame(x, y).item() == pytest.approx(8 * 64 * 0.25)
    assert mae_per_frame(x, y).item() == pytest.approx(8 * 64 * 0.5)
    with pytest.raises(ValueError, match="same shape"):
        mse_per_frame(x, y[:1])


def test_frechet_distance_of_gaussians_matches_the_closed_form():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(20000, 4, generator=g), torch.randn(20000, 4, generator=g)
    assert frechet_distance(a, b) < 0.01
    # N(0, I) vs N(1, 4I) in 4 dims: |mu|^2 = 4, tr(I + 4I - 2 * 2I) = 4
    assert frechet_distance(a, 2 * b + 1) == pytest.approx(8.0, rel=0.03)
    with pytest.raises(ValueError, match="feature sets"):
        frechet_distance(a, b[:, :3])

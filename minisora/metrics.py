"""Metrics on videos in [0, 1]. Frame-wise, as the video prediction literature computes them.

    MSE  = sum over the H x W pixels of (x - y)^2             per frame, then averaged (OpenSTL's MSE)
    MAE  = sum over the H x W pixels of |x - y|               per frame, then averaged
    PSNR = 10 log10(data_range^2 / MSE)                      per frame, then averaged
    SSIM = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))
           with Gaussian-weighted local statistics (11x11 window, sigma 1.5), C1 = (0.01 L)^2,
           C2 = (0.03 L)^2 (Wang et al. 2004), averaged over pixels, then frames
    FD   = |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))  Frechet distance of two feature sets

The physics probe (tracking digits through clips) is in ``physics.py``; ``evaluate.py`` puts
everything together for ``python -m minisora eval``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _frames(x: torch.Tensor) -> torch.Tensor:
    """(..., H, W) -> (N, 1, H, W) in float64: every frame of any batch of videos.

    Double precision because SSIM's variances are differences of nearly equal numbers.
    """
    return x.reshape(-1, 1, *x.shape[-2:]).double()


def _check_pair(name: str, x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape:
        raise ValueError(f"{name} needs two tensors of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")


def mse_per_frame(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """OpenSTL's MSE for videos (..., H, W) in [0, 1]: squared error summed over a frame's pixels, mean over frames."""
    _check_pair("mse_per_frame", x, y)
    return (_frames(x) - _frames(y)).pow(2).sum(dim=(1, 2, 3)).mean().float()


def mae_per_frame(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """OpenSTL's MAE: absolute error summed over a frame's pixels, mean over frames."""
    _check_pair("mae_per_frame", x, y)
    return (_frames(x) - _frames(y)).abs().sum(dim=(1, 2, 3)).mean().float()


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, eps: float = 1e-10) -> torch.Tensor:
    """Mean over frames of 10 log10(L^2 / MSE) for same-shaped videos (..., H, W)."""
    _check_pair("psnr", x, y)
    mse = (_frames(x) - _frames(y)).pow(2).mean(dim=(1, 2, 3))  # (N,)
    return (10 * torch.log10(data_range ** 2 / (mse + eps))).mean().float()


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    g = torch.exp(-(torch.arange(size) - size // 2).float().pow(2) / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]  # (1, 1, size, size)


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM over frames for same-shaped videos (..., H, W), frames at least 11x11."""
    _check_pair("ssim", x, y)
    x, y = _frames(x), _frames(y)
    w = gaussian_window().to(x)
    blur = lambda t: F.conv2d(t, w)  # valid convolution, as in the reference implementation
    mu_x, mu_y = blur(x), blur(y)
    s_xx = blur(x * x) - mu_x ** 2
    s_yy = blur(y * y) - mu_y ** 2
    s_xy = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * s_xy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (s_xx + s_yy + c2))
    return s.mean(dim=(1, 2, 3)).mean().float()


def mmd(x: torch.Tensor, y: torch.Tensor, bandwidth: float = 0.1) -> float:
    """Maximum mean discrepancy between two samples (N, D) and (M, D) with a Gaussian kernel (Gretton et al. 2012).

    MMD^2 = E k(x, x') + E k(y, y') - 2 E k(x, y),  k(a, b) = exp(-|a - b|^2 / (2 h^2)),
    unbiased (the i = j terms left out); returns sqrt(max(MMD^2, 0)). Zero when the distributions are the same.
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"mmd needs samples (N, D) and (M, D), got {tuple(x.shape)} and {tuple(y.shape)}")
    x, y = x.double(), y.double()
    k = lambda a, b: torch.exp(-torch.cdist(a, b).pow(2) / (2 * bandwidth ** 2))
    n, m = len(x), len(y)
    kxx = (k(x, x).sum() - n) / (n * (n - 1))  # the diagonal is exp(0) = 1
    kyy = (k(y, y).sum() - m) / (m * (m - 1))
    return float((kxx + kyy - 2 * k(x, y).mean()).clamp(min=0).sqrt())


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N, D) and (M, D), as in FID / FVD.

    FD = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a^(1/2) S_b S_a^(1/2))^(1/2)); the last trace equals
    tr((S_a S_b)^(1/2)) and is computed from the eigenvalues of a symmetric matrix, in float64.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"frechet_distance needs feature sets (N, D) and (M, D) with N, M >= 2, "
                         f"got {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = torch.cov(a.T), torch.cov(b.T)  # (D, D) each
    w, v = torch.linalg.eigh(s_a)
    root_a = v @ torch.diag(w.clamp(min=0).sqrt()) @ v.T  # S_a^(1/2)
    cross = torch.linalg.eigvalsh(root_a @ s_b @ root_a).clamp(min=0).sqrt().sum()  # tr((S_a S_b)^(1/2))
    return float((mu_a - mu_b).pow(2).sum() + s_a.trace() + s_b.trace() - 2 * cross)

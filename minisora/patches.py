"""Patches: how a transformer reads images and videos ("an image is worth 16x16 words").

An image (B, C, H, W) is cut into non-overlapping ph x pw patches; a video (B, C, T, H, W) into
pt x ph x pw *tubelets*, the spacetime patches Sora uses. Each patch is flattened in
(c, pt, ph, pw) order into one token, tokens in (t, h, w) raster order::

    (B, C, T*pt, H*ph, W*pw)  ->  (B, T*H*W, C*pt*ph*pw)

A patch embedding is a linear map of each flattened patch, which is exactly a convolution whose
kernel size and stride are the patch size (``PatchEmbed`` uses the convolution; the notebook
shows they are equal). Positions are added with fixed sin-cos embeddings, one per axis and
concatenated, so they exist for any grid size.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn


def _patch_size(x: torch.Tensor, patch_size) -> tuple[int, ...]:
    """Check ``x`` against ``patch_size`` and return it as a tuple with one entry per spatial axis."""
    if x.ndim not in (4, 5):
        raise ValueError(f"expected an image batch (B, C, H, W) or a video batch (B, C, T, H, W), "
                         f"got a tensor of rank {x.ndim} with shape {tuple(x.shape)}")
    axes = x.ndim - 2
    p = (patch_size,) * axes if isinstance(patch_size, int) else tuple(patch_size)
    if len(p) != axes:
        raise ValueError(f"a rank-{x.ndim} input needs a patch size with {axes} entries "
                         f"({'(pt, ph, pw)' if axes == 3 else '(ph, pw)'}), got {patch_size}")
    names = ("T", "H", "W")[-axes:]
    for name, size, patch in zip(names, x.shape[2:], p):
        if patch < 1 or size % patch:
            raise ValueError(f"{name}={size} is not divisible by the patch size {patch} "
                             f"(input shape {tuple(x.shape)}, patch size {p})")
    return p


def patchify(x: torch.Tensor, patch_size) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, C*ph*pw) or (B, C, T, H, W) -> (B, N, C*pt*ph*pw)."""
    p = _patch_size(x, patch_size)
    if len(p) == 2:
        return rearrange(x, "b c (h ph) (w pw) -> b (h w) (c ph pw)", ph=p[0], pw=p[1])
    return rearrange(x, "b c (t pt) (h ph) (w pw) -> b (t h w) (c pt ph pw)", pt=p[0], ph=p[1], pw=p[2])


def unpatchify(tokens: torch.Tensor, grid, patch_size) -> torch.Tensor:
    """The inverse of :func:`patchify`: tokens (B, N, C*prod(p)) on a ``grid`` of patches -> pixels.

    ``grid`` is (h, w) for images or (t, h, w) for videos: the number of patches along each axis.
    """
    grid, p = tuple(grid), (patch_size,) * len(grid) if isinstance(patch_size, int) else tuple(patch_size)
    if len(grid) not in (2, 3) or len(p) != len(grid):
        raise ValueError(f"grid and patch size need 2 (image) or 3 (video) entries each, got {grid} and {p}")
    n, volume = math.prod(grid), math.prod(p)
    if tokens.ndim != 3 or tokens.shape[1] != n or tokens.shape[2] % volume:
        raise ValueError(f"expected tokens (B, {n}, C*{volume}) for grid {grid} and patch size {p}, "
                         f"got {tuple(tokens.shape)}")
    if len(grid) == 2:
        return rearrange(tokens, "b (h w) (c ph pw) -> b c (h ph) (w pw)", h=grid[0], w=grid[1], ph=p[0], pw=p[1])
    return rearrange(tokens, "b (t h w) (c pt ph pw) -> b c (t pt) (h ph) (w pw)",
                     t=grid[0], h=grid[1], w=grid[2], pt=p[0], ph=p[1], pw=p[2])


class PatchEmbed(nn.Module):
    """Patch (or tubelet) embedding: a convolution with kernel = stride = patch size.

    ``PatchEmbed(1, 64, (4, 4))`` maps images (B, 1, H, W) to tokens (B, H/4 * W/4, 64);
    ``PatchEmbed(4, 64, (2, 2, 2))`` maps videos (B, 4, T, H, W) to (B, T/2 * H/2 * W/2, 64).
    ``forward`` also returns the grid of patches, which positions and ``unpatchify`` need.
    """

    def __init__(self, in_channels: int, dim: int, patch_size):
        super().__init__()
        self.patch_size = tuple(patch_size) if not isinstance(patch_size, int) else (patch_size, patch_size)
        conv = {2: nn.Conv2d, 3: nn.Conv3d}[len(self.patch_size)]
        self.proj = conv(in_channels, dim, kernel_size=self.patch_size, stride=self.patch_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        if x.ndim != len(self.patch_size) + 2 or x.shape[1] != self.proj.in_channels:
            raise ValueError(f"expected input (B, {self.proj.in_channels}, "
                             f"{', '.join('THW'[-len(self.patch_size):])}), got {tuple(x.shape)}")
        _patch_size(x, self.patch_size)
        x = self.proj(x)  # (B, D, [t,] h, w)
        grid = tuple(x.shape[2:])
        return rearrange(x, "b d ... -> b (...) d"), grid  # (B, N, D)


def sincos_1d(positions: torch.Tensor, dim: int, base: float = 10_000.0) -> torch.Tensor:
    """Transformer sin-cos embedding of positions (N,) -> (N, dim).

    PE(p, 2i) = sin(p / base^(2i/dim)),  PE(p, 2i+1) = cos(p / base^(2i/dim)); here the sines fill
    the first half and the cosines the second, which is the same set of features.
    """
    if dim % 2:
        raise ValueError(f"a sin-cos embedding needs an even dim, got {dim}")
    omega = base ** (-torch.arange(dim // 2, dtype=torch.float64, device=positions.device) / (dim // 2))  # (dim/2,) frequencies
    angles = positions.to(torch.float64)[:, None] * omega[None]  # (N, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()  # (N, dim)


def axis_dims(dim: int, axes: int) -> list[int]:
    """Split ``dim`` into ``axes`` even parts, as equal as possible (the leading axis gets the rest)."""
    if dim % 2 or dim < 2 * axes:
        raise ValueError(f"dim must be even and at least {2 * axes} for {axes} axes, got {dim}")
    part = (dim // axes) // 2 * 2
    return [dim - part * (axes - 1)] + [part] * (axes - 1)


def sincos_coords(coords: torch.Tensor, dim: int) -> torch.Tensor:
    """Fixed positions for explicit grid coordinates (N, A) -> (N, dim): one sin-cos slice per axis."""
    if coords.ndim != 2:
        raise ValueError(f"expected coordinates of shape (N, axes), got {tuple(coords.shape)}")
    dims = axis_dims(dim, coords.shape[1])
    return torch.cat([sincos_1d(coords[:, a], d) for a, d in enumerate(dims)], dim=1)  # (N, dim)


def grid_coords(grid) -> torch.Tensor:
    """The (t, h, w) (or (h, w)) coordinates of every cell of a grid, in raster order: (prod(grid), len(grid))."""
    mesh = torch.meshgrid(*[torch.arange(int(g)) for g in grid], indexing="ij")
    return torch.stack([m.reshape(-1) for m in mesh], dim=1)  # (N, A)


def sincos_nd(grid, dim: int) -> torch.Tensor:
    """Fixed positions for a grid of patches: (h, w) or (t, h, w) -> (prod(grid), dim).

    Each axis gets its own 1D sin-cos embedding on a slice of ``dim``, and the slices are
    concatenated, so any grid size works, including sizes never seen in training.
    """
    return sincos_coords(grid_coords(grid), dim)

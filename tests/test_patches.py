"""Patches: exact round trips, patch order, conv == linear, sin-cos positions, clear errors."""

import pytest
import torch
from torch import nn

from minisora.patches import PatchEmbed, axis_dims, patchify, sincos_1d, sincos_nd, unpatchify


@pytest.mark.parametrize("shape, patch", [
    ((2, 1, 28, 28), (4, 4)), ((2, 3, 28, 28), (7, 4)), ((1, 1, 28, 28), (28, 28)), ((2, 2, 64, 32), (1, 1)),
    ((2, 1, 20, 64, 64), (2, 8, 8)), ((1, 4, 10, 16, 16), (5, 2, 4)), ((2, 1, 4, 8, 8), (4, 1, 1)),
    ((1, 1, 3, 6, 9), (1, 3, 3)),
])
def test_round_trip(shape, patch):
    x = torch.randn(shape)
    tokens = patchify(x, patch)
    grid = [s // p for s, p in zip(shape[2:], patch)]
    assert tokens.shape == (shape[0], torch.tensor(grid).prod(), shape[1] * torch.tensor(patch).prod())
    torch.testing.assert_close(unpatchify(tokens, grid, patch), x, rtol=0, atol=0)


def test_token_order_is_raster_and_features_are_c_pt_ph_pw():
    x = torch.randn(1, 2, 4, 6, 8)
    tokens = patchify(x, (2, 3, 4))  # grid (2, 2, 2)
    t, h, w = 1, 0, 1
    n = (t * 2 + h) * 2 + w
    expected = x[0, :, 2 * t:2 * t + 2, 3 * h:3 * h + 3, 4 * w:4 * w + 4].reshape(-1)  # (C, pt, ph, pw) flattened
    torch.testing.assert_close(tokens[0, n], expected)


@pytest.mark.parametrize("shape, patch", [((2, 3, 28, 28), (4, 4)), ((2, 4, 8, 16, 16), (2, 4, 4))])
def test_patch_embedding_conv_equals_linear_on_flattened_patches(shape, patch):
    torch.manual_seed(0)
    embed = PatchEmbed(shape[1], 32, patch)
    linear = nn.Linear(shape[1] * torch.tensor(patch).prod().item(), 32)
    with torch.no_grad():
        linear.weight.copy_(embed.proj.weight.reshape(32, -1))  # (D, C*prod(p))
        linear.bias.copy_(embed.proj.bias)
    x = torch.randn(shape)
    tokens, grid = embed(x)
    assert grid == tuple(s // p for s, p in zip(shape[2:], patch))
    torch.testing.assert_close(tokens, linear(patchify(x, patch)), rtol=1e-5, atol=1e-5)


def test_bad_shapes_have_clear_errors():
    with pytest.raises(ValueError, match=r"H=30 is not divisible by the patch size 4"):
        patchify(torch.zeros(1, 1, 30, 28), 4)
    with pytest.raises(ValueError, match=r"T=5 is not divisible by the patch size 2"):
        patchify(torch.zeros(1, 1, 5, 8, 8), (2, 4, 4))
    with pytest.raises(ValueError, match="got a tensor of rank 3"):
        patchify(torch.zeros(1, 28, 28), 4)
    with pytest.raises(ValueError, match=r"needs a patch size with 3 entries"):
        patchify(torch.zeros(1, 1, 4, 8, 8), (4, 4))
    with pytest.raises(ValueError, match=r"expected tokens \(B, 49, C\*16\)"):
        unpatchify(torch.zeros(1, 48, 16), (7, 7), 4)
    with pytest.raises(ValueError, match=r"expected input \(B, 1, H, W\), got \(1, 3, 28, 28\)"):
        PatchEmbed(1, 8, 4)(torch.zeros(1, 3, 28, 28))


def test_sincos_1d_matches_the_transformer_formula():
    pe = sincos_1d(torch.arange(50), 16)
    i = torch.arange(8)
    p = 13
    torch.testing.assert_close(pe[p, :8], torch.sin(p / 10_000 ** (i / 8)))
    torch.testing.assert_close(pe[p, 8:], torch.cos(p / 10_000 ** (i / 8)))


def test_sincos_dot_product_depends_only_on_offset():
    pe = sincos_1d(torch.arange(40), 32).double()
    dots = torch.stack([pe[p] @ pe[p + 5] for p in range(30)])
    torch.testing.assert_close(dots, dots[0].expand(30), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("grid, dim", [((7,), 16), ((7, 7), 64), ((3, 5), 10), ((10, 8, 8), 96), ((2, 3, 4), 12)])
def test_sincos_nd_shapes_and_uniqueness(grid, dim):
    pe = sincos_nd(grid, dim)
    assert pe.shape == (torch.tensor(grid).prod(), dim)
    distances = torch.cdist(pe, pe) + torch.eye(len(pe))
    assert distances.min() > 1e-3, "two grid positions share an embedding"


def test_sincos_nd_is_per_axis_and_works_for_any_grid():
    dims = axis_dims(96, 3)
    assert sum(dims) == 96 and all(d % 2 == 0 for d in dims)
    small, large = sincos_nd((4, 5, 6), 96), sincos_nd((9, 11, 13), 96)
    # position (t, h, w) = (1, 2, 3) has the same embedding in both grids
    torch.testing.assert_close(small[(1 * 5 + 2) * 6 + 3], large[(1 * 11 + 2) * 13 + 3])
    expected = torch.cat([sincos_1d(torch.tensor([p]), d)[0] for p, d in zip((1, 2, 3), dims)])
    torch.testing.assert_close(small[(1 * 5 + 2) * 6 + 3], expected)
    with pytest.raises(ValueError, match="even"):
        sincos_nd((4, 4), 15)

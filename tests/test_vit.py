"""The ViT and its attention: shapes, SDPA == attention from scratch, masks, pooling."""

import pytest
import torch

from minisora import vit
from minisora.vit import Attention, ViT, attention


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_vit_shapes_for_any_size(pool):
    model = ViT(num_classes=10, patch_size=4, dim=32, depth=2, heads=4, pool=pool)
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert model.features(torch.randn(2, 1, 32, 20)).shape == (2, 32)  # sizes never seen: positions are fixed
    assert model.tokens(torch.randn(2, 1, 28, 28)).shape == (2, 49 + (pool == "cls"), 32)


def test_sdpa_equals_attention_from_scratch():
    torch.manual_seed(0)
    attn = Attention(32, heads=4)
    x = torch.randn(2, 10, 32)
    q, k, v = attn.qkv_heads(x)  # (B, h, N, d)
    scratch = torch.softmax(q @ k.transpose(-2, -1) / 8 ** 0.5, dim=-1) @ v
    expected = attn.proj(scratch.transpose(1, 2).reshape(2, 10, 32))
    torch.testing.assert_close(attn(x), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(attn.weights(x).sum(-1), torch.ones(2, 4, 10))


def test_masked_keys_are_ignored():
    torch.manual_seed(0)
    attn = Attention(16, heads=2)
    x = torch.randn(1, 6, 16)
    mask = torch.ones(1, 1, 6, 6, dtype=torch.bool)
    mask[..., 4:] = False  # nobody attends to tokens 4 and 5
    y = x.clone()
    y[:, 4:] = torch.randn(1, 2, 16)
    torch.testing.assert_close(attn(x, mask)[:, :4], attn(y, mask)[:, :4])
    assert not torch.allclose(attn(x)[:, :4], attn(y)[:, :4])


def test_a_batch_over_one_launch_is_attended_in_chunks_with_the_same_result(monkeypatch):
    """More sequences x heads than one CUDA launch takes go in chunks; masks per clip or shared follow."""
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 7, 2, 5, 8).unbind(0)  # (B=7, h=2, N=5, d=8) each
    per_clip, shared = torch.rand(7, 1, 5, 5) > 0.3, torch.rand(1, 1, 1, 5) > 0.3
    per_clip[..., 0] = shared[..., 0] = True  # every query sees a key
    whole = [attention(q, k, v, mask) for mask in (None, per_clip, shared)]
    monkeypatch.setattr(vit, "LAUNCH", 6)  # 3 sequences of 2 heads per call: chunks of 3, 3 and 1
    for mask, expected in zip((None, per_clip, shared), whole):
        torch.testing.assert_close(attention(q, k, v, mask), expected)


def test_without_positions_a_transformer_cannot_see_patch_order():
    torch.manual_seed(0)
    model = ViT(dim=32, depth=2, heads=4, pool="mean").eval()
    tokens, _ = model.patch_embed(torch.randn(1, 1, 28, 28))
    shuffled = tokens[:, torch.randperm(tokens.shape[1])]
    blocks = lambda z: model.blocks[1](model.blocks[0](z)).mean(1)  # (B, D), mean-pooled
    torch.testing.assert_close(blocks(tokens), blocks(shuffled), rtol=1e-5, atol=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="dim=30 must be divisible by heads=4"):
        Attention(30, 4)
    with pytest.raises(ValueError, match="pool must be 'cls' or 'mean'"):
        ViT(pool="max")

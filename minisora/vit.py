"""A small Vision Transformer (Dosovitskiy et al. 2021), sized to train on a CPU in minutes.

    tokens  z_0 = [x_cls; E x_1; ...; E x_N] + PE          (patch embedding E, fixed sin-cos PE)
    block   z' = z + MSA(LN(z)),  z = z' + MLP(LN(z'))       (pre-norm, as in ViT and GPT-2)
    head    y = W LN(z_L)[cls]   (or the mean over patch tokens)

``Attention``, ``MLP`` and ``Block`` are the building blocks that the NaViT and DiT modules reuse.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .patches import PatchEmbed, sincos_nd


LAUNCH = 65_535  # the most sequences x heads one attention call takes: CUDA's kernels put them on one grid axis


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d) + mask) V for q, k, v (B, h, N, d), mask (B or 1, 1, N or 1, M); a batch with more
    than ``LAUNCH`` sequences x heads (factorized attention over a large batch) goes in chunks of the batch."""
    size = max(1, LAUNCH // q.shape[1])
    if q.shape[0] <= size:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, h, N, d)
    rows = lambda m, i: m if m is None or m.shape[0] == 1 else m[i:i + size]
    return torch.cat([F.scaled_dot_product_attention(q[i:i + size], k[i:i + size], v[i:i + size],
                                                     attn_mask=rows(mask, i)) for i in range(0, q.shape[0], size)])


class Attention(nn.Module):
    """Multi-head self-attention: softmax(Q K^T / sqrt(d_head) + mask) V, heads concatenated."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} must be divisible by heads={heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def qkv_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        qkv = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.heads)  # (3, B, h, N, d)
        return qkv[0], qkv[1], qkv[2]

    def forward(self, x: torch.Tensor, mask=None) -> torch.Tensor:
        """x (B, N, D) -> (B, N, D).

        ``mask`` is None, a boolean tensor (B or 1, 1, N, N) that is True where attention is allowed,
        or a callable (q, k, v) -> output that computes masked attention itself, such as
        ``packing.PackedAttention`` for packed sequences.
        """
        q, k, v = self.qkv_heads(x)
        if callable(mask):
            out = mask(q, k, v)
        else:
            out = attention(q, k, v, mask)  # (B, h, N, d)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))  # (B, N, D)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The attention matrix softmax(Q K^T / sqrt(d)) (B, h, N, N), for looking at what a head attends to."""
        q, k, _ = self.qkv_heads(x)
        return (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(-1)


class MLP(nn.Sequential):
    """The position-wise feed-forward network: Linear -> GELU -> Linear."""

    def __init__(self, dim: int, hidden: int):
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class Block(nn.Module):
    """Pre-norm transformer block: x + MSA(LN(x)), then + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), MLP(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, mask=None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """A ViT classifier for (B, C, H, W) images with fixed sin-cos positions (any H, W divisible by the patch)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, patch_size: int = 4, dim: int = 128,
                 depth: int = 6, heads: int = 4, mlp_ratio: float = 4.0, pool: str = "cls"):
        super().__init__()
        if pool not in ("cls", "mean"):
            raise ValueError(f"pool must be 'cls' or 'mean', got {pool!r}")
        self.pool = pool
        self.patch_embed = PatchEmbed(in_channels, dim, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if pool == "cls" else None
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self.apply(self._init)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=0.02)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> the token sequence the blocks read (B, [1 +] N, D)."""
        x, grid = self.patch_embed(x)  # (B, N, D)
        x = x + sincos_nd(grid, x.shape[-1]).to(x)  # + PE
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1)  # (B, 1 + N, D)
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled, normalised representation (B, D) that the head classifies."""
        z = self.tokens(x)
        for block in self.blocks:
            z = block(z)
        z = self.norm(z)
        return z[:, 0] if self.pool == "cls" else z.mean(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (B, num_classes)

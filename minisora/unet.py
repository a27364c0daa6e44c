"""A small conditional U-Net denoiser for 28x28 digits (notebook 04).

    h = conv(x);  per level: ResBlock(h, emb) -> skip, downsample;  middle: ResBlock, self-attention-free
    back up: upsample, concat skip, ResBlock(h, emb);  out = conv(GN(h)), zero-initialised

The condition enters every residual block as a FiLM scale and shift (Perez et al. 2018) computed from
``emb = TimestepEmbedding(time) + ClassEmbedding(label)``; label ``num_classes`` is the **null class**
that classifier-free guidance uses (training drops the label to it with probability ``p_uncond``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .checkpoint import load_model
from .diffusion import TimestepEmbedding
from .digits import DATA_DIR

DENOISER_PATHS = {"ddpm": DATA_DIR / "denoiser_ddpm.pt", "flow": DATA_DIR / "denoiser_flow.pt"}


@dataclass(frozen=True)
class UNetConfig:
    channels: tuple[int, ...] = (64, 128)  # width at 14x14 and 7x7 (pixels enter as 2x2 blocks)
    emb_dim: int = 128
    num_classes: int = 10  # labels 0..9; label 10 is the null class
    image_size: int = 28


class ResBlock(nn.Module):
    """h + conv(SiLU(FiLM(GN(conv(SiLU(GN(h)))), emb))), with FiLM(h) = h (1 + scale) + shift."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(8, c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * c_out)
        self.norm2, self.conv2 = nn.GroupNorm(8, c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity (plus its skip projection)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(nn.functional.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)  # (B, C, 1, 1) each
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(nn.functional.silu(h))


class UNet(nn.Module):
    """model(x_t (B, 1, 28, 28), time (B,), label (B,)) -> prediction (B, 1, 28, 28)."""

    def __init__(self, config: UNetConfig = UNetConfig()):
        super().__init__()
        self.config = config
        c, e = config.channels, config.emb_dim
        self.time_embed = TimestepEmbedding(e)
        self.label_embed = nn.Embedding(config.num_classes + 1, e)  # + the null class
        self.stem = nn.Sequential(nn.PixelUnshuffle(2), nn.Conv2d(4, c[0], 3, padding=1))  # 2x2 pixels -> 4 channels
        self.down = nn.ModuleList(ResBlock(c_in, c_out, e) for c_in, c_out in zip(c[:1] + c[:-1], c))
        self.pool = nn.AvgPool2d(2)
        self.middle = ResBlock(c[-1], c[-1], e)
        c_below = c[1:] + c[-1:]  # channels arriving at level i from below: level i+1's, or the middle's
        self.up = nn.ModuleList(ResBlock(c_below[i] + c[i], c[i], e) for i in reversed(range(len(c))))
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.out = nn.Sequential(nn.GroupNorm(8, c[0]), nn.SiLU(), nn.Conv2d(c[0], 4, 3, padding=1), nn.PixelShuffle(2))
        nn.init.zeros_(self.out[2].weight)  # the first prediction is 0 everywhere
        nn.init.zeros_(self.out[2].bias)

    @property
    def null_label(self) -> int:
        return self.config.num_classes

    def forward(self, x: torch.Tensor, time: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        size = self.config.image_size
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, size, size):
            raise ValueError(f"expected images (B, 1, {size}, {size}), got {tuple(x.shape)}")
        emb = self.time_embed(time) + self.label_embed(label)  # (B, E)
        h, skips = self.stem(x), []
        for i, block in enumerate(self.down):
            h = block(h if i == 0 else self.pool(h), emb)  # (B, c_i, 28 / 2^i, 28 / 2^i)
            skips.append(h)
        h = self.middle(h, emb)
        for i, block in enumerate(self.up):
            skip = skips.pop()
            h = block(torch.cat([h if i == 0 else self.upsample(h), skip], dim=1), emb)  # (B, c, same size as skip)
        return self.out(h)


def load_denoiser(objective_or_path: str | Path = "ddpm", device: str = "cpu") -> tuple[UNet, str]:
    """A shipped denoiser by objective ("ddpm", "flow") or a checkpoint path; returns (model, objective)."""
    path = DENOISER_PATHS.get(str(objective_or_path), Path(objective_or_path))
    model, ckpt = load_model(path, UNet, UNetConfig, device, keys=("objective",), kind="denoiser")
    return model, ckpt["objective"]

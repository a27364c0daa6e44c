"""Representation alignment (REPA, Yu et al. 2024, arXiv 2410.06940) for the video DiT.

Before a DiT can draw a 3 it must learn what a 3 is, and a denoising loss teaches that slowly. REPA
adds a second loss: the DiT's hidden tokens after an early block, through a small MLP, should predict
what a frozen encoder sees in the *clean* video at the same place:

    L = L_diffusion + lambda * mean_n [ -cos( MLP(h_n(x_t)), y_n(x_0) ) ]        (REPA, eq. 4)

REPA aligns with DINOv2. Here the encoder is our own small CNN (never the evaluator, which judges the
samples: nothing trains against it). It is trained once (``python -m minisora train-aligner``) to say, for
every 8x8-pixel cell of a frame, which digit covers it, or none: features that know digit shapes.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .checkpoint import load_model
from .data import Clip, render, resize_digit
from .digits import DATA_DIR, Digits

ALIGNER_PATH = DATA_DIR / "aligner.pt"
CELL = 8  # pixels per side of the cell the encoder labels: one token of the (2, 2, 2)-tubelet DiT on frame latents
BACKGROUND = 10  # the label of a cell no digit covers (digits are 0-9)


def cell_labels(clip: Clip, digits: Digits, cell: int = CELL, ink: float = 0.1) -> np.ndarray:
    """(T, H/cell, W/cell) int64: the class of the digit with the most ink in each cell, or BACKGROUND
    where no digit's mean ink (0-1) reaches ``ink``."""
    T, H, W = clip.video.shape
    per_digit = []
    for k, i in enumerate(clip.digit_ids):
        sprite = resize_digit(digits.images[i], clip.config.digit_size)[None]  # (1, d, d)
        alone = render(sprite, clip.motion.positions[:, k:k + 1], clip.config) / 255.0  # (T, H, W): this digit alone
        per_digit.append(alone.reshape(T, H // cell, cell, W // cell, cell).mean((2, 4)))  # (T, h, w)
    cover = np.stack(per_digit)  # (K, T, h, w)
    return np.where(cover.max(0) >= ink, clip.labels[cover.argmax(0)], BACKGROUND)


class FrameEncoder(nn.Module):
    """Frames (B, 1, H, W) in [0, 1] -> features (B, F, H/8, W/8); ``classify`` adds the cell labels' logits."""

    def __init__(self, dim: int = 64):
        super().__init__()
        self.dim = dim
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 4, stride=4),  # (B, 32, H/4, W/4): 4x4-pixel patches
            nn.GELU(), nn.Conv2d(32, 32, 3, padding=1),
            nn.GELU(), nn.Conv2d(32, dim, 3, stride=2, padding=1),  # (B, F, H/8, W/8)
            nn.GELU(), nn.Conv2d(dim, dim, 3, padding=1),
            nn.GELU(), nn.Conv2d(dim, dim, 3, padding=1))  # receptive field 52 px: a whole digit from any cell
        self.head = nn.Conv2d(dim, BACKGROUND + 1, 1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.features(frames)

    def classify(self, frames: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(frames))  # (B, 11, H/8, W/8)


def load_aligner(path=ALIGNER_PATH, device="cpu") -> FrameEncoder:
    """The frozen encoder REPA aligns with (written by ``python -m minisora train-aligner``)."""
    return load_model(path, FrameEncoder, device=device, kind="aligner")[0].requires_grad_(False)


class Projector(nn.Module):
    """REPA's MLP from the DiT's hidden tokens (B, N, D) to the encoder's feature size (B, N, F)."""

    def __init__(self, dim: int, features: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, 2 * dim), nn.SiLU(), nn.Linear(2 * dim, features))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


@torch.no_grad()
def token_targets(encoder: FrameEncoder, video: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """What each token should know: encoder features of the clean video (B, 1, T, H, W), averaged over the
    frames and cells each token of the (t, h, w) grid covers -> (B, t*h*w, F)."""
    B, T = video.shape[0], video.shape[2]
    y = encoder(rearrange(video, "b c T H W -> (b T) c H W"))  # (B*T, F, H/8, W/8)
    y = F.adaptive_avg_pool2d(y, grid[1:])  # (B*T, F, h, w)
    y = rearrange(y, "(b t f) d h w -> b t f h w d", b=B, t=grid[0], f=T // grid[0])  # f: frames per token
    return rearrange(y.mean(2), "b t h w d -> b (t h w) d")  # (B, N, F)


def alignment_loss(projected: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """-cos(MLP(h_n), y_n), averaged over tokens and clips (REPA's sim(., .) is the cosine)."""
    return -F.cosine_similarity(projected, targets, dim=-1).mean()


def aligned_block(depth: int) -> int:
    """The block whose output is aligned: about a third of the way up (REPA: layer 8 of SiT-XL's 28)."""
    return max(1, round(depth / 3)) - 1


def flops_per_frame(encoder_dim: int = 64, size: int = 64) -> float:
    """Forward FLOPs of the frozen encoder on one size x size frame (matmul-like terms)."""
    s4, s8 = (size // 4) ** 2, (size // 8) ** 2
    return 2 * (s4 * 32 * 16 + s4 * 32 * 32 * 9 + s8 * encoder_dim * 32 * 9 + 2 * s8 * encoder_dim ** 2 * 9)


def projector_flops(dim: int, features: int) -> float:
    """Training FLOPs of the projector per token (x3: forward and backward)."""
    return 3 * 2 * (dim * 2 * dim + 2 * dim * features)


"""Native sizes: the mixed shapes a packed DiT trains on (Sora trains on videos at their native size, aspect
ratio and duration; NaViT's Patch n' Pack is how one batch holds them all).

Each training clip draws its canvas height and width from ``SIDES`` (any pair: square, wide up to 4:1, tall up
to 1:4) and its length from ``FRAMES`` (1 = a still image), among the shapes whose tokens fit what is left of the
step's budget, so a step's row is filled to within the smallest clip. The sizes in ``HELD_OUT`` are never drawn,
so the evaluation can ask how a model does at a size it never saw.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .dit import DiTConfig
from .vae import latent_space

SIDES = (32, 48, 64, 80, 128)  # canvas sides in px (any multiple of 8 fits: frame VAE 4x, patch 2)
FRAMES = (1, 4, 8, 12, 16, 20, 24, 32, 40)  # clip lengths; 1 is a still image
HELD_OUT = (96,)  # a side never trained on (between 80 and 128): 96x96 tests sizes the model never saw
SQUARE = 64  # the one canvas of the usual approach: every clip cropped to a centred square, resized to 64x64


def pixel_frames(frames: int, config: DiTConfig) -> int:
    """The frames a clip is given to the model as: a still (1 frame) is shown for one frame of tubelets."""
    return config.tubelet_frames if frames == 1 else frames


def patch_grid(shape: tuple[int, int, int], config: DiTConfig) -> tuple[int, int, int]:
    """The (t, h, w) patch grid of a clip of (frames, height, width) pixels."""
    _, temporal, spatial = latent_space(config.vae)
    pt, ph, pw = config.patch
    frames, height, width = shape
    return pixel_frames(frames, config) // (temporal * pt), height // (spatial * ph), width // (spatial * pw)


def draw_shape(rng: np.random.Generator, config: DiTConfig, max_tokens: int) -> tuple[int, int, int]:
    """One clip's (frames, height, width) from the mix, drawn again until its tokens fit ``max_tokens``."""
    while True:
        shape = (int(rng.choice(FRAMES)), int(rng.choice(SIDES)), int(rng.choice(SIDES)))
        if math.prod(patch_grid(shape, config)) <= max_tokens:
            return shape


def draw_shapes(rng: np.random.Generator, config: DiTConfig, budget: int) -> list[tuple[int, int, int]]:
    """One step's shapes, filling ``budget`` tokens: each next clip is drawn among the shapes that fit the room left,
    until not even the smallest clip (a 32x32 still) would. Later clips in a step are therefore smaller on average."""
    smallest = math.prod(patch_grid((1, min(SIDES), min(SIDES)), config))
    shapes, room = [], budget
    while room >= smallest:
        shapes.append(draw_shape(rng, config, room))
        room -= math.prod(patch_grid(shapes[-1], config))
    return shapes


def square_crop(video: torch.Tensor, side: int = SQUARE) -> torch.Tensor:
    """The usual approach Sora's report compares against: a clip (..., H, W) cut to its centred square and resized
    to ``side`` x ``side``. Digits near a long side's ends are cut or lost; small canvases are enlarged, large ones
    shrunk."""
    height, width = video.shape[-2:]
    s = min(height, width)
    top, left = (height - s) // 2, (width - s) // 2
    square = video[..., top:top + s, left:left + s]  # (..., s, s)
    lead = square.shape[:-2]
    resized = F.interpolate(square.reshape(-1, 1, s, s), size=(side, side), mode="bilinear", antialias=s > side,
                            align_corners=False)  # (N, 1, side, side)
    return resized.reshape(*lead, side, side).clamp(0, 1)

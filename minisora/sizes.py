"""Native sizes: the mixed shapes a packed DiT trains on (Sora trains on videos at their native size, aspect
ratio and duration; NaViT's Patch n' Pack is how one batch holds them all).

Each training clip draws its canvas height and width from ``SIDES`` (any pair: square, wide up to 4:1, tall up
to 1:4) and its length from ``FRAMES`` (1 = a still image), as long as its tokens fit the step's budget. The
sizes in ``HELD_OUT`` are never drawn, so the evaluation can ask how a model does at a size it never saw.
"""

from __future__ import annotations

import numpy as np

SIDES = (32, 48, 64, 80, 128)  # canvas sides in px (multiples of 16: the frame VAE's 4 x a patch of 2 x 2 cells)
FRAMES = (1, 4, 8, 12, 16, 20, 24, 32, 40)  # clip lengths; 1 is a still image
HELD_OUT = (96,)  # a side never trained on (between 80 and 128): 96x96 tests sizes the model never saw


def draw_shapes(rng: np.random.Generator, budget: int, tokens_of) -> list[tuple[int, int, int]]:
    """Shapes (frames, height, width) for one step: drawn one by one until the next would not fit in ``budget``
    tokens (``tokens_of(shape)``); a shape larger than the whole budget is drawn again."""
    shapes, used = [], 0
    while True:
        shape = (int(rng.choice(FRAMES)), int(rng.choice(SIDES)), int(rng.choice(SIDES)))
        n = tokens_of(shape)
        if n > budget:
            continue
        if used + n > budget:
            return shapes
        shapes.append(shape)
        used += n

"""Where the digits are in a frame: the windows the evaluator reads and the physics probe tracks.

Greedy search: the 28x28 window with the most ink, re-centred on its ink's centre of mass (MNIST
digits are centred that way), blanked, repeat. Found once per clip by ``evaluator.read_clip``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

DIGIT = 28  # MNIST digits, and the evaluator's crops, are 28x28


def locate_digits(frame, num_digits: int, size: int = DIGIT) -> np.ndarray:
    """Top-left corners (K, 2) of the ``num_digits`` size x size windows holding the most ink.

    Greedy: take the window with the most ink, re-centre it on its ink's centre of mass, blank the
    ink it covers, repeat. Heavily overlapping digits cannot be told apart this way (nor by eye):
    when less than 10% of the first window's ink is left, the last window is repeated.
    """
    f = torch.as_tensor(np.asarray(frame, dtype=np.float32)).clone()  # (H, W)
    H, W = f.shape
    if H < size or W < size:
        raise ValueError(f"a frame of {H}x{W} is smaller than a {size}x{size} digit window")
    corners, first_mass = [], None
    for _ in range(num_digits):
        mass = F.avg_pool2d(f[None, None], size, stride=1)[0, 0]  # (H-size+1, W-size+1) window means
        if first_mass is None:
            first_mass = float(mass.max())
        elif mass.max() < 0.1 * first_mass:  # no ink left: this digit hides behind one already found
            corners.append(corners[-1])
            continue
        y, x = divmod(int(mass.argmax()), mass.shape[1])
        window = f[y:y + size, x:x + size]
        if window.sum() > 0:  # re-centre on the centre of mass
            ys, xs = torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32)
            cy = float((window.sum(1) * ys).sum() / window.sum())
            cx = float((window.sum(0) * xs).sum() / window.sum())
            y = min(max(round(y + cy - (size - 1) / 2), 0), H - size)
            x = min(max(round(x + cx - (size - 1) / 2), 0), W - size)
        corners.append((y, x))
        f[y:y + size, x:x + size] = 0
    return np.array(corners, dtype=np.int64)


def crop_digits(video, num_digits: int) -> tuple[np.ndarray, np.ndarray]:
    """Crops (T, K, 28, 28) of the digits found in each frame of a (T, H, W) video, and their corners (T, K, 2)."""
    video = np.asarray(video)
    if video.ndim != 3:
        raise ValueError(f"expected a video of shape (T, H, W), got {video.shape}")
    corners = np.stack([locate_digits(frame, num_digits) for frame in video])  # (T, K, 2)
    crops = np.stack([[frame[y:y + DIGIT, x:x + DIGIT] for y, x in cs] for frame, cs in zip(video, corners)])
    return crops, corners


def separated(points: np.ndarray, size: int = DIGIT) -> np.ndarray:
    """(T, K) bool for digit boxes at ``points`` (T, K, 2): True where a box overlaps no other box of its frame."""
    gap = np.abs(points[:, :, None] - points[:, None]).max(-1)  # (T, K, K) Chebyshev distance between digits
    return (gap + np.eye(points.shape[1]) * size >= size).all(-1)

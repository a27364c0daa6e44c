"""Object permanence: when two digits cross, does each come out as itself, going its own way?

A crossing clip is a real two-digit test clip whose digits (different classes) are apart in some of the
first ``GIVEN`` frames (at least ``SEEN``), pass over each other (box corners within ``CROSS`` px) in the frames after, and are
apart again in the last ``AFTER`` frames. The model is given the first ``GIVEN`` frames (conditioning
frames by masks) and the caption, and makes the rest, crossing included. In each of the last ``AFTER``
frames the evaluator reads the two digit windows, and per frame:

    kept       the two digits read are the clip's two digits (none vanished, merged or turned into another)
    in place   kept, and each digit's window is within ``PLACE`` px of where that digit really is:
               the same digit leaves in the right direction (a swap of identities at the crossing fails it)
    ink        the frame's ink against the real frame's (a vanished digit shows as about one half)

The same scores on the real continuation say what the evaluator reaches (its reading errors included), and the
same scores on clips whose digits stay apart after the given frames (``crossing=False``) say how much of a
failure is the crossing's and how much is the model's two-digit drawing and placing in general.
"""

from __future__ import annotations

import numpy as np
import torch

from .data import MovingMNIST
from .evaluator import read_clip
from .geometry import separated
from .sample import generate

GIVEN = 10  # frames given: the digits approaching
SEEN = 3  # given frames in which the digits must be apart: the model has seen both
CROSS = 10.0  # px: box corners this close (Chebyshev) means the digits are over each other
AFTER = 3  # the last frames, where both digits must be apart again
PLACE = 6.0  # px: a window this close to the digit's true corner is in place


def crossing_clips(num_clips: int, seed: int = 0, frames: int = 20, scan: int = 100_000, crossing: bool = True):
    """Real crossing clips: videos (N, T, H, W) in [0, 1], their labels (N, 2) and true corners (N, T, 2, 2),
    the first ``num_clips`` found among the test clips of ``seed``; ``crossing=False``: clips whose digits stay
    apart after the given frames instead (the control)."""
    data = MovingMNIST("test", scan, seed=seed, num_digits=2, num_frames=frames)
    videos, labels, corners = [], [], []
    for i in range(scan):
        clip = data.clip(i)
        p = clip.motion.positions  # (T, 2, 2) top-left corners
        gap = np.abs(p[:, 0] - p[:, 1]).max(-1)  # (T,) Chebyshev distance between the boxes
        after = (gap[GIVEN:-AFTER] < CROSS).any() if crossing else separated(p[GIVEN:]).all()
        if (clip.labels[0] != clip.labels[1] and separated(p[:GIVEN]).all(1).sum() >= SEEN and after
                and separated(p[-AFTER:]).all()):
            videos.append(clip.video / 255.0), labels.append(clip.labels), corners.append(p)
            if len(videos) == num_clips:
                break
    if len(videos) < num_clips:
        raise ValueError(f"only {len(videos)} {'crossing' if crossing else 'apart'} clips among {scan} test clips "
                         f"of seed {seed}; asked for {num_clips}")
    return torch.tensor(np.stack(videos), dtype=torch.float32), np.stack(labels), np.stack(corners)


def permanence_scores(evaluator, videos, labels: np.ndarray, corners: np.ndarray, real=None) -> dict:
    """Shares of the last ``AFTER`` frames (over all clips) where both digits are kept, and kept in place; the
    ink against ``real`` (default: the videos themselves)."""
    videos = np.asarray(videos)
    kept, placed = [], []
    for video, wanted, truth in zip(videos, labels, corners):
        read = read_clip(evaluator, video[-AFTER:], 2)
        for found, windows, true in zip(read.labels, read.corners, truth[-AFTER:]):
            ok = sorted(found.tolist()) == sorted(wanted.tolist())
            kept.append(ok)
            where = {int(d): w for d, w in zip(found, windows)}  # digit read -> its window
            placed.append(ok and all(np.abs(where[int(d)] - np.floor(c)).max() <= PLACE for d, c in zip(wanted, true)))
    reference = videos if real is None else np.asarray(real)
    ink = videos[:, -AFTER:].sum((-2, -1)).mean() / reference[:, -AFTER:].sum((-2, -1)).mean()
    return {"kept": float(np.mean(kept)), "in_place": float(np.mean(placed)), "ink_vs_real": float(ink)}


def permanence_table(model, codec, objective, evaluator, num_clips: int, guidance: float, steps: int, batch: int,
                     seed: int, progress: bool) -> dict:
    """Crossings made by the model from the first ``GIVEN`` frames and the caption, beside the real ones, and the
    same for clips whose digits stay apart (the control). (``batch`` and ``progress`` are unused: each kind is one
    batch.)"""
    result = {"clips": num_clips}
    for name, crossing in (("crossing", True), ("apart", False)):
        real, labels, corners = crossing_clips(num_clips, seed, crossing=crossing)
        prompts = [f"{min(a, b)} and {max(a, b)}" for a, b in labels]
        known = torch.arange(real.shape[1]) < GIVEN
        out = generate(model, codec, prompts, objective, guidance=guidance, steps=steps, seed=seed,
                       context=real[:, None], known=known)[:, 0].cpu()
        result[name] = {"generated": permanence_scores(evaluator, out, labels, corners, real),
                        "real": permanence_scores(evaluator, real, labels, corners)}
    return result

"""How a text-to-video model does at sizes other than its training clip (``python -m minisora eval --sizes N``).

For each size of ``SIZES`` (the standard clip; wide and tall canvases; a side the mixed-size training never
draws; a still image; a clip twice as long) it generates N one-digit clips ("0".."9" in turn) and measures, next
to real clips of test digits at the same size: text alignment, identity, the physics probe (not for a still),
and **framing**, the share of frames in which a digit is cut by the canvas edge. Moving MNIST digits never leave
the canvas and their 28x28 box has a blank margin, so on real clips framing is 0: ink on the outermost pixels
means a digit drawn partly outside the picture, which is what resizing and cropping to one size teach a model.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from tqdm.auto import tqdm

from .data import MovingMNIST
from .evaluator import clip_scores, digit_scores, prompts_for, read_clips
from .sample import generate
from .sizes import pixel_frames

# name: (frames, height, width)
SIZES = {"64x64, 20 frames": (20, 64, 64), "64x128, wide": (20, 64, 128), "128x64, tall": (20, 128, 64),
         "96x96, never trained": (20, 96, 96), "64x64 image": (1, 64, 64), "64x64, 40 frames": (40, 64, 64)}


def framing(videos) -> float:
    """Share of frames (N, T, H, W in [0, 1]) with ink (> 0.5) on the canvas's outermost pixels: a digit cut by the edge."""
    v = torch.as_tensor(np.asarray(videos, dtype=np.float32))
    border = torch.cat([v[..., 0, :], v[..., -1, :], v[..., :, 0], v[..., :, -1]], dim=-1)  # (N, T, 2W + 2H)
    return float((border.amax(-1) > 0.5).float().mean())


def scores(evaluator, videos: torch.Tensor, labels: list[list[int]]) -> dict:
    """Digit scores and framing, and the physics probe where a clip has frames enough (3) to move."""
    found = clip_scores(evaluator, videos, labels)[0] if videos.shape[1] >= 3 else digit_scores(
        read_clips(evaluator, videos, labels), labels)
    return {**found, "framing": framing(videos)}


def at_sizes(model, codec, objective, evaluator, clips: int, guidance: float, steps: int, batch: int, seed: int,
             progress: bool) -> dict:
    """{size name: {"shape": (frames, height, width), "generated": scores, "real": scores}} for each of ``SIZES``."""
    prompts, labels = prompts_for(clips, 1, seed)
    result = {}
    for name, (frames, height, width) in tqdm(SIZES.items(), desc="sizes", disable=not progress):
        shown = pixel_frames(frames, model.config)  # a still is generated as one frame of tubelets
        videos = torch.cat([generate(model, codec, prompts[i:i + batch], objective, guidance=guidance, steps=steps,
                                     frames=shown, height=height, width=width, seed=seed + i)[:, 0, :frames].cpu()
                            for i in range(0, clips, batch)])  # (N, frames, H, W)
        data = MovingMNIST("test", clips, seed=seed, num_digits=1, num_frames=frames, height=height, width=width)
        real = torch.stack([data[i]["video"][0] for i in range(clips)])
        real_labels = [data[i]["labels"].tolist() for i in range(clips)]
        result[name] = {"shape": [frames, height, width], "generated": scores(evaluator, videos, labels),
                        "real": scores(evaluator, real, real_labels)}
    return result


def format_sizes(sizes: dict) -> str:
    """The per-size table: model / real for each measure."""
    fmt = lambda f, x: "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f.format(x)
    cols = [("alignment", "one digit right", "{:.0%}"), ("identity", "identity", "{:.0%}"),
            ("median_speed_error_px", "speed error px/frame", "{:.2f}"), ("framing", "frames cut by the edge", "{:.0%}")]
    lines = ["| size | " + " | ".join(f"{title}: model / real" for _, title, _ in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for name, r in sizes.items():
        cells = [f"{fmt(f, r['generated'].get(key))} / {fmt(f, r['real'].get(key))}" for key, _, f in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

"""What 10 -> 10 prediction draws after the given frames: standard test clips, and each model's continuation.

    python scripts/prediction_seam.py --ckpt dit_packed=data/dit_packed.pt --clips 3 --out docs/prediction_seam.png

Rows: a real clip's frames 6-15 (frames 0-9 are given, 10-19 predicted), then each model's sample of the same
clip (same noise seed, no caption, the eval's 25 steps). The eval's MSE says how far off a prediction is; the
picture says how: placed wrong, or drawn wrong.
"""

from __future__ import annotations

import argparse

import torch

from minisora.data import standard_test_set
from minisora.data import CONTEXT
from minisora.sample import VideoCodec, generate, load_dit, objective_of
from minisora.viz import frame_strip

SHOWN = slice(CONTEXT - 4, CONTEXT + 6)  # the last 4 given frames and the first 6 predicted ones


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", nargs="+", required=True, help="NAME=PATH of each model (exported weights or ckpt.pt)")
    p.add_argument("--clips", type=int, default=3, help="standard test clips shown")
    p.add_argument("--steps", type=int, default=25, help="sampler steps")
    p.add_argument("--seed", type=int, default=5, help="noise seed")
    p.add_argument("--out", required=True, help="PNG to write")
    args = p.parse_args()
    data = standard_test_set()
    truth = torch.stack([data[i]["video"] for i in range(args.clips)])  # (N, 1, 20, H, W)
    known = torch.arange(truth.shape[2]) < CONTEXT
    rows = {"real": truth[:, 0, SHOWN]}
    for spec in args.ckpt:
        name, path = spec.split("=", 1)
        model, train = load_dit(path)
        rows[name] = generate(model, VideoCodec(model.config.vae), [None] * args.clips, objective_of(train),
                              guidance=1.0, steps=args.steps, seed=args.seed, context=truth,
                              known=known)[:, 0, SHOWN].cpu()  # (N, 10, H, W)
    videos = [rows[name][i] for i in range(args.clips) for name in rows]
    titles = [f"{name} {i}" if name == "real" else name for i in range(args.clips) for name in rows]
    fig = frame_strip(videos, titles, size=0.8)
    for ax, t in zip(fig.axes[:SHOWN.stop - SHOWN.start], range(SHOWN.start, SHOWN.stop)):
        ax.set_title(f"{t}{' given' if t < CONTEXT else ''}", fontsize=7)
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

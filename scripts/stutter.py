"""Does the digit move in even steps? Step lengths inside a pair of frames (2k, 2k+1) against across two pairs.

    python scripts/stutter.py data/dit_eqe64.pt data/dit_eqe64_2.pt --guidance 1 4 8 --out docs/stutter.json
    python scripts/stutter.py data/dit_eqe64_2.pt --guidance 8 --guidance-from 0 0.5 0.7 --seed 23

A DiT with a temporal patch of 2 (frame VAE, patch 2x2x2) draws pixel frames 2k and 2k+1 from one token. Real
Moving MNIST steps 3.6 px every frame; a model that under-moves inside a token and catches up across tokens
alternates short and long steps, a stutter that the mean speed (and so the speed error) cannot see. For one-digit
text-to-video clips (prompts "0".."9" in turn, 25 steps, each text guidance given) this prints, next to real test
clips: the median step inside a token (frame 2k -> 2k+1) and across tokens (2k+1 -> 2k+2), the parity gap (each
clip's mean step across minus inside, averaged over clips: 0 on real clips), the probe's speed jitter and speed
error, and the identity and alignment the evaluator reads. A model with one token per frame (a temporal patch of 1,
repatch.py) is split into the same pairs: it has no inside of a token, so its gap shows whether pairs still matter.
``--guidance-from LO`` guides only at noise levels in [LO, 1] (a guidance interval, ``Objective.guidance_at``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from minisora.evaluator import clip_scores, load_evaluator, prompts_for, real_clips
from minisora.physics import probe_track, summarize, track
from minisora.sample import VideoCodec, generate, load_dit, objective_of


def stutter(videos: torch.Tensor, group: int = 2) -> dict:
    """Steps inside a group of ``group`` frames (t -> t+1 with t % group < group - 1) against across two groups."""
    videos = np.asarray(videos, dtype=np.float32)  # (N, T, H, W)
    tracks = [track(v) for v in videos]  # (T, 1, 2) each: the digit tracked once, for the steps and the probe
    length = np.linalg.norm(np.diff(np.stack(tracks)[:, :, 0], axis=1), axis=-1)  # (N, T - 1) px
    across = (np.arange(length.shape[1]) % group) == group - 1  # (T - 1,): the step leaves a group
    physics = summarize([probe_track(t, *videos.shape[-2:]) for t in tracks])
    return {"step_inside_px": round(float(np.median(length[:, ~across])), 2),
            "step_across_px": round(float(np.median(length[:, across])), 2),
            "parity_gap_px": round(float(np.mean(length[:, across].mean(1) - length[:, ~across].mean(1))), 2),
            "speed_jitter_px": round(physics["speed_jitter_px"], 2),
            "speed_error_px": round(physics["median_speed_error_px"], 2)}


def read(evaluator, videos: torch.Tensor, labels) -> dict:
    """Identity persistence and text alignment as the evaluator reads them (``clip_scores``)."""
    scores = clip_scores(evaluator, videos, labels)[0]
    return {k: round(scores[k], 3) for k in ("identity", "alignment")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpts", nargs="+", help="DiTs (exported weights or a run's ckpt.pt)")
    p.add_argument("--clips", type=int, default=40, help="one-digit clips per model (prompts 0..9 in turn)")
    p.add_argument("--seed", type=int, default=21, help="seed of the sampler's noise and of the real clips")
    p.add_argument("--guidance", type=float, nargs="+", default=[8.0], help="text guidance scales (each a row)")
    p.add_argument("--guidance-from", type=float, nargs="+", default=[0.0],
                   help="guide only at noise levels in [LO, 1], for each LO given (each a row; 0: every step)")
    p.add_argument("--steps", type=int, default=25, help="sampler steps")
    p.add_argument("--out", default=None, help="write the figures here (JSON)")
    args = p.parse_args()
    evaluator = load_evaluator()
    real, real_labels = real_clips(args.clips, 1, seed=args.seed)
    result = {"settings": vars(args), "real": {**stutter(real), **read(evaluator, real, real_labels)}}
    prompts, labels = prompts_for(args.clips, 1)

    for ckpt in args.ckpts:
        model, saved = load_dit(ckpt)
        codec = VideoCodec(model.config.vae)
        for guidance in args.guidance:
            for lo in args.guidance_from:
                with torch.no_grad():
                    out = generate(model, codec, prompts, objective_of(saved, guidance_interval=(lo, 1.0)), guidance,
                                   args.steps, seed=args.seed)[:, 0]  # (N, T, H, W)
                name = f"{ckpt}, guidance {guidance:g}" + (f" from {lo:g}" if lo else "")
                result[name] = {**stutter(out), **read(evaluator, out, labels)}  # pairs: a token of (2, 2, 2)
    print(f"{'':<50} inside  across  parity gap  jitter  speed error (px)  identity  alignment")
    for name, r in result.items():
        if name != "settings":
            print(f"{name:<50} {r['step_inside_px']:6.2f}  {r['step_across_px']:6.2f}  {r['parity_gap_px']:10.2f}  "
                  f"{r['speed_jitter_px']:6.2f}  {r['speed_error_px']:16.2f}  {r['identity']:8.1%}  "
                  f"{r['alignment']:9.1%}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()

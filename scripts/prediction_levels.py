"""At which noise level does 10 -> 10 prediction lose the true future?

    python scripts/prediction_levels.py --ckpt data/dit_eqe64_2.pt --first 100 --clips 50 --seed 6 \
        --levels 0.2 0.4 0.6 0.8 0.9 1.0 --out levels.json

The true future (frames 10-19 of a standard test clip) is noised to time s, x_s = (1 - s) x_0 + s eps in the
rectified flow's latent space, then denoised with the 10 given frames and no caption (SDEdit, Meng et al. 2021,
arXiv 2108.01073, with the clip's own future as the input). s = 1 is plain prediction, as in the eval; a small s
keeps most of the future and asks only for its details. The MSE per frame (OpenSTL's definition, as in the eval)
against s shows where the model loses the future: deciding where the strokes go (high noise) or drawing them
(low noise).
"""

from __future__ import annotations

import argparse
import json

import torch
from tqdm.auto import tqdm

from minisora.data import standard_test_set
from minisora.data import CONTEXT
from minisora.metrics import mse_per_frame
from minisora.sample import VideoCodec, generate, load_dit, objective_of

BATCH = 10  # clips a sampler call


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", default="data/dit_eqe64_2.pt", help="the model (exported weights or a run's ckpt.pt)")
    p.add_argument("--first", type=int, default=0, help="index of the first standard test clip")
    p.add_argument("--clips", type=int, default=50, help="standard test clips from --first on")
    p.add_argument("--levels", type=float, nargs="+", default=[0.2, 0.4, 0.6, 0.8, 0.9, 1.0],
                   help="noise levels s in (0, 1] the true future starts from")
    p.add_argument("--steps", type=int, default=25, help="sampler steps of a whole run from s = 1 (fewer below)")
    p.add_argument("--seed", type=int, default=5, help="noise seed")
    p.add_argument("--out", required=True, help="JSON to write")
    args = p.parse_args()
    if not all(0.0 < s <= 1.0 for s in args.levels):
        p.error(f"--levels must lie in (0, 1], got {args.levels}")
    data = standard_test_set()
    truth = torch.stack([data[j]["video"] for j in range(args.first, args.first + args.clips)])  # (N, 1, 20, H, W)
    model, train = load_dit(args.ckpt)
    codec, objective = VideoCodec(model.config.vae), objective_of(train)
    known, future = torch.arange(truth.shape[2]) < CONTEXT, truth[:, 0, CONTEXT:]  # (T,), (N, 10, H, W)
    rows = []
    for s in tqdm(args.levels, desc="noise levels"):
        parts = [truth[i:i + BATCH] for i in range(0, args.clips, BATCH)]
        preds = torch.cat([generate(model, codec, [None] * len(part), objective, guidance=1.0, steps=args.steps,
                                    seed=args.seed + i, context=part, known=known, init=part, strength=s
                                    )[:, 0, CONTEXT:].cpu() for i, part in enumerate(parts)])  # (N, 10, H, W)
        per_frame = (preds - future).pow(2).sum((-2, -1)).mean(0)  # (10,) summed over pixels, mean over clips
        rows.append({"strength": s, "mse": round(float(mse_per_frame(preds, future)), 2),
                     "mse_per_frame": [round(float(e), 1) for e in per_frame]})
        print(json.dumps(rows[-1]), flush=True)
    with open(args.out, "w") as f:
        json.dump({"checkpoint": args.ckpt, "first": args.first, "clips": args.clips, "seed": args.seed,
                   "steps": args.steps, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()

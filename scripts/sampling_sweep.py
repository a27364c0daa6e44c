"""Does sampling break motion? The physics probe and text alignment against guidance scale and sampler steps.

    python scripts/sampling_sweep.py --ckpt data/dit_packed.pt --clips 50 --out docs/sampling_dit_packed.json

Each point is one ``python -m minisora eval`` run (its exact command is kept with its result): guidance in
GUIDANCE at STEPS_AT steps, then steps in STEPS at guidance GUIDANCE_AT. The notebook of issue 18 (08) plots
the JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from evals import run_eval  # scripts/evals.py

GUIDANCE, STEPS_AT = (1.0, 2.0, 4.0, 8.0), 25
STEPS, GUIDANCE_AT = (10, 25, 50), 4.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default="data/dit_packed.pt", help="the DiT to sample from")
    p.add_argument("--clips", type=int, default=50, help="generated clips per prompt kind (one digit, two digits)")
    p.add_argument("--seed", type=int, default=7, help="seed of prompts and noise (not the eval's default 0)")
    p.add_argument("--out", default="docs/sampling_dit_packed.json", help="JSON with every point")
    args = p.parse_args()
    points = [(g, STEPS_AT) for g in GUIDANCE] + [(GUIDANCE_AT, s) for s in STEPS if s != STEPS_AT]
    results = []
    for guidance, steps in points:
        result, command = run_eval(["--ckpt", args.ckpt, "--clips", str(args.clips), "--prediction-clips", "0",
                                    "--guidance", str(guidance), "--steps", str(steps), "--seed", str(args.seed)])
        results.append({"guidance": guidance, "steps": steps, "one_digit": result["one_digit"],
                        "two_digits": result["two_digits"], "wall_time_s": result["wall_time_s"], "command": command})
        print(f"guidance {guidance:g}, {steps} steps: one digit right {result['one_digit']['generated']['alignment']:.0%}"
              f", speed error {result['one_digit']['generated']['median_speed_error_px']:.2f} px/frame", flush=True)
    Path(args.out).write_text(json.dumps({"ckpt": args.ckpt, "clips": args.clips, "seed": args.seed,
                                          "points": results}, indent=1))


if __name__ == "__main__":
    main()

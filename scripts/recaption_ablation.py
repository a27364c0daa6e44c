"""Recaptioning ablation (issue 18): the same recipe and budget trained on short captions only, descriptive
captions only and the mix, each scored on short prompts (with and without prompt expansion) and on descriptive
prompts of real clips.

    # the three runs: make train's recipe, only --p-descriptive differs
    python -m minisora train --p-descriptive 0   --out ~/minisora-runs/recap-short --resume
    python -m minisora train --p-descriptive 1   --out ~/minisora-runs/recap-desc --resume
    python -m minisora train --p-descriptive 0.5 --out ~/minisora-runs/recap-mix --resume
    python scripts/recaption_ablation.py --model short=~/minisora-runs/recap-short/ckpt.pt \
        --model desc=~/minisora-runs/recap-desc/ckpt.pt --model mix=~/minisora-runs/recap-mix/ckpt.pt

With one ``--model`` (e.g. the shipped ``mix=data/dit_packed.pt``) it measures the last point alone: on a model
trained on the mix, short prompts with and without expansion, and descriptive prompts.

Each score is one ``python -m minisora eval`` run (its command is kept with its result), on a seed that no
other figure of the course uses.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from evals import run_eval  # scripts/evals.py
from minisora.sample import load_dit


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", required=True, metavar="NAME=CKPT",
                   help="a model to score (repeat the flag for each), e.g. mix=data/dit_packed.pt")
    p.add_argument("--clips", type=int, default=50, help="clips per prompt kind")
    p.add_argument("--steps", type=int, default=25, help="sampler steps")
    p.add_argument("--seed", type=int, default=11, help="seed of prompts, noise and real clips")
    p.add_argument("--out", default="docs/recaption.json", help="the JSON the notebook and README read")
    args = p.parse_args()
    common = ["--clips", str(args.clips), "--steps", str(args.steps), "--prediction-clips", "0", "--seed",
              str(args.seed)]
    rows = []
    for name, ckpt in (m.split("=", 1) for m in args.model):
        share = load_dit(ckpt)[1]["p_descriptive"]  # the share of descriptive captions it was trained on
        for expand in (False, True):
            flags = ["--ckpt", ckpt, *common, *(["--expand"] if expand else ["--descriptive", str(args.clips)])]
            result, command = run_eval(flags)
            rows.append({"model": name, "p_descriptive": share, "expand": expand, "command": command,
                         **{k: result[k] for k in ("one_digit", "two_digits", "descriptive") if k in result}})
            g = result["one_digit"]["generated"]
            print(f"{name}{' + expansion' if expand else ''}: one digit right {g['alignment']:.0%}"
                  + (f", descriptive all three {result['descriptive']['generated']['all_three']:.0%}"
                     if "descriptive" in result else ""), flush=True)
    Path(args.out).write_text(json.dumps({"clips": args.clips, "steps": args.steps, "seed": args.seed,
                                          "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

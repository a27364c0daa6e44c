"""Quality at equal compute (issue 19): minisora's DiT and diffusers' video transformers, each trained by minisora's
own trainer on the same clips, captions, VAE, objective, text encoder and seed for the same training FLOPs, then
scored alike.

    python scripts/peers_quality.py --budget-tflop 80 --runs ~/minisora-runs/peers [--models minisora latte wan]

- **Settings**: minisora trains with the recipe's defaults (``make train``) but ``--p-known 0``: the peers take one
  time per clip, so no model gets given frames. Each peer (``train --arch latte|wan``, ``peers.py``: the same width,
  depth, heads and tubelets) gets the same settings where it has them: Latte ``--no-conv --no-rope`` (factorized
  attention, sin-cos positions), Wan ``--attention full --no-conv`` (its own RoPE).
- **Budget**: every step cost is counted by one counter, torch's FlopCounterMode (``peers.counted_step_flops``:
  forward + backward, clip and still steps in the recipe's mix), and each model gets the steps its own cost allows,
  with its full warm-up and cosine schedule.
- **Runs**: they train side by side, ``--threads`` each, resumably (run the command again to continue; logs in
  RUNS/NAME.log), and export their EMA weights to RUNS/NAME/weights.pt.
- **Score**: ``python -m minisora eval`` on each (one- and two-digit prompts with the physics probe, descriptive
  prompts; no prediction: the peers have no given frames), at an eval seed the training never used, and the
  x0-explained diagnostic of scripts/ladder.py. Writes docs/peers_quality.json and prints the table (README,
  "Against the peers").
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
from pathlib import Path

from studies import ROOT, TEXT_TO_VIDEO, kept_steps, planned, score_all, train_all, train_config  # scripts/studies.py

FLAGS = {"minisora": TEXT_TO_VIDEO, "latte": ["--arch", "latte", "--no-conv", "--no-rope", *TEXT_TO_VIDEO],
         "wan": ["--arch", "wan", "--attention", "full", "--no-conv", *TEXT_TO_VIDEO]}


def table(result: dict) -> str:
    """The comparison as a Markdown table, one row per model."""
    lines = ["| model | params | steps x clips | TFLOP (counted) | train min | loss, last tenth | 1 digit right | identity | "
             "speed err px | direction | 2 digits right | descriptive: start / direction / bounce | "
             "x0 explained t=.5/.7/.8/.9 |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in result["models"].items():
        one, two = r["eval"]["one_digit"]["generated"], r["eval"]["two_digits"]["generated"]
        d = r["eval"]["descriptive"]["generated"]
        x0 = " / ".join(f"{v:.2f}" for v in r["x0_explained"].values())
        lines.append(f"| {name} | {r['parameters'] / 1e6:.2f}M | {r['steps']:,} x {result['batch']} | "
                     f"{r['steps'] * r['step_tflop']:.1f} | {r['train_time_s'] / 60:.0f} | {r['loss_last_tenth']:.3f} | "
                     f"{one['alignment']:.0%} | {one['identity']:.0%} | {one['median_speed_error_px']:.2f} | "
                     f"{one['direction_persistence']:.2f} | {two['alignment']:.0%} | "
                     f"{d['start']:.0%} / {d['direction']:.0%} / {d['bounce']:.0%} | {x0} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget-tflop", type=float, default=40.0, help="training FLOPs of each model, counted alike")
    p.add_argument("--runs", default=os.path.expanduser("~/minisora-runs/peers"), help="where the run folders go")
    p.add_argument("--models", nargs="+", default=["minisora", "latte"], choices=tuple(FLAGS),
                   help="the models to train and score (Latte: factorized attention; Wan: full attention)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads of each run (all run at once)")
    p.add_argument("--eval", default="--clips 50 --steps 30 --prediction-clips 0 --descriptive 40 --seed 3",
                   help="flags for python -m minisora eval (no prediction: the peer has no given frames)")
    p.add_argument("--out", default=str(ROOT / "docs" / "peers_quality.json"), help="JSON file for the results")
    p.add_argument("--table", action="store_true", help="only recount each trained model's step cost with the "
                                                            "current counter, rewrite --out and print the table")
    args = p.parse_args()
    if args.table:
        result = json.loads(Path(args.out).read_text())
        for name, r in result["models"].items():
            r["step_tflop"] = round(planned(FLAGS[name], 1.0)[2], 6)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
        return print(table(result))
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    plans = {name: kept_steps(runs / name, *planned(FLAGS[name], args.budget_tflop)) for name in args.models}
    for name, (_, steps, step_tflop) in plans.items():
        print(f"{name}: {step_tflop * 1e3:.2f} GFLOP a step (counted) -> {steps} steps for {args.budget_tflop} TFLOP")
    train_all(plans, runs, args.threads)
    scores = score_all(plans, runs, args.threads, shlex.split(args.eval))
    batch = train_config(FLAGS["minisora"]).batch_size
    result = {"budget_tflop": args.budget_tflop, "batch": batch, "eval_flags": args.eval,
              "commands": {n: shlex.join(["python", "-m", "minisora", "train", *f]) for n, (f, _, _) in plans.items()},
              "models": {n: {"steps": plans[n][1], "step_tflop": round(plans[n][2], 6), **s} for n, s in scores.items()}}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))


if __name__ == "__main__":
    main()

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
import subprocess
import sys
from pathlib import Path

from ladder import x0_explained  # scripts/ladder.py
from minisora.checkpoint import load_checkpoint
from minisora.cli import build_parser, config_from
from minisora.peers import counted_step_flops
from minisora.sample import VideoCodec, denoiser_class, load_dit, objective_of
from minisora.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
FLAGS = {"minisora": ["--p-known", "0"], "latte": ["--arch", "latte", "--no-conv", "--no-rope", "--p-known", "0"],
         "wan": ["--arch", "wan", "--attention", "full", "--no-conv", "--p-known", "0"]}


def planned(flags: list[str], budget_tflop: float) -> tuple[list[str], int, float]:
    """The train flags with the steps the budget allows, the steps, and the counted TFLOP of one step."""
    cfg = config_from(build_parser().parse_args(["train", *flags]), TrainConfig)
    model = denoiser_class(cfg.arch)(cfg.model_config())
    step_tflop = counted_step_flops(model, cfg.batch_size, cfg.p_image) / 1e12
    steps = round(budget_tflop / step_tflop)
    return [*flags, "--steps", str(steps)], steps, step_tflop


def kept_steps(run: Path, flags: list[str], steps: int, step_tflop: float) -> tuple[list[str], int, float]:
    """A run already started keeps the steps it was planned with (a cosine schedule cannot change length); the
    table then reports the TFLOP it really trains, by the current counter."""
    if (run / "ckpt.pt").exists():
        kept = load_checkpoint(run / "ckpt.pt", kind="training", keys=("train",), optional=None)["train"]["steps"]
        if kept != steps:
            print(f"{run.name}: keeps the {kept} steps it started with ({kept * step_tflop:.1f} TFLOP by this count)")
            return [*flags[:-1], str(kept)], kept, step_tflop
    return flags, steps, step_tflop


def finished(run: Path, steps: int) -> bool:
    """Has the run in ``run`` trained all its steps and exported its weights?"""
    manifest = run / "weights.json"
    return manifest.exists() and json.loads(manifest.read_text())["steps_done"] == steps


def train_all(plans: dict, runs: Path, threads: int) -> None:
    """The runs not finished yet, side by side, each resumed from its checkpoint if it has one; waits for all."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    jobs = []
    for name, (flags, steps, _) in plans.items():
        if finished(runs / name, steps):
            continue
        command = [sys.executable, "-m", "minisora", "train", *flags, "--out", str(runs / name), "--resume", "--quiet",
                   "--export", str(runs / name / "weights.pt")]
        print("$", shlex.join(command), flush=True)
        jobs.append(subprocess.Popen(command, env=env, cwd=ROOT, stdout=open(runs / f"{name}.log", "a"),
                                     stderr=subprocess.STDOUT))
    if any(job.wait() for job in jobs):
        raise SystemExit(f"a training run failed: see {runs}/*.log")


def score_all(plans: dict, runs: Path, threads: int, eval_flags: list[str]) -> dict:
    """``minisora eval`` on the exported models not scored since they were exported (side by side), then x0
    explained of all; returns {name: scores}."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    names = [n for n in plans if not (runs / n / "eval.json").exists()
             or (runs / n / "eval.json").stat().st_mtime < (runs / n / "weights.pt").stat().st_mtime]  # not scored yet
    jobs = {name: subprocess.Popen([sys.executable, "-m", "minisora", "eval", "--ckpt", str(runs / name / "weights.pt"),
                                    *eval_flags, "--out", str(runs / name / "eval.json")], env=env, cwd=ROOT,
                                   stdout=open(runs / f"{name}.eval.log", "w"), stderr=subprocess.STDOUT)
            for name in names}
    if any(job.wait() for job in jobs.values()):
        raise SystemExit(f"an eval failed: see {runs}/*.eval.log")
    scores = {}
    for name in plans:
        model, train = load_dit(runs / name / "weights.pt")
        manifest = json.loads((runs / name / "weights.json").read_text())
        log = [json.loads(line)["loss"] for line in (runs / name / "log.jsonl").read_text().splitlines()]
        tail = log[-max(1, len(log) // 10):]  # the mean loss of the last tenth of the run: less noisy than the last line
        scores[name] = {"eval": json.loads((runs / name / "eval.json").read_text()),
                        "x0_explained": x0_explained(model, VideoCodec(model.config.vae), objective_of(train)),
                        "train_time_s": manifest["train_time_s"], "final_loss": manifest["final_loss"],
                        "loss_last_tenth": round(sum(tail) / len(tail), 4),
                        "parameters": manifest["parameters"]}
    return scores


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
    batch = config_from(build_parser().parse_args(["train", *FLAGS["minisora"]]), TrainConfig).batch_size
    result = {"budget_tflop": args.budget_tflop, "batch": batch, "eval_flags": args.eval,
              "commands": {n: shlex.join(["python", "-m", "minisora", "train", *f]) for n, (f, _, _) in plans.items()},
              "models": {n: {"steps": plans[n][1], "step_tflop": round(plans[n][2], 6), **s} for n, s in scores.items()}}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))


if __name__ == "__main__":
    main()

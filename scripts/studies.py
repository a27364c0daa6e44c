"""What the training studies share (scripts/peers_quality.py, scripts/scaling_study.py): runs planned by a FLOP budget,
trained resumably by ``python -m minisora train`` a few at a time, then scored alike.

A study is a dict {name: (train flags with --steps, steps, TFLOP of one step)}; each run lives in RUNS/NAME, logs
to RUNS/NAME.log and exports its EMA weights to RUNS/NAME/weights.pt.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from ladder import x0_explained  # scripts/ladder.py
from minisora.checkpoint import load_checkpoint
from minisora.cli import build_parser, config_from
from minisora.peers import counted_step_flops
from minisora.sample import VideoCodec, denoiser_class, load_dit, objective_of
from minisora.scaling import validation_loss
from minisora.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
# every study trains text-to-video only (the peers take no given frames) and skips sample GIFs (time, not FLOPs)
TEXT_TO_VIDEO = ["--p-known", "0", "--sample-every", "0"]


def train_config(flags: list[str]) -> TrainConfig:
    """The settings ``python -m minisora train FLAGS`` would run with (validated as the CLI validates them)."""
    return config_from(build_parser().parse_args(["train", *flags]), TrainConfig)


def planned(flags: list[str], budget_tflop: float) -> tuple[list[str], int, float]:
    """The train flags with the steps the budget allows, the steps, and the TFLOP of one step, counted by torch's
    FlopCounterMode (``peers.counted_step_flops``: forward + backward, clip and still steps in the recipe's mix)."""
    cfg = train_config(flags)
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


def threads_env(threads: int) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def run_pool(commands: dict[str, tuple[list[str], Path]], parallel: int, threads: int) -> None:
    """Run {name: (command, log file)} ``parallel`` at a time, in the order given, ``threads`` CPU threads each;
    exits naming the logs if any failed."""
    waiting, running, failed = list(commands.items()), {}, []
    while waiting or running:
        while waiting and len(running) < parallel:
            name, (command, log) = waiting.pop(0)
            print("$", shlex.join(command), flush=True)
            out = open(log, "a")
            running[name] = (subprocess.Popen(command, env=threads_env(threads), cwd=ROOT, stdout=out,
                                              stderr=subprocess.STDOUT), out)
        time.sleep(2)
        for name, (job, out) in list(running.items()):
            if job.poll() is not None:
                out.close()
                del running[name]
                failed += [str(commands[name][1])] if job.returncode else []
    if failed:
        raise SystemExit(f"failed: see {', '.join(failed)}")


def train_all(plans: dict, runs: Path, threads: int, parallel: int | None = None) -> None:
    """The runs not finished yet, ``parallel`` at a time (default: all at once), each resumed from its checkpoint
    if it has one; waits for all."""
    commands = {name: ([sys.executable, "-m", "minisora", "train", *flags, "--out", str(runs / name), "--resume",
                        "--quiet", "--export", str(runs / name / "weights.pt")], runs / f"{name}.log")
                for name, (flags, steps, _) in plans.items() if not finished(runs / name, steps)}
    run_pool(commands, parallel or len(plans), threads)


def score_all(plans: dict, runs: Path, threads: int, eval_flags: list[str], parallel: int | None = None) -> dict:
    """``minisora eval`` on the exported models not scored since they were exported with these flags (``parallel`` at
    a time), then the one-step diagnostics of scripts/ladder.py on all; returns {name: scores}."""
    def stale(name: str) -> bool:  # not scored since exported, or scored with other flags
        done = runs / name / "eval.json"
        return (not done.exists() or done.stat().st_mtime < (runs / name / "weights.pt").stat().st_mtime
                or shlex.join(eval_flags) not in json.loads(done.read_text())["command"])

    commands = {name: ([sys.executable, "-m", "minisora", "eval", "--ckpt", str(runs / name / "weights.pt"),
                        *eval_flags, "--out", str(runs / name / "eval.json")], runs / f"{name}.eval.log")
                for name in plans if stale(name)}
    run_pool(commands, parallel or len(plans), threads)
    scores = {}
    for name in plans:
        model, train = load_dit(runs / name / "weights.pt")
        codec, objective = VideoCodec(model.config.vae), objective_of(train)
        manifest = json.loads((runs / name / "weights.json").read_text())
        log = [json.loads(line)["loss"] for line in (runs / name / "log.jsonl").read_text().splitlines()]
        tail = log[-max(1, len(log) // 10):]  # the mean loss of the last tenth of the run: less noisy than the last line
        scores[name] = {"eval": json.loads((runs / name / "eval.json").read_text()),
                        "x0_explained": x0_explained(model, codec, objective),
                        "validation_loss": validation_loss(model, codec, objective),
                        "train_time_s": manifest["train_time_s"], "final_loss": manifest["final_loss"],
                        "loss_last_tenth": round(sum(tail) / len(tail), 4),
                        "parameters": manifest["parameters"], "command": manifest["command"],
                        "export_check": manifest["single_digit_agreement"]}  # one digit right, other seed and steps
    return scores

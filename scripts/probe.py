"""One probe of the recipe search (docs/recipe.md): train at a fixed FLOP budget, then evaluate.

    python scripts/probe.py NAME --budget-tflop 60 -- --preset tiny --patch 2 2 2 --attention factorized

The training flags after ``--`` are the train command's; ``--steps`` is set from the budget with the
model's own FLOP count (``dit.flops_per_clip``, x3 for forward + backward; an image step counts its
images at their own, smaller cost). The run goes to ``RUNS/NAME``; ``python -m minisora eval``
scores its EMA weights, and one line (settings, cost, wall time, scores) is appended to
``docs/probes.jsonl``, from which ``scripts/recipe_table.py`` writes the table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from ladder import diagnose  # scripts/ladder.py
from minisora.cli import build_parser, config_from
from minisora import repa
from minisora.dit import flops_per_clip, tokens_per_clip
from minisora.vae import latent_space
from minisora.sample import VideoCodec, load_dit, objective_of
from minisora.text import Tokenizer
from minisora.train import TrainConfig, TrainingClips

ROOT = Path(__file__).resolve().parents[1]


def prompt_words(cfg: TrainConfig, images: bool, batches: int = 30) -> float:
    """The mean over a run's first batches of its longest prompt, in words: what the text encoder pays for."""
    data = TrainingClips(cfg.seed, cfg.num_digits, cfg.p_descriptive, 10**6, classes=cfg.classes)
    tokenizer, n = Tokenizer(), cfg.batch_size * (tokens_per_clip(cfg.model_config())[0] if images else 1)
    longest = []
    for b in range(batches):
        captions = data.images(range(b * n, (b + 1) * n), 1)[1] if images else data.batch(range(b * n, (b + 1) * n))[1]
        longest.append(max(len(tokenizer.words(c)) for c in captions))
    return sum(longest) / batches


def step_flops(cfg: TrainConfig) -> float:
    """Expected training FLOPs of one step: clips, or (a share p_image of steps) as many stills as frames of tubelets,
    each with the text encoder's cost at the batch's longest prompt (padding after it is cut) and REPA's, if on."""
    model = cfg.model_config()

    def alignment(config) -> float:  # REPA: the frozen encoder on every frame, the projector on every token
        if not cfg.repa:
            return 0.0
        return config.frames * repa.flops_per_frame(size=config.size) + math.prod(tokens_per_clip(config)) * \
            repa.projector_flops(config.dim, repa.load_aligner().dim)

    clip = flops_per_clip(model, words=round(prompt_words(cfg, images=False))) + alignment(model)
    if not cfg.p_image:
        return cfg.batch_size * clip
    still = replace(model, frames=latent_space(cfg.vae)[1] * model.patch[0])
    images = tokens_per_clip(model)[0] * (flops_per_clip(still, words=round(prompt_words(cfg, images=True)))
                                          + alignment(still))
    return cfg.batch_size * ((1 - cfg.p_image) * clip + cfg.p_image * images)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", help="probe name (run folder RUNS/NAME)")
    p.add_argument("--budget-tflop", type=float, default=60.0, help="training FLOPs of the probe, in TFLOP")
    p.add_argument("--runs", default=os.path.expanduser("~/minisora-runs/probes"), help="where run folders go")
    p.add_argument("--eval", default="--clips 50 --steps 30 --prediction-clips 50",
                   help="flags for python -m minisora eval")
    p.add_argument("--note", default="", help="what the probe changes, in a few words")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args, flags = p.parse_args(argv[:cut]), argv[cut + 1:]  # after "--": the train command's flags
    run = Path(args.runs) / args.name
    parsed = build_parser().parse_args(["train", *flags, "--out", str(run)])
    cfg = config_from(parsed, TrainConfig)
    steps = max(1, round(args.budget_tflop * 1e12 / step_flops(cfg)))
    python = [sys.executable, "-m", "minisora"]
    train = [*python, "train", *flags, "--steps", str(steps), "--out", str(run), "--sample-every", "0",
             "--resume", "--quiet"]
    started = time.perf_counter()
    subprocess.run(train, check=True)
    train_s = time.perf_counter() - started
    subprocess.run([*python, "eval", "--ckpt", str(run / "ckpt.pt"), "--out", str(run / "eval.json"), "--quiet",
                    *args.eval.split()], check=True)
    result = json.loads((run / "eval.json").read_text())
    model, saved = load_dit(run / "ckpt.pt")
    diagnostics = diagnose(model, VideoCodec(model.config.vae), objective_of(saved))
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    record = {"name": args.name, "note": args.note, "flags": " ".join(flags), "steps": steps,
              "budget_tflop": args.budget_tflop, "step_gflop": round(step_flops(cfg) / 1e9, 2),
              "train_wall_s": round(train_s), "final_loss": log[-1]["loss"], "eval_flags": args.eval,
              "threads": int(os.environ.get("OMP_NUM_THREADS", 0)) or None, "eval": result,
              "diagnostics": diagnostics}
    with (ROOT / "docs" / "probes.jsonl").open("a") as f:
        f.write(json.dumps(record) + "\n")
    g = result["one_digit"]["generated"]
    print(f"{args.name}: {steps} steps, {train_s / 60:.1f} min; one digit {g['alignment']:.0%}, identity "
          f"{g['identity']:.0%}, speed error {g['median_speed_error_px']:.2f}, persistence "
          f"{g['direction_persistence']:.2f}")


if __name__ == "__main__":
    main()

"""Recaptioning ablation (issue 18): the same recipe and budget trained on short captions only, descriptive captions
only and the mix, each scored on short prompts (with and without prompt expansion) and on descriptive prompts of
real clips.

    python scripts/recaption_ablation.py --budget-tflop 200 --runs ~/minisora-runs/recaption

- **Training**: ``make train``'s recipe with ``--p-known 0`` (text-to-video only, as in the scaling study and the
  peers), three runs that differ only in ``--p-descriptive``: 0 (every clip captioned "3 and 7"), 1 (every clip
  described: start, direction, bounces) and 0.5 (the mix the course trains). The stills of joint image-video training
  (a quarter of the steps) keep their short captions in every run: a still has no motion to describe. Each run gets
  the steps the budget buys (``peers.counted_step_flops``), trains resumably (run the command again to continue;
  logs in RUNS/NAME.log) and exports its EMA weights to RUNS/NAME/weights.pt.
- **Score**: two ``python -m minisora eval`` runs per model, on a seed no other figure of the course uses: short
  prompts plus the descriptive captions of real one-digit clips (``--descriptive``: start, first direction, first
  bounce followed?), then the same short prompts expanded into descriptions first (``--expand``). Each result is
  kept in the run folder with its command and reused until the weights or the flags change. Beside them, the chance
  level of each check: the model's clips and the real clips held to other clips' prompts (``following.chance_scores``;
  a model that ignores the motion words scores as well against another clip's prompt as against its own).

With ``--model NAME=CKPT`` it scores already trained models instead and trains nothing, e.g. the shipped
``--model mix=data/dit_packed.pt --out docs/recaption_dit_packed.json``: on a model trained on the mix, short prompts
with and without expansion, and descriptive prompts.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
from pathlib import Path

from evals import run_eval  # scripts/evals.py
from minisora.sample import load_dit
from studies import ROOT, TEXT_TO_VIDEO, kept_steps, planned, train_all  # scripts/studies.py

ARMS = {"short": 0.0, "descriptive": 1.0, "mix": 0.5}  # name: share of clips captioned descriptively


def arm_flags(share: float) -> list[str]:
    return [*TEXT_TO_VIDEO, "--p-descriptive", f"{share:g}"]


def scored(flags: list[str], keep: Path | None) -> tuple[dict, str]:
    """``run_eval(flags)``, reusing the result kept in ``keep`` while it has the same command and is newer than the
    weights next to it."""
    command = "python -m minisora eval " + " ".join(flags)
    if keep and keep.exists() and keep.stat().st_mtime > (keep.parent / "weights.pt").stat().st_mtime:
        kept = json.loads(keep.read_text())
        if kept["command"] == command:
            return kept["result"], command
    result, command = run_eval(flags)
    if keep:
        keep.write_text(json.dumps({"command": command, "result": result}, indent=1) + "\n")
    return result, command


def score(name: str, ckpt: str, common: list[str], clips: int, keep: Path | None) -> list[dict]:
    """Two rows for one model: short prompts and ``clips`` descriptive ones; short prompts expanded."""
    share = load_dit(ckpt)[1]["p_descriptive"]  # the share of descriptive captions it was trained on
    rows = []
    for expand in (False, True):
        flags = ["--ckpt", ckpt, *common, *(["--expand"] if expand else ["--descriptive", str(clips)])]
        result, command = scored(flags, keep and keep / f"recaption{'_expand' if expand else ''}.json")
        rows.append({"model": name, "p_descriptive": share, "expand": expand, "command": command,
                     **{k: result[k] for k in ("one_digit", "two_digits", "descriptive") if k in result}})
    return rows


def table(rows: list[dict], chance: dict | None = None) -> str:
    """The ablation as a Markdown table, one row per model and prompt kind (and the model's clips of the descriptive
    prompts held to other clips' prompts, where scored), then the real clips (and, given ``chance``, the real clips
    held to other clips' prompts)."""
    pct = lambda v: f"{100 * v:.0f}%"
    checks = lambda d: " | ".join(pct(d[k]) for k in ("start", "direction", "bounce", "all_three"))  # the last 4 cells
    lines = ["| model (share of descriptive captions) | prompts | one digit right | two digits right | start | "
             "first direction | first bounce | all three |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        one, two = r["one_digit"]["generated"], r["two_digits"]["generated"]
        model = f"{r['model']} ({r['p_descriptive']:g})"
        lines.append(f"| {model} | short{', expanded' if r['expand'] else ''} | {pct(one['alignment'])} | "
                     f"{pct(two['alignment'])} | | | | |")
        if "descriptive" in r:
            d = r["descriptive"]["generated"]
            lines.append(f"| {model} | descriptive captions of real clips | {pct(d['alignment'])} | | {checks(d)} |")
        if "generated_chance" in r.get("descriptive", {}):  # its clips held to other clips' prompts
            lines.append(f"| {model} | the same clips, another clip's prompt (its chance) | | | "
                         f"{checks(r['descriptive']['generated_chance'])} |")
    d = rows[0]["descriptive"]["real"]
    lines.append(f"| real clips | | {pct(d['alignment'])} | | {checks(d)} |")
    if chance:
        lines.append(f"| real clips, another clip's prompt (chance) | | | | {checks(chance)} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget-tflop", type=float, default=200.0, help="training FLOPs of each run, counted alike")
    p.add_argument("--runs", default=os.path.expanduser("~/minisora-runs/recaption"), help="where the run folders go")
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=tuple(ARMS), help="the runs to train and score")
    p.add_argument("--threads", type=int, default=1, help="CPU threads of each run")
    p.add_argument("--parallel", type=int, default=3, help="runs trained at a time")
    p.add_argument("--model", action="append", metavar="NAME=CKPT",
                   help="score this trained model instead of training the arms (repeat for more), e.g. "
                        "mix=data/dit_packed.pt")
    p.add_argument("--clips", type=int, default=50, help="clips per prompt kind")
    p.add_argument("--steps", type=int, default=25, help="sampler steps")
    p.add_argument("--seed", type=int, default=11, help="seed of prompts, noise and real clips")
    p.add_argument("--out", default=str(ROOT / "docs" / "recaption.json"), help="the JSON the notebook and README read")
    args = p.parse_args()
    common = ["--clips", str(args.clips), "--steps", str(args.steps), "--prediction-clips", "0", "--seed",
              str(args.seed)]
    result = {"clips": args.clips, "steps": args.steps, "seed": args.seed}
    if args.model:
        models = [(name, ckpt, None) for name, ckpt in (m.split("=", 1) for m in args.model)]
    else:
        runs = Path(args.runs)
        runs.mkdir(parents=True, exist_ok=True)
        plans = {a: kept_steps(runs / a, *planned(arm_flags(ARMS[a]), args.budget_tflop)) for a in args.arms}
        for name, (_, steps, step_tflop) in plans.items():
            print(f"{name}: {step_tflop * 1e3:.2f} GFLOP a step (counted) -> {steps} steps for {args.budget_tflop} "
                  "TFLOP", flush=True)
        train_all(plans, runs, args.threads, args.parallel)
        models = [(name, str(runs / name / "weights.pt"), runs / name) for name in plans]
        result.update(budget_tflop=args.budget_tflop, commands={
            n: shlex.join(["python", "-m", "minisora", "train", *f]) for n, (f, _, _) in plans.items()},
            train_steps={n: s for n, (_, s, _) in plans.items()})
    result["rows"] = [row for name, ckpt, keep in models for row in score(name, ckpt, common, args.clips, keep)]
    result["chance"] = next(r["descriptive"]["chance"] for r in result["rows"] if "descriptive" in r)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(table(result["rows"], result["chance"]))


if __name__ == "__main__":
    main()

"""Scaling study (issue 18): the recipe at four model sizes, each trained at several FLOP budgets, every run with
its own full warm-up + cosine schedule, scored alike; loss, text alignment and the physics probe against training
FLOPs.

    python scripts/scaling_study.py --budgets 5 10 20 --runs ~/minisora-runs/scaling   # run it again to continue
    python scripts/scaling_study.py --budgets 5 10 20 --cells w128:85 w64:40   # more runs beside the grid

- **Sizes**: the recipe (``make train``'s settings: (2, 2, 2) tubelets, factorized attention + the 3x3x3
  convolution, RoPE + QK-norm, batch 4, lr 1.5e-3, 25% still steps) at widths 64 / 96 / 128 / 192 (``tiny`` is
  128 x 4 blocks; 192 has 6 blocks), heads of 32 channels, the tiny text encoder for all; ``--p-known 0`` (text to
  video only) and no sample GIFs while training. The warm-up is the recipe's 100 steps, or a tenth of a run that
  has fewer than 1,000 steps; the peak learning rate is the recipe's for all sizes (tuned on ``tiny``).
- **Budget**: training FLOPs of the DiT, counted by torch's FlopCounterMode (``peers.counted_step_flops``); each run
  gets the steps its own step cost allows.
- **Score**: the validation loss (``minisora.scaling``: held-out test clips with their captions, fixed times and
  noise), x0 explained (scripts/ladder.py), ``python -m minisora eval`` (one- and two-digit prompts, the physics
  probe) at an eval seed no other study uses, and the trainer's own check at export (one digit right on 50 other
  clips). Writes docs/scaling.json (notebook 08 plots it) and prints the table and, for each
  measure, its slope against log10 FLOPs at each size and the best size at each budget.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
from pathlib import Path

import numpy as np

from minisora.scaling import fit_power_law

from studies import ROOT, TEXT_TO_VIDEO, kept_steps, planned, score_all, train_all, train_config  # scripts/studies.py

SIZES = {"w64": (64, 4), "w96": (96, 4), "w128": (128, 4), "w192": (192, 6)}  # name: (width, blocks)


def flags_of(size: str, warmup: int) -> list[str]:
    dim, depth = SIZES[size]
    return ["--dim", str(dim), "--depth", str(depth), "--heads", str(dim // 32), "--warmup", str(warmup),
            *TEXT_TO_VIDEO]


def plan(size: str, budget: float) -> tuple[list[str], int, float]:
    """The run's flags, steps and step TFLOP: the recipe's warm-up of 100 steps, or a tenth of a shorter run."""
    _, steps, step_tflop = planned(flags_of(size, 100), budget)  # the warm-up does not change a step's cost
    return [*flags_of(size, min(100, steps // 10)), "--steps", str(steps)], steps, step_tflop


def measures(r: dict) -> dict:
    """The numbers the study plots for one run."""
    one, two = r["eval"]["one_digit"]["generated"], r["eval"]["two_digits"]["generated"]
    x0 = {float(t): v for t, v in r["x0_explained"].items()}  # JSON keys are strings
    return {"validation_loss": r["validation_loss"], "x0_explained_t07": x0[0.7],
            "one_digit_right": one["alignment"], "identity": one["identity"],
            "speed_error_px": one["median_speed_error_px"], "direction_persistence": one["direction_persistence"],
            "two_digits_right": two["alignment"], "one_digit_right_export": r["export_check"]["value"]}


def trends(runs: dict) -> dict:
    """Per measure: at each size, the least-squares slope of the measure against log10 training FLOPs (its change
    per tenfold compute), and at each budget the size that scores best ("tie" when several share the best score).
    For the validation loss also the power law's exponent b (L = a C^-b) at each size and along the frontier (the
    best size at each budget)."""
    lower_better = {"validation_loss", "speed_error_px"}
    budgets = sorted({r["budget_tflop"] for r in runs.values()})
    out = {}
    for key in next(iter(runs.values()))["measures"]:
        pick = min if key in lower_better else max
        at_size = {size: [(r["tflop"], r["measures"][key]) for r in runs.values() if r["size"] == size] for size in SIZES}
        at_size = {size: np.array(points).T for size, points in at_size.items() if len(points) >= 2}  # (2, budgets)
        best = {b: pick((r for r in runs.values() if r["budget_tflop"] == b), key=lambda r: r["measures"][key])
                for b in budgets}
        out[key] = {"slope_per_decade": {size: round(float(np.polyfit(np.log10(c), v, 1)[0]), 4)
                                         for size, (c, v) in at_size.items()},
                    "best_size": {str(b): r["size"] if sum(x["measures"][key] == r["measures"][key] for x in runs.values()
                                                            if x["budget_tflop"] == b) == 1 else "tie"
                                  for b, r in best.items()}}
        if key == "validation_loss":
            out[key]["exponent"] = {size: round(fit_power_law(c, v)[1], 4) for size, (c, v) in at_size.items()}
            if len(budgets) >= 2:
                out[key]["frontier_exponent"] = round(fit_power_law([r["tflop"] for r in best.values()],
                                                                    [r["measures"][key] for r in best.values()])[1], 4)
    return out


def table(result: dict) -> str:
    lines = ["| size | params | budget TFLOP | steps x 4 | train min | val loss | x0 explained t=.7 | 1 digit right | "
             "identity | speed err px | direction | 2 digits right | export check: 1 digit right |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["runs"].values():
        m = r["measures"]
        lines.append(f"| {r['size']} | {r['parameters'] / 1e6:.2f}M | {r['tflop']:.1f} | {r['steps']:,} | "
                     f"{r['train_time_s'] / 60:.0f} | {m['validation_loss']:.4f} | {m['x0_explained_t07']:.2f} | "
                     f"{m['one_digit_right']:.0%} | {m['identity']:.0%} | {m['speed_error_px']:.2f} | "
                     f"{m['direction_persistence']:.2f} | {m['two_digits_right']:.0%} | {m['one_digit_right_export']:.0%} |")
    lines.append("")
    for key, t in result["trends"].items():
        slopes = ", ".join(f"{s} {v:+.3f}" for s, v in t["slope_per_decade"].items())
        best = ", ".join(f"{b}: {s}" for b, s in t["best_size"].items())
        law = (f"; power law L = a C^-b, b: {', '.join(f'{s} {v:.3f}' for s, v in t['exponent'].items())}, "
               f"frontier {t.get('frontier_exponent', float('nan')):.3f}" if "exponent" in t else "")
        lines.append(f"- {key}: per tenfold FLOPs {slopes}; best size at each budget (TFLOP) {best}{law}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=list(SIZES), choices=tuple(SIZES), help="model sizes (width)")
    p.add_argument("--budgets", nargs="+", type=float, default=[5.0, 10.0, 20.0], help="training TFLOP of each run")
    p.add_argument("--cells", nargs="*", default=[], metavar="SIZE:TFLOP",
                   help="runs beyond the grid of --sizes x --budgets, e.g. w128:85")
    p.add_argument("--runs", default=os.path.expanduser("~/minisora-runs/scaling"), help="where the run folders go")
    p.add_argument("--threads", type=int, default=1, help="CPU threads of each run")
    p.add_argument("--parallel", type=int, default=2, help="runs (and evals) at once")
    p.add_argument("--eval", default="--clips 40 --steps 20 --prediction-clips 0 --seed 6",
                   help="flags for python -m minisora eval")
    p.add_argument("--out", default=str(ROOT / "docs" / "scaling.json"), help="JSON file for the results")
    p.add_argument("--table", action="store_true",
                   help="only recompute the trends of --out from its runs, rewrite it and print the table")
    args = p.parse_args()
    if args.table:
        result = json.loads(Path(args.out).read_text())
        result["trends"] = trends(result["runs"])
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
        return print(table(result))
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    extra = [tuple(c.split(":")) for c in args.cells]
    if any(len(c) != 2 or c[0] not in SIZES for c in extra):
        p.error(f"--cells: expected SIZE:TFLOP with SIZE one of {list(SIZES)}, got {args.cells}")
    extra = [(size, float(budget)) for size, budget in extra]
    cells = sorted({*((s, b) for s in args.sizes for b in args.budgets), *extra}, key=lambda c: (-c[1], -SIZES[c[0]][0]))
    plans = {f"{s}-{b:g}t": kept_steps(runs / f"{s}-{b:g}t", *plan(s, b)) for s, b in cells}
    for name, (_, steps, step_tflop) in plans.items():
        print(f"{name}: {step_tflop * 1e3:.2f} GFLOP a step (counted) -> {steps} steps")
    train_all(plans, runs, args.threads, args.parallel)
    scores = score_all(plans, runs, args.threads, shlex.split(args.eval), args.parallel)
    result = {"eval_flags": args.eval, "batch": train_config(TEXT_TO_VIDEO).batch_size, "runs": {}}
    for (size, budget), (name, (_, steps, step_tflop)) in zip(cells, plans.items()):
        s = scores[name]
        result["runs"][name] = {"size": size, "width": SIZES[size][0], "blocks": SIZES[size][1],
                                "budget_tflop": budget, "steps": steps, "tflop": round(steps * step_tflop, 2),
                                "measures": measures(s), **s}
    result["trends"] = trends(result["runs"])
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))


if __name__ == "__main__":
    main()

"""The recipe search's measured columns as a Markdown table, from docs/probes.jsonl (written by probe.py).

    python scripts/recipe_table.py [--chart docs/recipe.png]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ("probe", "change", "GFLOP/step", "steps", "train min (threads)", "final loss", "1 digit right",
           "identity", "speed err px", "direction", "2 digits right", "10->10 MSE", "x0 explained t=.7/.8")


def row(r: dict) -> list[str]:
    one, two = r["eval"]["one_digit"]["generated"], r["eval"]["two_digits"]["generated"]
    mse = r["eval"].get("prediction", {}).get("model", {}).get("mse")
    return [r["name"], r["note"], f"{r['step_gflop']:.0f}", str(r["steps"]),
            f"{r['train_wall_s'] / 60:.0f} ({r['threads'] or '?'})", f"{r['final_loss']:.3f}",
            f"{one['alignment']:.0%}", f"{one['identity']:.0%}", f"{one['median_speed_error_px']:.2f}",
            f"{one['direction_persistence']:.2f}", f"{two['alignment']:.0%} of {two['readable']:.0%}",
            "n/a" if mse is None else f"{mse:.0f}", x0_explained(r)]


def x0_explained(r: dict) -> str:
    x0 = r.get("diagnostics", {}).get("x0_explained", {})
    return " / ".join(f"{x0[t]:.2f}" for t in ("0.7", "0.8") if t in x0) or "n/a"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--probes", default=str(ROOT / "docs" / "probes.jsonl"), help="probe records")
    p.add_argument("--chart", default=None, help="also draw, per probe, one-digit agreement and how much of a clean "
                                                 "latent its prediction explains at t = 0.7 and 0.8, as a PNG")
    args = p.parse_args()
    records = [json.loads(line) for line in Path(args.probes).read_text().splitlines() if line.strip()]
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for r in records:
        print("| " + " | ".join(row(r)) + " |")
    if args.chart:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7, 0.45 * len(records) + 1.2), layout="tight")
        ax = fig.subplots()
        y = np.arange(len(records))[::-1]
        bars = {"one-digit prompts read right": lambda r: r["eval"]["one_digit"]["generated"]["alignment"],
                "x0 explained, t = 0.7": lambda r: r["diagnostics"]["x0_explained"]["0.7"],
                "x0 explained, t = 0.8": lambda r: r["diagnostics"]["x0_explained"]["0.8"]}
        for k, (label, value) in enumerate(bars.items()):
            ax.barh(y + (1 - k) * 0.27, [value(r) for r in records], height=0.27, label=label)
        ax.set(yticks=y, yticklabels=[r["name"] for r in records], xlim=(0, 1), xlabel="share")
        ax.legend(loc="lower right", fontsize=8)
        fig.savefig(args.chart, dpi=110)


if __name__ == "__main__":
    main()

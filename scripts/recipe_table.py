"""The recipe search's measured columns as a Markdown table, from docs/probes.jsonl (written by probe.py).

    python scripts/recipe_table.py [--chart docs/recipe.png]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

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
    p.add_argument("--chart", default=None, help="also draw one-digit agreement per probe as a PNG")
    args = p.parse_args()
    records = [json.loads(line) for line in Path(args.probes).read_text().splitlines() if line.strip()]
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for r in records:
        print("| " + " | ".join(row(r)) + " |")
    if args.chart:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7, 0.35 * len(records) + 1), layout="tight")
        ax = fig.subplots()
        names = [r["name"] for r in records][::-1]
        ax.barh(names, [r["eval"]["one_digit"]["generated"]["alignment"] for r in records][::-1])
        ax.set(xlabel="one-digit prompts read as the prompt's digit", xlim=(0, 1))
        fig.savefig(args.chart, dpi=110)


if __name__ == "__main__":
    main()

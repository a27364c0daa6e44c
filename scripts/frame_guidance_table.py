"""Text and frame guidance against image-to-video and extension: the table of the README from eval JSONs.

    python scripts/frame_guidance_table.py --model NAME RUN/*.json --out docs/frame_guidance.json

Each input is one ``python -m minisora eval --clips 0 --prediction-clips 0 --capabilities 20 --capability-parts
image_to_video extension --guidance W --frame-guidance F [--guidance-interval LO HI] [--guidance-ramp R] --steps 25
--seed S`` of the model NAME (its settings are in the file). The output keeps, per model and setting (W, its
interval, F, R), each seed's measures and the real clips' beside them; other models and settings already in
it stay.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

MEASURES = {  # name: how to read it from an eval's "capabilities"
    "i2v identity": lambda c, g: c["image_to_video"][g]["identity"],
    "i2v speed error px": lambda c, g: c["image_to_video"][g]["median_speed_error_px"],
    **{f"{d} {name}": (lambda c, g, d=d, k=k: c["extension"][d][g][k])
       for d in ("forward", "backward")
       for name, k in (("identity", "identity"), ("seam speed error px", "seam_speed_error_px"),
                       ("seam direction cos", "seam_direction_cos"))},
}


def summary(capabilities: dict, group: str) -> dict:
    return {name: round(read(capabilities, group), 3) for name, read in MEASURES.items()}


def setting(s: dict) -> tuple[str, tuple]:
    """An eval's guidance settings: the row's name and its sort key (the interval only where it is not [0, 1], the
    guidance ramp only where there is one)."""
    lo, hi = s.get("guidance_interval", (0.0, 1.0))
    interval = f" in [{lo:g}, {hi:g}]" if (lo, hi) != (0.0, 1.0) else ""
    ramp = f", ramp {s['guidance_ramp']:g}" if s.get("guidance_ramp") else ""
    return (f"guidance {s['guidance']:g}{interval}, frame guidance {s.get('frame_guidance', 1.0):g}{ramp}",
            (s["guidance"], lo, s.get("frame_guidance", 1.0), s.get("guidance_ramp", 0.0)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("evals", nargs="+", help="eval JSON files")
    p.add_argument("--model", required=True, help="the name the evals' model goes by in the table")
    p.add_argument("--note", default="", help="what the model is, kept beside its rows")
    p.add_argument("--out", default="docs/frame_guidance.json", help="where the table goes (merged)")
    args = p.parse_args()
    out = Path(args.out)
    table = json.loads(out.read_text())["table"] if out.exists() else {}
    runs = sorted((json.loads(Path(path).read_text()) | {"path": path} for path in args.evals),
                  key=lambda e: setting(e["settings"])[1])
    rows = table.setdefault(args.model, {})
    rows.update({"note": args.note} if args.note else {})
    for e in runs:
        key, seed = setting(e["settings"])[0], f"seed {e['settings']['seed']}"
        rows.setdefault(key, {})[seed] = summary(e["capabilities"], "generated") | {"checkpoint": e["checkpoint"]}
        rows.setdefault("real clips", {})[seed] = summary(e["capabilities"], "real")
    rows["real clips"] = rows.pop("real clips")  # last
    out.write_text(json.dumps({"what": __doc__.split("\n")[0], "table": table}, indent=1) + "\n")
    for checkpoint, rows in table.items():
        rows = {key: row for key, row in rows.items() if key != "note"}
        seeds = sorted({seed for row in rows.values() for seed in row})
        print(f"\n{checkpoint}\n| setting | {' | '.join(MEASURES)} |\n|---|{'---|' * len(MEASURES)}")
        for key, row in rows.items():
            cells = [" / ".join(f"{row[s][m]:.2f}" if s in row else "-" for s in seeds) for m in MEASURES]
            print(f"| {key} | {' | '.join(cells)} |")
        print(f"(values: {' / '.join(seeds)})")


if __name__ == "__main__":
    main()

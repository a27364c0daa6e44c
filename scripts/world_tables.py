"""Print the README's world-simulator tables (issue 18) from their JSON files in docs/."""
import json
from pathlib import Path

from recaption_ablation import table  # scripts/recaption_ablation.py

docs = Path(__file__).resolve().parent.parent / "docs"
pct = lambda v: f"{100 * v:.0f}%"

sweep = json.loads((docs / "sampling_dit_packed.json").read_text())
print(f"Sampling ({sweep['ckpt']}, {sweep['clips']} clips per prompt kind, seed {sweep['seed']}):\n")
print("| guidance | steps | one digit right | identity | speed error px/frame | direction persistence | reversals at a wall "
      "| two digits right |")
print("|---|---|---|---|---|---|---|---|")
for p in sorted(sweep["points"], key=lambda p: (p["steps"] != 25, p["guidance"], p["steps"])):
    g, two = p["one_digit"]["generated"], p["two_digits"]["generated"]
    print(f"| {p['guidance']:g} | {p['steps']} | {pct(g['alignment'])} | {pct(g['identity'])} | "
          f"{g['median_speed_error_px']:.2f} | {g['direction_persistence']:.2f} | {pct(g['bounces_at_walls'])} | "
          f"{pct(two['alignment'])} |")
real = sweep["points"][0]["one_digit"]["real"]
print(f"| real clips | | {pct(real['alignment'])} | {pct(real['identity'])} | {real['median_speed_error_px']:.2f} | "
      f"{real['direction_persistence']:.2f} | {pct(real['bounces_at_walls'])} | "
      f"{pct(sweep['points'][0]['two_digits']['real']['alignment'])} |")

print("\nObject permanence (50 clips of each kind, seed 0; last 3 frames):\n")
print("| model | clips | both digits kept | in place | ink vs real |")
print("|---|---|---|---|---|")
for name in ("dit_tiny", "dit_packed"):
    p = json.loads((docs / f"permanence_{name}.json").read_text())["permanence"]
    for kind, what in (("crossing", "digits cross"), ("apart", "digits stay apart")):
        g = p[kind]["generated"]
        print(f"| `{name}` | {what} | {pct(g['kept'])} | {pct(g['in_place'])} | {g['ink_vs_real']:.2f} |")
for kind, what in (("crossing", "digits cross"), ("apart", "digits stay apart")):
    r = p[kind]["real"]
    print(f"| real clips | {what} | {pct(r['kept'])} | {pct(r['in_place'])} | 1.00 |")

for name, what in (("recaption_dit_packed", "`dit_packed`, trained on the mix"),
                   ("recaption", "the ablation: three models trained alike but for their captions")):
    if (docs / f"{name}.json").exists():
        recap = json.loads((docs / f"{name}.json").read_text())
        budget = f"{recap['budget_tflop']:g} TFLOP each, " if "budget_tflop" in recap else ""
        print(f"\nPrompts ({what}; {budget}{recap['clips']} clips per kind, seed {recap['seed']}):\n")
        print(table(recap["rows"], recap.get("chance")))

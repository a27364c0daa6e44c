"""Print the capabilities table of the README from docs/capabilities_MODEL*.json, one column per model and seed.

    python scripts/capabilities_table.py dit_eqe64_2 dit_packed

A part a run did not measure (e.g. long videos at seed 1) is "-".
"""
import argparse
import json
from pathlib import Path

docs = Path(__file__).resolve().parent.parent / "docs"
parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("models", nargs="*", default=["dit_eqe64_2", "dit_packed"],
                    help="models whose docs/capabilities_MODEL.json (seed 0) and _seed1.json to put side by side")
models = parser.parse_args().models
runs = {f"{model} seed {json.loads(p.read_text())['settings']['seed']}": json.loads(p.read_text())["capabilities"]
        for model in models for p in sorted(docs.glob(f"capabilities_{model}*.json"))}
seeds = [name for name in runs if name.startswith(f"{models[0]} seed")]  # the real clips: the first model's runs
pct, px, num = (lambda v: f"{100 * v:.0f}%"), (lambda v: f"{v:.2f}"), (lambda v: f"{v:.3f}")
interval = lambda v: f"[{v[0]:.2f}, {v[1]:.2f}]"


def shown(value, run: dict, fmt) -> str:
    try:
        return fmt(value(run))
    except KeyError:  # not measured in this run
        return "-"


ROWS = [  # (capability, measure, goal, value of a run, value of real clips or None, format)
    ("image-to-video", "identity persistence", ">= 95%", lambda c: c["image_to_video"]["generated"]["identity"],
     lambda c: c["image_to_video"]["real"]["identity"], pct),
    ("image-to-video", "speed error, px/frame", "<= 0.5",
     lambda c: c["image_to_video"]["generated"]["median_speed_error_px"],
     lambda c: c["image_to_video"]["real"]["median_speed_error_px"], px),
    ("image-to-video", "first generated frame's pixel distance to the image", "<= real step",
     lambda c: c["image_to_video"]["generated"]["first_step_distance"],
     lambda c: c["image_to_video"]["real"]["first_step_distance"], num),
    *[(f"extend {d}", measure, "as real", (lambda c, d=d, k=k: c["extension"][d]["generated"][k]),
       (lambda c, d=d, k=k: c["extension"][d]["real"][k]), f)
      for d in ("forward", "backward")
      for measure, k, f in (("seam step's speed error, px", "seam_speed_error_px", px),
                            ("seam step's direction cosine", "seam_direction_cos", px),
                            ("joined clip's speed error, px/frame", "median_speed_error_px", px))],
    *[(f"extend {d}", measure, "holds 0 or below", (lambda c, d=d, k=k: c["extension"][d]["generated"][k]), None,
       interval)
      for d in ("forward", "backward")
      for measure, k in (("seam's speed error over real clips', 90% interval, px", "seam_excess_ci90_px"),
                         ("how much less straight the seam turns than real clips', 90% interval",
                          "seam_cos_shortfall_ci90"))],
    *[("loop", f"seam step's {measure} (the loop's other steps)", "as other steps",
       (lambda c, k=k: (c["loop"][f"seam_{k}"], c["loop"][f"other_steps_{k}"])), None,
       (lambda v, f=f: f"{f(v[0])} ({f(v[1])})"))
      for measure, k, f in (("speed error, px", "speed_error_px", px), ("pixel distance", "pixel_distance", num))],
    ("loop", "seam's speed error over the other steps', 90% interval, px", "holds 0 or below",
     lambda c: c["loop"]["seam_excess_ci90_px"], None, interval),
    ("connect", "speed error over the whole, px/frame", "as real", lambda c: c["connect"]["median_speed_error_px"],
     None, px),
    ("connect", "clips read as A's digit, then B's", "", lambda c: c["connect"]["a_then_b"], None, pct),
    ("connect", "frame where B's digit first shows (median; 4-15 generated)", "", lambda c: c["connect"]["median_switch_frame"],
     None, lambda v: f"{v:.0f}"),
    *[(f"edit, s = {s}", measure, goal, (lambda c, s=s, k=k: c["edit"][s][k]), None, f)
      for s in ("0.6", "0.8", "0.85", "1.0")
      for measure, k, goal, f in (("frames read as the new digit", "frames_read_as_new_digit", ">= 80%", pct),
                                  ("track distance to the input, px", "track_distance_px", "<= 2", px))],
    *[(f"long video, {name}", f"{measure}: frames 0-19 -> 180-199", "as real",
       (lambda c, name=name, k=k: (c["long_video"][name][0][k], c["long_video"][name][-1][k])),
       (lambda c, k=k: (c["long_video"]["real"][0][k], c["long_video"]["real"][-1][k])),
       (lambda v, f=f: f"{f(v[0])} -> {f(v[1])}"))
      for name in ("none", "context_noise 0.1")
      for measure, k, f in (("read as the prompt", "frame_agreement", pct),
                            ("speed error, px/frame", "median_speed_error_px", px),
                            ("ink per frame", "ink", lambda v: f"{v:.0f}"))],
]

print("| capability | measure | goal | " + " | ".join(runs) + f" | real ({' / '.join(n.split(' ', 1)[1] for n in seeds)}) |")
print("|---|---|---|" + "---|" * (len(runs) + 1))
for capability, measure, goal, value, real, fmt in ROWS:
    cells = [shown(value, c, fmt) for c in runs.values()]
    measured = (shown(real, runs[n], fmt) for n in seeds) if real else ()
    reference = " / ".join(dict.fromkeys(v for v in measured if v != "-"))  # each value once
    print(f"| {capability} | {measure} | {goal} | " + " | ".join(cells) + f" | {reference} |")

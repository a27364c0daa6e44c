"""Print the per-size comparison of docs/sizes_dit_{packed,cropped,tiny}.json as a markdown table (README)."""
import json
from pathlib import Path

MODELS = {"packed": "packed", "cropped": "square crops", "tiny": "fixed"}
docs = Path(__file__).resolve().parent.parent / "docs"
runs = {name: json.loads((docs / f"sizes_dit_{name}.json").read_text())["sizes"] for name in MODELS}


def cells(size, key, fmt):
    """One table cell: the models' values for `key`, then the real clips' value."""
    values = [runs[name][size]["generated"].get(key) for name in MODELS]
    values.append(runs["packed"][size]["real"].get(key))
    return " / ".join("n/a" if v is None else fmt(v) for v in values)


pct = lambda v: f"{100 * v:.0f}%"
px = lambda v: f"{v:.2f}"
names = " / ".join(MODELS.values()) + " / real"
print(f"| size | one digit right: {names} | speed error px/frame | frames cut by the edge | identity |")
print("|---|---|---|---|---|")
for size in runs["packed"]:
    row = [cells(size, "alignment", pct), cells(size, "median_speed_error_px", px),
           cells(size, "framing", lambda v: f"{100 * v:.1f}%"), cells(size, "identity", pct)]
    print(f"| {size} | " + " | ".join(row) + " |")

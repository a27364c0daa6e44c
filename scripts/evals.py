"""Run ``python -m minisora eval`` with some flags and return its result and the command (for the JSON files of
the studies: scripts/sampling_sweep.py, scripts/recaption_ablation.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path


def run_eval(flags: list[str]) -> tuple[dict, str]:
    """The eval's result for ``flags`` (not --out or --quiet), and the command a reader can run to repeat it."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "eval.json"
        subprocess.run([sys.executable, "-m", "minisora", "eval", *flags, "--out", str(out), "--quiet"], check=True,
                       stdout=subprocess.DEVNULL)
        return json.loads(out.read_text()), "python -m minisora eval " + " ".join(flags)

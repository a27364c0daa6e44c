"""Checkpoints and manifests: written atomically, loaded without running code.

A checkpoint is a ``torch.save`` of plain tensors and Python containers, read back with
``torch.load(weights_only=True)``, which refuses anything that would execute code. Every file is
written under a temporary name and renamed into place, so a crash never leaves half a file under
the real name. Each shipped checkpoint has a JSON *manifest* beside it: the exact command, code
version, device, steps, wall time and measured metrics.
"""

from __future__ import annotations

import inspect
import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .config import check_device

ROOT = Path(__file__).resolve().parents[1]


def atomic_write(path: Path, write) -> Path:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)
    return path


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Save a dict of tensors (and plain Python values) atomically."""
    return atomic_write(Path(path), lambda tmp: torch.save(state, tmp))


def article(word: str) -> str:
    return "an" if word[0] in "aeiouAEIOU" else "a"


def load_checkpoint(path: str | Path, map_location="cpu", kind: str = "minisora",
                    keys: tuple[str, ...] | None = None, optional: tuple[str, ...] | None = ()) -> dict:
    """Load a checkpoint safely; missing, unreadable or wrong files get an error that says which and why.

    ``keys``, if given, are the top-level keys a ``kind`` checkpoint (e.g. "VAE") must have; ``optional``
    ones it may have as well (None: any others).
    """
    path = Path(path)
    if isinstance(map_location, (str, torch.device)):
        check_device(map_location)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated, corrupt, or not a torch file at all
        raise ValueError(f"checkpoint {path} could not be read as a weights-only torch checkpoint "
                         f"(corrupt, truncated or not a checkpoint?): {type(e).__name__}: {e}") from e
    if keys is not None and (not isinstance(ckpt, dict) or not set(keys) <= set(ckpt) <= (
            set(ckpt) if optional is None else {*keys, *optional})):
        found = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path} is not {article(kind)} {kind} checkpoint: "
                         f"expected keys {sorted(keys)}, got {found}")
    return ckpt


def load_model(path: str | Path, model_class: type[nn.Module], config_class: type | None = None,
               device: str | torch.device = "cpu", weights: str = "model", keys: tuple[str, ...] = (),
               kind: str | None = None, choose=None):
    """Any minisora model from a checkpoint ``{"config": ..., weights: state dict, *keys}``: built from its
    config (``config_class(**config)``, or ``model_class(**config)`` without one), loaded and in eval mode.
    Returns (model, checkpoint). A file of another kind or version is refused with one line saying why:
    its config must have exactly the fields the config (or model) takes, and its weights must fit.
    ``kind`` names the model in errors (default: the class name); ``choose(checkpoint)``, if given, picks the
    class from what the file says it holds (several networks share one config)."""
    kind = kind or model_class.__name__
    ckpt = load_checkpoint(path, map_location=device, kind=kind, keys=("config", weights, *keys), optional=None)
    model_class = choose(ckpt) if choose else model_class
    make = config_class or model_class
    takes = inspect.signature(make).parameters
    config = ckpt["config"] if isinstance(ckpt["config"], dict) else {}
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}  # lists from older files
    unknown = sorted(set(config) - set(takes))
    missing = sorted(n for n, p in takes.items() if p.default is p.empty and n not in config)
    if unknown or missing or not config:
        raise ValueError(f"{path} is not {article(kind)} {kind} checkpoint of this version of minisora: its config has fields "
                         f"{sorted(config)}, a {kind} takes {list(takes)}")
    try:
        model = model_class(make(**config)) if config_class else model_class(**config)
        model.load_state_dict(ckpt[weights])
    except (RuntimeError, TypeError, ValueError) as e:
        why = " ".join(str(e).split())
        raise ValueError(f"{path}: its weights do not fit the {kind} its config describes: "
                         f"{why[:300]}{' ...' if len(why) > 300 else ''}") from None
    return model.to(device).eval(), ckpt


@dataclass
class RunRecord:
    """How a set of weights was made, for its manifest: start one when training starts (the code version is
    read then, before anyone edits the tree), ``stop()`` when training ends, ``manifest(**measured)`` after."""

    command: str
    device: str | torch.device
    code_version: str = field(default_factory=lambda: code_version())
    started: float = field(default_factory=time.perf_counter)
    wall_time_s: float | None = None

    def stop(self) -> float:
        self.wall_time_s = round(time.perf_counter() - self.started, 1)
        return self.wall_time_s

    def manifest(self, **measured) -> dict:
        return {"command": self.command, "code_version": self.code_version, "device": device_name(self.device),
                "wall_time_s": self.wall_time_s if self.wall_time_s is not None else self.stop(), **measured}


def init_record(weights: str | Path) -> dict:
    """Where a run's starting weights came from: the path and, when it is beside them, their manifest's
    account of how they were made (command, code, steps, time, and their own ``init``, if any)."""
    manifest = Path(weights).with_suffix(".json")
    if not manifest.exists():
        return {"weights": str(weights)}
    made = json.loads(manifest.read_text())
    keys = ["command", "code_version", "device", "steps", "steps_done", "train_time_s", "final_loss", "init"]
    if "train_time_s" not in made:  # a manifest whose wall time is its training time (a DiT's export is not)
        keys.insert(-2, "wall_time_s")
    return {"weights": str(weights), **{k: made[k] for k in keys if k in made}}


def write_manifest(manifest: dict, path: str | Path) -> Path:
    """Write a manifest as indented JSON, atomically."""
    return atomic_write(Path(path), lambda tmp: tmp.write_text(json.dumps(manifest, indent=2) + "\n"))


def code_version() -> str:
    """The git commit of the code that is running, with "-dirty" if the tree has uncommitted changes."""
    try:
        git = lambda *args: subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                           check=True).stdout.strip()
        return git("rev-parse", "--short=12", "HEAD") + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def device_name(device: torch.device | str) -> str:
    """A human description of the device a run used."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


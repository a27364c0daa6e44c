"""Checkpoints and manifests: written atomically, loaded without running code.

A checkpoint is a ``torch.save`` of plain tensors and Python containers, read back with
``torch.load(weights_only=True)``, which refuses anything that would execute code. Every file is
written under a temporary name and renamed into place, so a crash never leaves half a file under
the real name. Each shipped checkpoint has a JSON *manifest* beside it: the exact command, code
version, device, steps, wall time and measured metrics.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path

import torch

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


def load_checkpoint(path: str | Path, map_location="cpu", kind: str = "minisora",
                    keys: tuple[str, ...] | None = None, optional: tuple[str, ...] = ()) -> dict:
    """Load a checkpoint safely; missing, unreadable or wrong files get an error that says which and why.

    ``keys``, if given, are the top-level keys a ``kind`` checkpoint (e.g. "VAE") must have; ``optional``
    ones it may have as well.
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
    if keys is not None and (not isinstance(ckpt, dict) or not set(keys) <= set(ckpt) <= {*keys, *optional}):
        found = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path} is not {'an' if kind[0] in 'aeiouAEIOU' else 'a'} {kind} checkpoint: "
                         f"expected keys {sorted(keys)}, got {found}")
    return ckpt


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


"""Settings written once: a config dataclass whose fields carry their help, and the CLI flags made from it.

    @dataclass
    class TrainConfig:
        lr: float = option(5e-4, "peak AdamW learning rate")      # -> --lr LR, with this help
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing

import torch


def option(default, help: str, **cli):
    """A config field: its default and its help text, from which ``add_config_flags`` makes the flag
    (``cli`` holds extra argparse settings, e.g. choices or metavar)."""
    return dataclasses.field(default=default, metadata={"help": help, **cli})


def add_config_flags(p: argparse.ArgumentParser, config_class) -> None:
    """One flag per field of a config dataclass, from its type, default and ``metadata`` (help, choices, metavar):
    ``batch_size: int`` -> ``--batch-size N``, ``tuple[int, ...]`` -> several values, ``bool`` -> ``--x/--no-x``."""
    hints = typing.get_type_hints(config_class)
    for f in dataclasses.fields(config_class):
        kind = hints[f.name]
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if typing.get_origin(kind) in (typing.Union, types.UnionType):  # X | None
            kind = args[0]
        flag, extra = "--" + f.name.replace("_", "-"), {k: v for k, v in f.metadata.items() if k != "help"}
        if kind is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=f.metadata["help"])
            continue
        if typing.get_origin(kind) is tuple:
            items = typing.get_args(kind)
            extra.setdefault("nargs", "+" if items[-1] is Ellipsis else len(items))
            kind = items[0]
        p.add_argument(flag, type=kind, default=f.default, help=f.metadata["help"], **extra)


def config_from(args: argparse.Namespace, config_class):
    """The config dataclass from parsed flags (lists back to tuples)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_class)}
    return config_class(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def check_device(device: str | torch.device) -> torch.device:
    """The torch device named, if this machine has it; otherwise a one-line ValueError saying what it has."""
    try:
        found = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; expected cpu, cuda or cuda:N") from None
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if found.type == "cuda" and (found.index or 0) >= gpus:
        has = f"{gpus} CUDA GPU(s)" if gpus else "no CUDA GPU"
        raise ValueError(f"device {device!r} was asked for, but this machine has {has}; use --device cpu")
    if found.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r}; expected cpu, cuda or cuda:N")
    return found

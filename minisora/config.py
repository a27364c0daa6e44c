"""Settings written once: a config dataclass whose fields carry their help, and the CLI flags made from it.

    @dataclass
    class TrainConfig:
        lr: float = option(5e-4, "peak AdamW learning rate")      # -> --lr LR, with this help
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing

import torch


def option(default, help: str, **cli):
    """A config field: its default and its help text, from which ``add_config_flags`` makes the flag
    (``cli`` holds extra argparse settings, e.g. choices or metavar). ``REQUIRED`` as the default makes
    a positional argument."""
    return dataclasses.field(default=default, metadata={"help": help, **cli})


REQUIRED = dataclasses.MISSING


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each flag's help with its default, except a default of None: the help says what happens then."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def add_config_flags(p: argparse.ArgumentParser, config_class) -> None:
    """One flag per field of a config dataclass, from its type, default and ``metadata`` (help, choices, metavar):
    ``batch_size: int`` -> ``--batch-size N``, ``tuple[int, ...]`` -> several values, ``bool`` -> ``--x/--no-x``,
    a field without a default -> a positional argument."""
    hints = typing.get_type_hints(config_class)
    for f in dataclasses.fields(config_class):
        kind = hints[f.name]
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if typing.get_origin(kind) in (typing.Union, types.UnionType):  # X | None
            kind = args[0]
        flag, extra = "--" + f.name.replace("_", "-"), {k: v for k, v in f.metadata.items() if k != "help"}
        if f.default is REQUIRED:
            p.add_argument(f.name, type=kind, help=f.metadata["help"], **extra)
            continue
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


def check_positive(config, *names: str) -> None:
    """Each named field (unless None) must be a whole number >= 1."""
    for name in names:
        value = getattr(config, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")


def check_probability(config, *names: str) -> None:
    """Each named field must be a probability in [0, 1]."""
    for name in names:
        if not 0.0 <= getattr(config, name) <= 1.0:
            raise ValueError(f"{name} is a probability: expected a value in [0, 1], got {getattr(config, name)!r}")


def check_finite(config, name: str, above: float | None = None, at_least: float | None = None) -> None:
    """A named field (unless None) must be a finite number, > ``above`` or >= ``at_least`` if given."""
    value = getattr(config, name)
    if value is None:
        return
    if not math.isfinite(value) or (above is not None and not value > above) or (
            at_least is not None and not value >= at_least):
        bound = f" > {above}" if above is not None else f" >= {at_least}" if at_least is not None else ""
        raise ValueError(f"{name} must be a finite number{bound}, got {value!r}")


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

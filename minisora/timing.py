"""Timing a step the same way in every benchmark (``bench.py``, ``peers.py``)."""

from __future__ import annotations

import time

import numpy as np
import torch


def seconds_per_step(step, steps: int, device: str) -> float:
    """Run ``step()`` once to warm up (and compile), then time ``steps`` more one by one (synchronising a GPU);
    the median, which a hiccup of a shared machine does not move."""
    cuda = torch.device(device).type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    step()
    sync()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return float(np.median(times))

"""Optimisation helpers every trainer shares: a warm-up + cosine learning rate, and an EMA of the weights."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def warmup_cosine(optimizer: torch.optim.Optimizer, steps: int, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    """lr(s) = lr_max min(1, (s + 1) / warmup) (1 + cos(pi s / steps)) / 2: a linear warm-up, then cosine decay to 0."""
    def factor(s: int) -> float:
        return min(1.0, (s + 1) / max(warmup, 1)) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class EMA(nn.Module):
    """Exponential moving average of a model's weights: theta_ema <- decay theta_ema + (1 - decay) theta.

    Diffusion models sample from the EMA weights (DDPM, DiT): they average out the noise of the last steps.
    Given the step, the decay warms up as min(decay, (1 + step) / (10 + step)), so a short run's EMA is not
    mostly its random initialisation (0.999^1000 = 37% of it after 1,000 steps without the warm-up).
    Buffers (e.g. a VAE's latent scale) are copied, not averaged.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int | None = None) -> None:
        decay = self.decay if step is None else min(self.decay, (1 + step) / (10 + step))
        for ema, p in zip(self.model.parameters(), model.parameters()):
            ema.lerp_(p.detach(), 1 - decay)  # ema + (1 - decay) (p - ema)
        for ema, b in zip(self.model.buffers(), model.buffers()):
            ema.copy_(b)

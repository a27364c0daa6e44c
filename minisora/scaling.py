"""Scaling measures (issue 18, notebook 08): one smooth number per model to plot against training compute, and
the power law through such points.

The validation loss is the training loss itself (rectified flow, the model's own text conditioning) on clips
the model never trained on, with everything random fixed: the same clips, captions, times and noise for every
model, so two models differ only by what they learned. A power law L = a C^(-b) is a straight line on log axes,
log L = log a - b log C (Kaplan et al. 2020, arXiv 2001.08361), fitted by least squares.
"""

from __future__ import annotations

import numpy as np
import torch

from .captions import short_caption
from .evaluator import real_clips


@torch.no_grad()
def validation_loss(model, codec, objective, clips: int = 32, times: int = 8, seed: int = 0) -> float:
    """The rectified-flow loss E |v - model(x_t, t, c)|^2, v = eps - x_0, on ``clips`` real test clips (half with one
    digit, half with two) under their short captions, each at ``times`` fixed times: the quantiles of the training
    times, t = shift(sigmoid(m + s n)) with n = sqrt(2) erfinv(2q - 1), q = (i + 1/2) / times; seeded noise."""
    z, labels = [], []
    for digits in (1, 2):
        videos, digit_labels = real_clips(clips // 2, digits, seed)  # (clips/2, T, H, W)
        z.append(codec.encode(videos[:, None]))  # (clips/2, C, T', H', W')
        labels += digit_labels
    z = torch.cat(z)  # (B, C, T', H', W')
    ids = torch.stack([model.tokenizer.encode(short_caption(digits)) for digits in labels])  # (B, L)
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(seed))
    q = (torch.arange(times) + 0.5) / times
    n = 2 ** 0.5 * torch.erfinv(2 * q - 1)  # the standard normal's quantiles
    ts = objective.shifted(torch.sigmoid(objective.logit_mean + objective.logit_std * n))  # (times,)
    return round(float(torch.stack([objective.loss(model, z, ids, t=t.expand(len(z)), noise=noise)
                                    for t in ts]).mean()), 4)


def fit_power_law(compute, values) -> tuple[float, float]:
    """(a, b) of values = a * compute^(-b), least squares on log10 axes."""
    slope, intercept = np.polyfit(np.log10(compute), np.log10(values), 1)
    return float(10 ** intercept), float(-slope)

"""The scaling study's measures (minisora.scaling): the validation loss is the flow loss on fixed real clips."""

import numpy as np
import pytest
import torch

from minisora.diffusion import make_objective
from minisora.dit import DiT, get_preset
from minisora.evaluator import real_clips
from minisora.sample import VideoCodec
from minisora.scaling import fit_power_law, validation_loss


def test_validation_loss_of_a_model_that_predicts_zero_is_the_mean_square_velocity():
    model, codec, objective = DiT(get_preset("micro")), VideoCodec("frame"), make_objective("flow", shift=3.0)
    assert not any(p.any() for p in model.final.parameters())  # zero-initialised: it predicts v = 0
    z = torch.cat([codec.encode(real_clips(8, digits, 5)[0][:, None]) for digits in (1, 2)])
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(5))
    # v = eps - x0 does not depend on t, so every time's loss is the same mean square
    assert validation_loss(model, codec, objective, clips=16, times=3, seed=5) == pytest.approx(
        float(((noise - z) ** 2).mean()), abs=1e-4)


def test_validation_loss_is_fixed_and_tells_models_apart():
    codec, objective = VideoCodec("frame"), make_objective("flow", shift=3.0)
    torch.manual_seed(0)
    model = DiT(get_preset("micro"))
    for p in model.final.parameters():
        torch.nn.init.normal_(p, std=0.02)
    first = validation_loss(model, codec, objective, clips=8, times=2)
    assert validation_loss(model, codec, objective, clips=8, times=2) == first  # nothing random is left
    with torch.no_grad():
        model.final.linear.weight.mul_(2)
    assert validation_loss(model, codec, objective, clips=8, times=2) != first


def test_fit_power_law_recovers_the_law():
    compute = np.array([5.0, 10.0, 20.0, 40.0])
    a, b = fit_power_law(compute, 3.0 * compute ** -0.25)
    assert (a, b) == (pytest.approx(3.0), pytest.approx(0.25))

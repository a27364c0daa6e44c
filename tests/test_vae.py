"""The video VAEs: shapes, KL, clear errors, and the shipped weights on real test clips."""

import json

import pytest
import torch

from minisora.data import standard_test_set
from minisora.metrics import psnr
from minisora.train_vae import VAETrainConfig, clips, train_vae
from minisora.vae import SE_FACTORS, VAE_PATHS, high_frequency_share, load_vae, pool, shift_error, shift_gap, translate
from minisora.vae import VAE, DiagonalGaussian, VAEConfig

# well under the measured quality: catches a broken VAE, not noise
FLOORS = {"frame": 28.0, "frame-se": 28.0, "frame-eq": 28.0, "frame-eqe": 28.0, "spacetime": 25.0}


@pytest.mark.parametrize("kind, latent_t", [("frame", 20), ("spacetime", 10)])
def test_shapes_for_videos_and_sizes(kind, latent_t):
    vae = VAE(VAEConfig(kind=kind)).eval()
    x = torch.rand(2, 1, 20, 64, 64)
    posterior = vae.encode(x)
    assert posterior.mean.shape == (2, 4, latent_t, 16, 16)
    assert vae.decode(posterior.sample()).shape == x.shape
    wide = torch.rand(1, 1, 4, 32, 96)  # any size divisible by 4 (and even T for spacetime)
    assert vae.reconstruct(wide).shape == wide.shape
    assert vae.compression() == (4.0 if kind == "frame" else 8.0)


def test_kl_of_a_standard_normal_is_zero_and_positive_otherwise():
    zeros = torch.zeros(2, 8, 3, 4, 4)  # mean 0, log sigma^2 0
    torch.testing.assert_close(DiagonalGaussian(zeros).kl(), torch.zeros(2, 4, 3, 4, 4))
    moments = torch.randn(2, 8, 3, 4, 4)
    assert (DiagonalGaussian(moments).kl() >= 0).all() and DiagonalGaussian(moments).kl().sum() > 0


def test_reparameterised_samples_have_the_posterior_statistics():
    moments = torch.cat([torch.full((1, 1, 1, 50, 50), 2.0), torch.full((1, 1, 1, 50, 50), 2 * torch.log(torch.tensor(0.5)))], 1)
    z = DiagonalGaussian(moments).sample(torch.Generator().manual_seed(0))
    assert abs(z.mean().item() - 2.0) < 0.05 and abs(z.std().item() - 0.5) < 0.05


def test_bad_sizes_are_clear_errors():
    frame, spacetime = VAE(VAEConfig("frame")), VAE(VAEConfig("spacetime"))
    with pytest.raises(ValueError, match=r"H and W must be multiples of 4 .* got 30x64; e.g. 28x64 or 32x64"):
        frame.encode(torch.rand(1, 1, 2, 30, 64))
    with pytest.raises(ValueError, match="T must be even, got T=5"):
        spacetime.encode(torch.rand(1, 1, 5, 64, 64))
    with pytest.raises(ValueError, match=r"expected a video batch \(B, 1, T, H, W\), got \(1, 64, 64\)"):
        frame.encode(torch.rand(1, 64, 64))
    with pytest.raises(ValueError, match="kind must be 'frame' or 'spacetime'"):
        VAEConfig("image")


@pytest.mark.parametrize("kind", list(VAE_PATHS))
def test_shipped_vae_reconstructs_test_clips(kind):
    vae = load_vae(kind)
    manifest = json.loads(VAE_PATHS[kind].with_suffix(".json").read_text())
    assert manifest["command"].startswith("python -m minisora train-vae")
    assert float(vae.latent_scale) == pytest.approx(manifest["latent_scale"], rel=1e-4)
    x = clips(standard_test_set("mnist5k"), 500, 8)  # test digits, clips the manifest did not score
    score = float(psnr(vae.reconstruct(x), x))
    assert score > FLOORS[kind], f"{kind} VAE reconstructs test clips at {score:.1f} dB"


def test_the_scale_equivariant_vae_has_the_smoother_latent():
    x = clips(standard_test_set("mnist5k"), 600, 4)
    share = {name: high_frequency_share(load_vae(name).encode(x).mean) for name in ("frame", "frame-se")}
    assert share["frame-se"] < 0.5 * share["frame"], share  # measured 0.18 against 0.66 on 100 other clips


def test_loading_checks_the_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_vae(tmp_path / "missing.pt")
    torch.save({"model": {}}, tmp_path / "odd.pt")
    with pytest.raises(ValueError, match="is not a VAE checkpoint"):
        load_vae(tmp_path / "odd.pt")


def test_high_frequency_share_tells_smooth_maps_from_fine_detail():
    y, x = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    blob = torch.exp(-((y - 8) ** 2 + (x - 8) ** 2) / 18)  # a smooth bump: low frequencies only
    checkers = ((y + x) % 2) * 2 - 1  # the highest frequency there is
    assert high_frequency_share(blob) < 0.01
    assert high_frequency_share(checkers) > 0.99


def test_pool_averages_spatial_cells_only():
    x = torch.arange(2 * 3 * 4 * 4.0).reshape(1, 2, 3, 4, 4)
    pooled = pool(x, 2)
    assert pooled.shape == (1, 2, 3, 2, 2)
    assert pooled[0, 1, 2, 0, 1] == x[0, 1, 2, :2, 2:].mean()


def loss_with_and_without(term: str, size: int = 16) -> tuple:
    """A small VAE's loss on size x size frames with ``term`` (weight 2) and without it, the parts of both, and the
    latent sample it drew."""
    torch.manual_seed(0)
    vae, x = VAE(VAEConfig("frame")), torch.rand(2, 1, 3, size, size)
    plain, plain_parts = vae.loss(x, generator=torch.Generator().manual_seed(1))
    regularised, parts = vae.loss(x, generator=torch.Generator().manual_seed(1), **{term: 2.0})
    z = vae.encode(x).sample(torch.Generator().manual_seed(1))  # the same latent sample the loss drew
    return vae, x, z, regularised - plain, plain_parts, parts


def test_scale_equivariance_adds_the_pooled_reconstructions_to_the_loss():
    vae, x, z, added, plain_parts, parts = loss_with_and_without("scale_equivariance")
    assert "se" not in plain_parts
    se = sum(torch.nn.functional.binary_cross_entropy_with_logits(vae.decode_logits(pool(z, f)), pool(x, f))
             for f in SE_FACTORS) / len(SE_FACTORS)
    torch.testing.assert_close(added, 2.0 * se)
    assert parts["se"] == pytest.approx(se.item())


def test_translate_is_roll_for_whole_cells_and_moves_smooth_maps_by_fractions():
    z = torch.randn(2, 4, 3, 16, 16)
    torch.testing.assert_close(translate(z, 1, -2), torch.roll(z, (1, -2), dims=(-2, -1)))
    y, x = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    blob = torch.exp(-((y - 7) ** 2 + (x - 8) ** 2) / 8)  # smooth: nothing at the Nyquist frequency
    half = translate(blob, 0.5, 0.25)
    centre = lambda m: torch.stack([(m * y).sum(), (m * x).sum()]) / m.sum()
    torch.testing.assert_close(centre(half), torch.tensor([7.5, 8.25]), atol=1e-2, rtol=0)
    torch.testing.assert_close(translate(half, 0.5, 0.75), torch.roll(blob, (1, 1), dims=(-2, -1)), atol=1e-3, rtol=0)


def test_shift_equivariance_adds_a_shifted_reconstruction_to_the_loss():
    vae, x, z, added, plain_parts, parts = loss_with_and_without("shift_equivariance")
    assert "te" not in plain_parts
    shifted = []  # every shift the loss may draw, decoded against the clip rolled as far
    for dy in range(4):
        for dx in range(4):
            logits = vae.decode_logits(translate(z, dy / 4, dx / 4))
            te = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.roll(x, (dy, dx), dims=(-2, -1)))
            shifted.append(((dy, dx), te))
    matches = [d for d, te in shifted if torch.allclose(added, 2.0 * te)]
    assert len(matches) == 1 and matches[0] != (0, 0), matches


def test_encoder_equivariance_adds_one_sub_cell_shift_gap_to_the_loss():
    vae, x, z, added, plain_parts, parts = loss_with_and_without("encoder_equivariance", size=32)  # 8x8 cells: an inner 2x2
    assert "ee" not in plain_parts
    gaps = {(dy, dx): shift_gap(vae, x, dy, dx).square() for dy in range(4) for dx in range(4)}
    matches = [d for d, ee in gaps.items() if torch.allclose(added, 2.0 * ee)]
    assert len(matches) == 1 and matches[0] != (0, 0), matches
    assert added.requires_grad  # it trains the encoder


def test_the_shift_gap_cannot_be_lowered_by_shrinking_the_latent():
    torch.manual_seed(0)
    vae, x = VAE(VAEConfig("frame")), torch.rand(2, 1, 2, 32, 32)
    gap, mu = shift_gap(vae, x, 1, 2), vae.encode(x).mean
    with torch.no_grad():  # scale mu, the first half of the last convolution's outputs, by 0.1
        last, C = vae.encoder[-1], vae.config.latent_channels
        last.weight[:C] *= 0.1
        last.bias[:C] *= 0.1
    torch.testing.assert_close(vae.encode(x).mean, 0.1 * mu)
    torch.testing.assert_close(shift_gap(vae, x, 1, 2), gap)
    with pytest.raises(ValueError, match="at least 7x7 cells .*got frames of 16x16"):
        shift_gap(vae, x[..., :16, :16], 1, 2)


def test_the_equivariant_encoders_move_their_latent_with_the_digit():
    x = clips(standard_test_set("mnist5k"), 600, 4)[:, :, :2]
    error = {name: shift_error(load_vae(name), x) for name in ("frame", "frame-se", "frame-eqe")}
    assert error["frame-se"] < 0.5 * error["frame"], error  # measured 0.33 against 1.32 (2 px, 40 other frames)
    assert error["frame-eqe"] < 0.1, error  # measured 0.045: the encoder's own shift-equivariance term
    assert shift_error(load_vae("frame-se"), x, px=4) < 0.1  # a whole cell: the convolutions' own equivariance


def test_fine_tuning_needs_a_vae_of_the_same_kind(tmp_path):
    with pytest.raises(FileNotFoundError, match="--init .*missing.pt: no such VAE checkpoint"):
        VAETrainConfig(init=str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="--init .* is a .*spacetime.* VAE; expected .*frame"):
        train_vae(VAETrainConfig(kind="frame", init=str(VAE_PATHS["spacetime"]), steps=1), progress=False, save=False)


def test_a_fine_tune_records_where_its_weights_started(tmp_path):
    shipped = json.loads(VAE_PATHS["frame"].with_suffix(".json").read_text())
    cfg = VAETrainConfig(init=str(VAE_PATHS["frame"]), steps=1, scale_equivariance=1.0, out=str(tmp_path / "v.pt"))
    _, summary = train_vae(cfg, progress=False, save=False)
    assert summary["init"]["weights"] == str(VAE_PATHS["frame"])
    assert summary["init"]["command"] == shipped["command"] and summary["init"]["steps"] == shipped["steps"]
    assert 0 < summary["latent_high_frequency_share"] < 1

"""The video compression network: a convolutional VAE over frames, or over space and time.

Sora's diffusion transformer never sees pixels: a VAE first compresses a video into a latent that
is smaller in space (and time), the transformer denoises latents, and the decoder maps them back.

    encoder      q(z | x) = N(mu(x), diag sigma(x)^2)               (B, 1, T, H, W) -> (B, 4, T/r, H/4, W/4)
    reparam.     z = mu + sigma * eps,  eps ~ N(0, I)               (a sample that gradients flow through)
    decoder      x_hat = sigmoid(D(z))
    loss         BCE(x_hat, x) + beta * KL(q(z|x) || N(0, I))       (means over pixels and latents)
    KL           = 1/2 (mu^2 + sigma^2 - 1 - log sigma^2)            (per latent element)

``kind="frame"`` applies 2D convolutions to each frame (r = 1); ``kind="spacetime"`` uses 3D
convolutions and also halves time (r = 2), as Sora's compressor does. Both share the same blocks.
A small KL weight beta keeps the latent close to a Gaussian without blurring the reconstruction; the
latents then have some scale s, and ``latent_scale`` = 1 / s (measured on training clips, as latent
diffusion does) rescales them to unit variance for the diffusion model.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .checkpoint import load_model
from .digits import DATA_DIR

# The shipped VAEs by name: "frame-se" is the frame VAE fine-tuned with the scale-equivariance term, "frame-eq" is
# frame-se fine-tuned with the shift-equivariance term too, "frame-eqe" is frame-eq fine-tuned with the encoder's
# shift-equivariance term as well (``VAE.loss``)
VAE_PATHS = {"frame": DATA_DIR / "vae_frame.pt", "frame-se": DATA_DIR / "vae_frame_se.pt",
             "frame-eq": DATA_DIR / "vae_frame_eq.pt", "frame-eqe": DATA_DIR / "vae_frame_eqe.pt",
             "spacetime": DATA_DIR / "vae_spacetime.pt"}

KL_WEIGHT = 1e-3  # beta: enough to keep latents Gaussian-like, small enough to keep digits sharp
SE_FACTORS = (2, 4)  # the spatial poolings the scale-equivariance loss decodes


@dataclass(frozen=True)
class VAEConfig:
    kind: str = "frame"  # "frame" (2D, per frame) or "spacetime" (3D, halves time)
    channels: tuple[int, ...] = (16, 32)  # width of each resolution level; each level halves H and W
    latent_channels: int = 4
    in_channels: int = 1

    def __post_init__(self):
        if self.kind not in ("frame", "spacetime"):
            raise ValueError(f"kind must be 'frame' or 'spacetime', got {self.kind!r}")

    @property
    def spatial_factor(self) -> int:
        return 2 ** len(self.channels)

    @property
    def temporal_factor(self) -> int:
        return 2 if self.kind == "spacetime" else 1


SPACES = (*VAE_PATHS, "none")  # what a DiT can denoise: a shipped VAE's latents, or pixels


def latent_space(space: str) -> tuple[int, int, int]:
    """(channels, temporal factor, spatial factor) of the space a DiT denoises: a shipped VAE's latents (each is
    ``VAEConfig``'s defaults but for the kind, the part of its name before any "-") or pixels ("none")."""
    if space not in SPACES:
        raise ValueError(f"the space a DiT denoises must be one of {list(SPACES)}, got {space!r}")
    if space == "none":
        return 1, 1, 1
    c = VAEConfig(kind=space.split("-")[0])
    return c.latent_channels, c.temporal_factor, c.spatial_factor


# ---------------------------------------------------------------------------------------------
# Building blocks, for 2D (frames) or 3D (space and time)
# ---------------------------------------------------------------------------------------------

def conv(dims: int, cin: int, cout: int, kernel: int = 3, stride=1) -> nn.Module:
    return (nn.Conv2d if dims == 2 else nn.Conv3d)(cin, cout, kernel, stride=stride, padding=kernel // 2)


class ResBlock(nn.Module):
    """x + conv(SiLU(GN(conv(SiLU(GN(x)))))), with a 1x1 conv on the skip when widths differ."""

    def __init__(self, dims: int, cin: int, cout: int):
        super().__init__()
        self.net = nn.Sequential(nn.GroupNorm(8, cin), nn.SiLU(), conv(dims, cin, cout),
                                 nn.GroupNorm(8, cout), nn.SiLU(), conv(dims, cout, cout))
        self.skip = conv(dims, cin, cout, kernel=1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.net(x)


def resample(dims: int, cin: int, cout: int, time: bool, up: bool) -> nn.Module:
    """A learned 2x down- (strided conv) or up-sampling (transposed conv) of H and W, and of T if ``time``."""
    stride = 2 if dims == 2 else (2 if time else 1, 2, 2)
    kernel = 4 if dims == 2 else (4 if time else 3, 4, 4)
    padding = 1 if dims == 2 else (1 if time else 1, 1, 1)
    if up:
        return (nn.ConvTranspose2d if dims == 2 else nn.ConvTranspose3d)(cin, cout, kernel, stride, padding)
    return (nn.Conv2d if dims == 2 else nn.Conv3d)(cin, cout, kernel, stride, padding)


class Encoder(nn.Sequential):
    """x -> (mu, log sigma^2) stacked on channels: each level downsamples 2x, then a ResBlock."""

    def __init__(self, config: VAEConfig):
        dims, ch = (2 if config.kind == "frame" else 3), config.channels
        layers = [conv(dims, config.in_channels, ch[0])]
        for i, c in enumerate(ch):
            time = config.kind == "spacetime" and i == 0
            layers += [resample(dims, ch[max(i - 1, 0)], c, time, up=False), ResBlock(dims, c, c)]
        layers += [nn.GroupNorm(8, ch[-1]), nn.SiLU(), conv(dims, ch[-1], 2 * config.latent_channels)]
        super().__init__(*layers)


class Decoder(nn.Sequential):
    """z -> logits of x: the encoder mirrored, a ResBlock then a 2x upsampling at each level."""

    def __init__(self, config: VAEConfig):
        dims, ch = (2 if config.kind == "frame" else 3), config.channels[::-1]
        layers = [conv(dims, config.latent_channels, ch[0])]
        for i, c in enumerate(ch):
            time = config.kind == "spacetime" and i == len(ch) - 1
            layers += [ResBlock(dims, c, c), resample(dims, c, ch[min(i + 1, len(ch) - 1)], time, up=True)]
        layers += [nn.GroupNorm(8, ch[-1]), nn.SiLU(), conv(dims, ch[-1], config.in_channels)]
        super().__init__(*layers)


# ---------------------------------------------------------------------------------------------
# The VAE
# ---------------------------------------------------------------------------------------------

class DiagonalGaussian:
    """q(z | x) = N(mu, diag sigma^2), from the encoder's (B, 2C, ...) output."""

    def __init__(self, moments: torch.Tensor):
        self.mean, logvar = moments.chunk(2, dim=1)
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps  # z = mu + sigma * eps

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, I)) per element: 1/2 (mu^2 + sigma^2 - 1 - log sigma^2)."""
        return 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar)


class VAE(nn.Module):
    """A video VAE: ``encode`` (B, 1, T, H, W) -> DiagonalGaussian over (B, 4, T/r, H/4, W/4); ``decode`` back."""

    def __init__(self, config: VAEConfig | None = None):
        super().__init__()
        self.config = config or VAEConfig()
        self.encoder, self.decoder = Encoder(self.config), Decoder(self.config)
        self.register_buffer("latent_scale", torch.tensor(1.0))

    def check(self, x: torch.Tensor) -> None:
        """Clear errors for inputs the VAE cannot take."""
        c, s, r = self.config, self.config.spatial_factor, self.config.temporal_factor
        if x.ndim != 5 or x.shape[1] != c.in_channels:
            raise ValueError(f"expected a video batch (B, {c.in_channels}, T, H, W), got {tuple(x.shape)}")
        T, H, W = x.shape[2:]
        if H % s or W % s:
            raise ValueError(f"H and W must be multiples of {s} (the VAE downsamples {len(c.channels)} times), "
                             f"got {H}x{W}; e.g. {H - H % s or s}x{W - W % s or s} or {H + (-H) % s}x{W + (-W) % s}")
        if T % r:
            raise ValueError(f"the spacetime VAE halves time: T must be even, got T={T}")

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        self.check(x)
        if self.config.kind == "frame":
            B = x.shape[0]
            moments = self.encoder(rearrange(x, "b c t h w -> (b t) c h w"))  # (B*T, 2C, h, w)
            return DiagonalGaussian(rearrange(moments, "(b t) c h w -> b c t h w", b=B))
        return DiagonalGaussian(self.encoder(x))  # (B, 2C, T/2, h, w)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        if self.config.kind == "frame":
            B = z.shape[0]
            logits = self.decoder(rearrange(z, "b c t h w -> (b t) c h w"))  # (B*T, 1, H, W)
            return rearrange(logits, "(b t) c h w -> b c t h w", b=B)
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (B, C, T', h, w) -> video (B, 1, T, H, W) in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """Reconstruction (sampling z) and the posterior, for training."""
        posterior = self.encode(x)
        return self.decode(posterior.sample(generator)), posterior

    def loss(self, x: torch.Tensor, kl_weight: float = KL_WEIGHT, generator=None, scale_equivariance: float = 0.0,
             shift_equivariance: float = 0.0, encoder_equivariance: float = 0.0) -> tuple[torch.Tensor, dict]:
        """BCE(x_hat, x) + beta * KL (+ gamma * SE + delta * TE + epsilon * EE), all as means; also returns the parts
        (and the MSE, for PSNR).

        Binary cross-entropy on the decoder's logits treats each pixel's intensity as a probability,
        which suits nearly black-and-white digits and trains faster than MSE on them. The optional
        scale-equivariance term (Skorokhodov et al. 2025, arXiv 2502.14831) asks the decoder to map a
        pooled latent to the pooled clip, SE = mean_f BCE(D(pool_f z), pool_f x) for f in ``SE_FACTORS``,
        which pushes the latent's spectrum towards the image's (less energy in high frequencies).

        The optional shift-equivariance term asks the same for translations by a fraction of a latent cell, as
        EQ-VAE (Kouzelis et al. 2025, arXiv 2502.09509) does for scalings and rotations: TE = BCE(D(translate(z, d /
        r)), roll(x, d)) for one random shift d of 0..r-1 px along each axis (not both 0) per batch, r the VAE's
        spatial factor. A digit moving 3.6 px a frame then changes its latent by a shift, not a new pattern.
        TE trains the decoder to read shifted latents; the optional encoder term asks the encoder to write them,
        EE = ``shift_gap(self, x, d)`` squared for another random sub-cell shift d: the distance between the
        latent of the rolled clip and the shifted latent, relative to the latent's spread so that shrinking the
        latent cannot lower it.
        """
        posterior = self.encode(x)
        z = posterior.sample(generator)
        logits = self.decode_logits(z)
        rec, kl = F.binary_cross_entropy_with_logits(logits, x), posterior.kl().mean()
        mse = F.mse_loss(torch.sigmoid(logits), x)
        loss, parts = rec + kl_weight * kl, {"rec": rec.item(), "kl": kl.item(), "mse": mse.item()}
        if scale_equivariance:
            se = sum(F.binary_cross_entropy_with_logits(self.decode_logits(pool(z, f)), pool(x, f))
                     for f in SE_FACTORS) / len(SE_FACTORS)
            loss, parts["se"] = loss + scale_equivariance * se, se.item()
        r = self.config.spatial_factor
        if shift_equivariance:
            dy, dx = subcell_shift(r, generator)
            te = F.binary_cross_entropy_with_logits(self.decode_logits(translate(z, dy / r, dx / r)),
                                                    torch.roll(x, (dy, dx), dims=(-2, -1)))
            loss, parts["te"] = loss + shift_equivariance * te, te.item()
        if encoder_equivariance:
            ee = shift_gap(self, x, *subcell_shift(r, generator), mean=posterior.mean).square()
            loss, parts["ee"] = loss + encoder_equivariance * ee, ee.item()
        return loss, parts

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Encode to the posterior mean and decode: the deterministic reconstruction used for metrics."""
        return self.decode(self.encode(x).mean)

    def compression(self, T: int = 20, H: int = 64, W: int = 64) -> float:
        """Input values / latent values for a clip of T x H x W."""
        c = self.config
        latent = c.latent_channels * (T // c.temporal_factor) * (H // c.spatial_factor) * (W // c.spatial_factor)
        return c.in_channels * T * H * W / latent


def pool(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Average ``factor`` x ``factor`` spatial cells of a (B, C, T, H, W) clip or latent: (B, C, T, H/f, W/f)."""
    return F.avg_pool3d(x, (1, factor, factor))


def translate(z: torch.Tensor, dy: float, dx: float) -> torch.Tensor:
    """Shift the last two dims by (dy, dx) cells, fractions too, circularly: F[z(. - d)](k) = F[z](k) e^(-2 pi i k.d)."""
    ky, kx = (torch.fft.fftfreq(n, device=z.device) for n in z.shape[-2:])
    ramp = torch.exp(-2j * math.pi * (ky[:, None] * dy + kx[None, :] * dx))  # (h, w)
    return torch.fft.ifft2(torch.fft.fft2(z) * ramp).real


def subcell_shift(r: int, generator: torch.Generator | None = None) -> tuple[int, int]:
    """A random shift (dy, dx) of 0..r-1 px along each axis, not (0, 0): a whole-cell shift is already exact for
    stride-r convolutions."""
    d = torch.randint(0, r * r - 1, (1,), generator=generator, device=generator.device if generator else None)
    return divmod(int(d) + 1, r)


def shift_gap(vae: VAE, x: torch.Tensor, dy: int, dx: int, mean: torch.Tensor | None = None) -> torch.Tensor:
    """How far a VAE's encoder is from moving its latent with the clip, for a shift of (dy, dx) pixels, a fraction
    of its cell r: ||E(roll(x, d)) - translate(E(x), d / r)|| / ||E(x) - its mean|| over the latent's inner cells
    (the padded border does not move), E the posterior mean (``mean``: E(x) when already computed)."""
    r, z = vae.config.spatial_factor, vae.encode(x).mean if mean is None else mean
    if min(z.shape[-2:]) < 7:
        raise ValueError(f"shift_gap needs a latent of at least 7x7 cells (frames of {7 * r}x{7 * r} px), got "
                         f"frames of {x.shape[-2]}x{x.shape[-1]} px")
    moved = vae.encode(torch.roll(x, (dy, dx), dims=(-2, -1))).mean - translate(z, dy / r, dx / r)
    inner = (..., slice(3, -3), slice(3, -3))
    return moved[inner].norm() / (z - z.mean(dim=(-2, -1), keepdim=True))[inner].norm()


@torch.no_grad()
def shift_error(vae: VAE, x: torch.Tensor, px: int = 2) -> float:
    """``shift_gap`` for a diagonal shift of ``px`` pixels: about 1.3 for the frame VAE at 2 px, 0.3 for frame-se,
    0.2 for frame-eq, 0.03 at a whole cell."""
    return float(shift_gap(vae, x, px, px))


def high_frequency_share(z: torch.Tensor) -> float:
    """The share of a frame's (or latent's) spectral energy above half the Nyquist frequency along H or W,
    over the last two dims after removing each map's mean: about 0.05 for 64x64 Moving MNIST frames, 0.24 for
    them pooled to 16x16; a latent well above its pooled frames is harder for a diffusion model to draw."""
    z = z.detach()
    power = torch.fft.fft2(z - z.mean(dim=(-2, -1), keepdim=True)).abs().pow(2)
    fy, fx = (torch.fft.fftfreq(n, device=z.device).abs() > 0.25 for n in z.shape[-2:])
    high = fy[:, None] | fx[None, :]
    return float(power[..., high].sum() / power.sum())


def load_vae(name_or_path: str | Path = "frame", device: str = "cpu") -> VAE:
    """A shipped VAE by name (a key of ``VAE_PATHS``) or any checkpoint written by ``train_vae.train_vae``."""
    return load_model(VAE_PATHS.get(str(name_or_path), Path(name_or_path)), VAE, VAEConfig, device)[0]


@torch.no_grad()
def encode_decode_ms(vae: VAE, repeats: int = 5) -> float:
    """Milliseconds to encode and decode one standard 20-frame 64x64 clip on the CPU (median of repeats)."""
    cpu = VAE(vae.config)
    cpu.load_state_dict(vae.state_dict())
    x = torch.rand(1, 1, 20, 64, 64)
    cpu.reconstruct(x)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        cpu.reconstruct(x)
        times.append((time.perf_counter() - start) * 1000)
    return sorted(times)[len(times) // 2]

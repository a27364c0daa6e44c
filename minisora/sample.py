"""Text-to-video with a trained DiT (``python -m minisora sample``).

    prompt -> ids -> sample latents from noise (guided by the prompt against the null prompt)
           -> VAE decode -> frames in [0, 1]

A checkpoint is either a training run's ``ckpt.pt`` (its EMA weights are used) or exported weights
such as ``data/dit_tiny.pt``. Both are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from .checkpoint import load_model
from .diffusion import (FAST_SAMPLER, TIME_SCALE, GaussianDiffusion, KnownFrames, RectifiedFlow, WithInputs,
                        check_guidance_ramp, make_objective)
from .digits import DATA_DIR
from .dit import DiT, DiTConfig
from .vae import VAE, latent_space, load_vae

DIT_PATH = DATA_DIR / "dit_tiny.pt"


class VideoCodec:
    """Pixels <-> what the DiT denoises: scaled VAE latents, or pixels mapped to [-1, 1] for ``vae="none"``."""

    def __init__(self, kind: str, device="cpu"):
        self.kind = kind
        self.vae: VAE | None = None if kind == "none" else load_vae(kind, device)
        if self.vae is not None:  # channels-last convolutions: 2.6x faster encoding on a CPU, same latents
            per_frame = self.vae.config.kind == "frame"  # 2D convolutions (frame, frame-se) or 3D
            self.vae.to(memory_format=torch.channels_last if per_frame else torch.channels_last_3d)

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 1, T, H, W) in [0, 1] -> (B, C, T', H', W'): z = latent_scale * posterior mean."""
        if self.vae is None:
            return video * 2 - 1
        return self.vae.encode(video).mean * self.vae.latent_scale

    @torch.no_grad()
    def encode_frames(self, video: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """(B, 1, T, H, W) -> its latents (B, C, T', H', W') on the latent frames ``keep`` (T',) marks, zeros on the
        others. A per-frame VAE (or pixels) encodes only those frames; a spacetime VAE encodes the whole clip."""
        keep = keep.to(video.device)
        if self.vae is not None and self.vae.config.kind != "frame":
            return torch.where(keep[None, None, :, None, None], self.encode(video), 0.0)
        z = self.encode(video[:, :, keep])  # (B, C, kept, H', W')
        out = z.new_zeros(*z.shape[:2], len(keep), *z.shape[3:])  # (B, C, T', H', W')
        out[:, :, keep] = z
        return out

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if self.vae is None:
            return ((z + 1) / 2).clamp(0, 1)
        return self.vae.decode(z / self.vae.latent_scale)


def latent_shape(config: DiTConfig, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
    """The latent (C, T', H', W') of a clip, or an error saying which sizes this model can make."""
    _, temporal, spatial = latent_space(config.vae)
    pt, ph, pw = config.patch
    for name, size, step in (("frames", frames, temporal * pt), ("height", height, spatial * ph),
                             ("width", width, spatial * pw)):
        if size < step or size % step:
            raise ValueError(f"{name}={size} is not supported by this model: it must be a positive multiple of "
                             f"{step} (the {config.vae} VAE and the patch size {config.patch}); its default clip is "
                             f"{config.frames} frames of {config.size}x{config.size}")
    return config.in_channels, frames // temporal, height // spatial, width // spatial


def latent_known(config: DiTConfig, known: torch.Tensor) -> torch.Tensor:
    """A mask of given pixel frames (B, T) -> the mask of given latent frames (B, T'), or a clear error.

    The DiT gives one time to each frame of tubelets (``temporal x patch[0]`` pixel frames), so given
    frames must come in whole groups of that many.
    """
    pt, group = config.patch[0], config.tubelet_frames
    if known.ndim != 2 or known.shape[1] % group:
        raise ValueError(f"expected a frame mask (B, T) with T a multiple of {group}, got {tuple(known.shape)}")
    groups = known.unflatten(1, (-1, group))  # (B, T / group, group)
    if (groups.any(-1) != groups.all(-1)).any():
        raise ValueError(f"given frames must come in whole groups of {group} frames (the {config.vae} VAE and the "
                         f"patch {config.patch}): frames 0-{group - 1}, {group}-{2 * group - 1}, ...; got "
                         f"{[torch.nonzero(row).flatten().tolist() for row in known][:4]}")
    return groups[..., 0].repeat_interleave(pt, dim=1)  # (B, T')


PEER_NAMES = ("latte", "wan")  # diffusers' video transformers in minisora.peers.PEERS


def denoiser_class(arch: str = "minisora") -> type[torch.nn.Module]:
    """The network a run trains (``train --arch``): minisora's DiT or, for the equal-compute comparison of
    ``minisora.peers``, one of diffusers' video transformers wrapped to take the DiT's inputs (imported only then:
    diffusers is a dependency of that comparison, not of the package)."""
    if arch in PEER_NAMES:
        from .peers import PEERS
        return PEERS[arch]
    if arch != "minisora":
        raise ValueError(f"unknown arch {arch!r}: expected one of {('minisora', *PEER_NAMES)}")
    return DiT


def load_dit(path: str | Path = DIT_PATH, device: str = "cpu") -> tuple[DiT, dict]:
    """A DiT from a run's ``ckpt.pt`` (EMA weights) or exported weights; returns (model, training settings).
    A run trained with ``--arch latte`` or ``wan`` gives that peer, which takes the same inputs."""
    model, ckpt = load_model(path, DiT, DiTConfig, device, weights="ema", keys=("train",),
                             choose=lambda ckpt: denoiser_class(ckpt["train"].get("arch", "minisora")))
    return model, dict(ckpt["train"])


def objective_of(train: dict, shift: float | None = None, guidance_interval: tuple[float, float] = (0.0, 1.0),
                 guidance_rescale: float = 0.0) -> GaussianDiffusion | RectifiedFlow:
    """The objective a run trained with, from its saved settings (runs before ``shift`` existed used 1);
    ``shift`` samples rectified flow with another time shift than the one it trained with,
    ``guidance_interval`` [lo, hi] guides only at those noise levels (``Objective.guidance_at``), and
    ``guidance_rescale`` phi is CFG-rescale's weight (``diffusion.guided``)."""
    guidance = dict(guidance_interval=guidance_interval, guidance_rescale=guidance_rescale)
    if train["objective"] == "flow":
        return RectifiedFlow(shift=shift or train.get("shift", 1.0), **guidance)
    if shift:
        raise ValueError(f"shift is a setting of rectified flow; this model was trained with {train['objective']!r}")
    return make_objective(train["objective"], **guidance)


@torch.no_grad()
def generate(model: DiT, codec: VideoCodec, prompts: list[str | None], objective="flow", guidance: float = 4.0,
             steps: int = 50, sampler: str | None = None, frames: int | None = None, height: int | None = None,
             width: int | None = None, seed: int = 0, progress: bool = False, context: torch.Tensor | None = None,
             known: torch.Tensor | None = None, context_noise: float = 0.0, init: torch.Tensor | None = None,
             strength: float = 1.0, frame_guidance: float = 1.0, guidance_ramp: float = 0.0,
             draft: torch.Tensor | None = None, draft_noise: float = 1.0) -> torch.Tensor:
    """Videos (B, 1, T, H, W) in [0, 1] for ``prompts``; sizes default to the training clip size.

    ``objective`` is an objective object (see :func:`objective_of`) or a name, "flow" or "ddpm". A prompt
    ``None`` is the null prompt (no text). With ``context`` videos (B, 1, T, H, W) and a frame mask
    ``known`` (T,) or (B, T), the known frames are given (conditioning frames by masks: prediction,
    image-to-video, extension, interpolation) and the model generates the rest; ``context_noise`` > 0 shows
    them noised to that time (rectified flow), and ``frame_guidance`` w_f > 1 guides towards them (rectified flow;
    see ``KnownFrames``; nothing to guide without them). ``guidance_ramp`` R > 0 lowers the text guidance near
    the known frames, to its full value R frames from them (``KnownFrames.text_guidance``). With ``init`` videos
    (B, 1, T, H, W), sampling starts from them noised to time ``strength`` instead of from pure noise (SDEdit,
    video-to-video). A model trained with ``--draft`` takes ``draft`` clips (B, 1, T, H, W), the context with its
    future drawn by that regression model (``convlstm.draft_clips``): the flow of the frames to generate starts at
    their latents plus noise, x_1 = z_draft + sigma eps (sigma: ``draft_noise``), as in training; a model with
    ``draft_input`` also reads those latents at every step.
    """
    c = model.config
    if draft is not None and (context is None or init is not None):
        raise ValueError("draft clips start the flow of the frames to generate: they need context and known frames, "
                         "and do not combine with init (SDEdit)")
    for given in (context, init, draft):
        if given is not None:
            if given.ndim != 5 or given.shape[:2] != (len(prompts), 1):
                raise ValueError(f"expected videos (B={len(prompts)}, 1, T, H, W) to start from or condition on, got "
                                 f"{tuple(given.shape)}")
            frames, height, width = given.shape[2:]
    shape = latent_shape(c, frames or c.frames, height or c.size, width or c.size)
    device = next(model.parameters()).device
    null = model.null_ids(len(prompts))  # (B, L)
    ids = torch.stack([null[i] if p is None else model.tokenizer.encode(p) for i, p in enumerate(prompts)])
    obj = make_objective(objective) if isinstance(objective, str) else objective
    if (context_noise or init is not None or frame_guidance != 1.0) and obj.kind != "flow":
        raise ValueError(f"context_noise, frame_guidance and init (SDEdit) are written for rectified flow; this model "
                         f"is {obj.kind}")
    if not math.isfinite(frame_guidance) or frame_guidance < 0:
        raise ValueError(f"frame_guidance must be a finite number >= 0 (1: off), got {frame_guidance}")
    if not 0 <= context_noise < 1 or not 0 < strength <= 1:
        raise ValueError(f"context_noise must be in [0, 1) and strength in (0, 1], got {context_noise}, {strength}")
    guidance_ramp = check_guidance_ramp(guidance_ramp)
    sampler = sampler or FAST_SAMPLER[obj.kind]
    generator = torch.Generator(device=device).manual_seed(seed)
    noised = lambda z, t: obj.q_sample(z, torch.full((len(z),), t, device=device),
                                       torch.randn(z.shape, device=device, generator=generator))
    net, start = model, {}
    if context is not None:
        if known is None:
            raise ValueError("context needs a frame mask known, (T,) or (B, T)")
        known = latent_known(c, (known.expand(len(prompts), -1) if known.ndim == 1 else known).bool()).to(device)
        if draft is not None:  # the draft's latents of the frames to generate, zeros on the given ones
            z_draft = torch.where(known[:, None, :, None, None], 0.0,
                                  codec.encode_frames(draft.to(device), ~known.all(0)))  # (B, C, T', H', W')
            if c.draft_input:  # the model reads them at every step
                net = WithInputs(model, draft=z_draft)
        x0 = codec.encode(context.to(device))
        shown = noised(x0, context_noise) if context_noise else x0
        hidden = None
        if frame_guidance != 1.0:  # the given frames noised like the rest of the clip: x_t = (1 - t) x0 + t eps
            eps = torch.randn(x0.shape, device=device, generator=generator)
            copies = lambda z, time: z.repeat(len(time) // len(z), 1, 1, 1, 1)  # (B', C, T, H, W) under guidance
            hidden = lambda time: obj.q_sample(copies(x0, time), time / TIME_SCALE, copies(eps, time))
        net = KnownFrames(net, known, x0, shown,
                          float(obj.time(torch.tensor(context_noise))), frame_guidance, hidden,
                          guidance_ramp / latent_space(c.vae)[1])  # the ramp in latent frames
    if init is not None:  # SDEdit: x_s = (1 - s) x_0 + s eps, then the sampler from time s down to 0
        start = dict(noise=noised(codec.encode(init.to(device)), strength), start=strength)
    if draft is not None:  # x_1 = z_draft + eps on the frames to generate (the given ones are put back anyway)
        eps = torch.randn((len(prompts), *shape), device=device, generator=generator)  # the noise sample() would draw
        start = dict(noise=torch.where(net.known[:, None, :, None, None], eps, z_draft + draft_noise * eps))
    z = obj.sample(net, (len(prompts), *shape), ids.to(device), null.to(device), guidance,
                   steps=steps, sampler=sampler, clip=None, generator=generator, device=device, progress=progress,
                   **start)
    return codec.decode(net.fill(z) if context is not None else z)

"""The debugging ladder's measurements for a DiT checkpoint (issue 14; numbers in docs/recipe.md).

    python scripts/ladder.py --ckpt RUN/ckpt.pt [--overfit]

Always, on real one-digit test clips (the model's own null prompt, rectified flow):
- **x0 explained**: 1 - |x0_hat - x0|^2 / |x0 - mean x0|^2 of the one-step prediction x0_hat = x_t - t v
  at t = 0.5 / 0.7 / 0.8 / 0.9: how much of the clip the model can see through the noise.
- **latent high-frequency share** (``vae.high_frequency_share``) of the space the model denoises, on those clips:
  the frames pooled to the frame VAE's 16x16 have about 0.24; a latent far above that is hard to draw (its
  positions live in the fine detail a sampler settles last; docs/recipe.md, session 15). x0 explained and the
  validation loss compare models of one latent space only.
- **validation loss** (``minisora.scaling``): the training loss on held-out test clips with their short captions,
  at fixed times and noise: one smooth number per model.
- **attention entropy** per block at t = 0.7, as a share of the maximum log(keys): 1 = uniform (each
  token averages everything), small = selective.
- **influence of given frames**: the first half of the latent frames given clean (time 0); how much the
  prediction of the other half moves, relative to its size, when the given frames come from another clip.
With ``--overfit`` (a run trained with ``--clips 1``): samples from fresh noise with the clip's caption,
the share read as its digit by the evaluator, and the mean distance of their centroid tracks to the clip's.
With ``--prompt 3``: samples for that prompt, the share read as its digit, speed error, direction persistence.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from minisora.diffusion import KnownFrames
from minisora.evaluate import real_clips
from minisora.evaluator import load_evaluator, prompt_agreement
from minisora.physics import probe, summarize, track
from minisora.sample import VideoCodec, generate, load_dit, objective_of
from minisora.scaling import validation_loss
from minisora.train import TrainConfig, TrainingClips
from minisora.vae import high_frequency_share


def attention_entropy(model, z, time, ids) -> list[float]:
    """Mean row entropy of every block's self-attention / log(keys), for one forward pass."""
    found = []

    def hook(module, inputs):
        w = module.weights(*inputs)  # (B', h, N, N)
        found.append(float((-(w * w.clamp_min(1e-12).log()).sum(-1)).mean() / np.log(w.shape[-1])))

    handles = [block.attn.register_forward_pre_hook(hook) for block in model.blocks]
    model(z, time, ids)
    for h in handles:
        h.remove()
    return found


def noised_test_clips(codec, clips: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents of real one-digit test clips (B, C, T, H, W) and seeded noise like them."""
    videos, _ = real_clips(clips, 1, seed)
    z = codec.encode(videos[:, None])
    return z, torch.randn(z.shape, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def x0_explained(model, codec, objective, clips: int = 16, seed: int = 0) -> dict:
    """1 - |x0_hat - x0|^2 / |x0 - mean x0|^2 at t = 0.5 / 0.7 / 0.8 / 0.9 (null prompt), any denoiser."""
    z, noise = noised_test_clips(codec, clips, seed)
    null, out = model.null_ids(clips), {}
    for t in (0.5, 0.7, 0.8, 0.9):
        tt = torch.full((clips,), t)
        x_t = objective.q_sample(z, tt, noise)
        x0 = x_t - t * model(x_t, objective.time(tt), null)
        out[t] = round(float(1 - ((x0 - z) ** 2).sum() / ((z - z.mean()) ** 2).sum()), 3)
    return out


@torch.no_grad()
def diagnose(model, codec, objective, clips: int = 16, seed: int = 0) -> dict:
    out = {"x0_explained": x0_explained(model, codec, objective, clips, seed),
           "validation_loss": validation_loss(model, codec, objective, seed=seed)}
    z, noise = noised_test_clips(codec, clips, seed)
    out["latent_high_frequency_share"] = round(high_frequency_share(z), 3)
    null = model.null_ids(clips)
    tt = torch.full((clips,), 0.7)
    x_t = objective.q_sample(z, tt, noise)
    out["attention_entropy"] = [round(e, 3) for e in attention_entropy(model, x_t, objective.time(tt), null)]
    known = (torch.arange(z.shape[2]) < z.shape[2] // 2).expand(clips, -1)  # (B, T): the first half given
    other = z.roll(1, 0)  # each clip's given frames replaced by another clip's
    pred = [KnownFrames(model, known, ctx)(x_t, objective.time(tt), null)[:, :, z.shape[2] // 2:]
            for ctx in (z, other)]
    out["influence_of_given_frames"] = round(float((pred[0] - pred[1]).norm() / pred[0].norm()), 4)
    return out


@torch.no_grad()
def prompted(model, codec, objective, prompt: str, samples: int = 8) -> tuple[dict, torch.Tensor]:
    """Samples from fresh noise for one one-digit prompt: read as its digit? moving as the protocol says?"""
    out = generate(model, codec, [prompt] * samples, objective, guidance=4.0, steps=50, seed=123)[:, 0]
    digit = [int(w) for w in prompt.split() if w.isdigit()][:1]
    physics = summarize(probe(out, 1))
    return {"prompt": prompt, "read_as_digit": prompt_agreement(load_evaluator(), out, [digit] * samples),
            **{k: round(physics[k], 3) for k in ("median_speed_error_px", "direction_persistence")}}, out


@torch.no_grad()
def overfit(model, codec, objective, train: dict, samples: int = 8) -> dict:
    """Samples for the run's one clip: read as its digit? tracks within a pixel of the clip's?"""
    cfg = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in train.items()})
    data = TrainingClips(cfg.seed, cfg.num_digits, cfg.p_descriptive, 1, classes=cfg.classes, clips=1)
    video, caption = data[0]
    scores, out = prompted(model, codec, objective, caption, samples)
    truth = track(video[0].numpy(), 1)[:, 0]  # (T, 2)
    dist = [float(np.linalg.norm(track(v.numpy(), 1)[:, 0] - truth, axis=-1).mean()) for v in out]
    return {**scores, "track_distance_px": [round(d, 2) for d in dist],
            "pixel_mse": round(float(((out - video[0]) ** 2).mean()), 5)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="a run's ckpt.pt or exported weights")
    p.add_argument("--overfit", action="store_true", help="also check samples against the run's one training clip")
    p.add_argument("--prompt", default=None, help="also sample this one-digit prompt and score the samples")
    p.add_argument("--samples", type=int, default=8, help="samples for --overfit and --prompt")
    p.add_argument("--clips", type=int, default=16, help="real test clips for the diagnostics")
    args = p.parse_args()
    model, train = load_dit(args.ckpt)
    codec, objective = VideoCodec(model.config.vae), objective_of(train)
    print(diagnose(model, codec, objective, args.clips))
    if args.overfit:
        print(overfit(model, codec, objective, train, args.samples))
    if args.prompt:
        print(prompted(model, codec, objective, args.prompt, args.samples)[0])


if __name__ == "__main__":
    main()

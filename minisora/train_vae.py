"""Training, evaluating and loading the video VAEs (``python -m minisora train-vae``).

Training clips are standard Moving MNIST clips of **train** digits, generated on the fly; quality
is measured on the first clips of the standard test set (**test** digits only): PSNR and SSIM of
the posterior-mean reconstruction, per frame.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .checkpoint import code_version, device_name, save_checkpoint, write_manifest
from .data import MovingMNIST, standard_test_set
from .metrics import psnr, ssim
from .optim import warmup_cosine
from .vae import KL_WEIGHT, VAE, VAEConfig, encode_decode_ms



def clips(dataset: MovingMNIST, start: int, n: int, device: str = "cpu") -> torch.Tensor:
    """Clips start..start+n of a dataset as one batch (n, 1, T, H, W)."""
    return torch.stack([dataset[start + i]["video"] for i in range(n)]).to(device)


@torch.no_grad()
def measure_latent_scale(vae: VAE, n: int = 64, seed: int = 1) -> float:
    """1 / std of the posterior means over ``n`` training clips: the factor that gives latents unit variance."""
    data = MovingMNIST("train", n, seed=seed, digits="mnist5k")
    means = torch.cat([vae.encode(clips(data, i, 8, vae.latent_scale.device)).mean for i in range(0, n, 8)])
    return float(1.0 / means.std())


@torch.no_grad()
def evaluate(vae: VAE, n: int = 100, batch: int = 10) -> dict:
    """PSNR and SSIM (data_range 1) of reconstructions of the first ``n`` standard test clips."""
    test = standard_test_set("mnist5k")
    device = vae.latent_scale.device
    scores = {"psnr": 0.0, "ssim": 0.0}
    for i in range(0, n, batch):
        x = clips(test, i, batch, device)
        x_hat = vae.reconstruct(x)
        scores["psnr"] += float(psnr(x_hat, x)) * batch / n
        scores["ssim"] += float(ssim(x_hat, x)) * batch / n
    return {"test_clips": n, **{k: round(v, 4) for k, v in scores.items()}}


def train_vae(kind: str = "frame", steps: int = 6000, batch_size: int = 4, lr: float = 2e-3,
              kl_weight: float = KL_WEIGHT, seed: int = 0, device: str = "cpu", out: str | Path | None = None,
              progress: bool = True, command: str = "", checkpoint_every: int = 500) -> tuple[VAE, dict]:
    """Train a frame or spacetime VAE on train-digit clips; save weights and manifest to ``out``."""
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be positive, got {steps} and {batch_size}")
    version = code_version()
    torch.manual_seed(seed)
    generator = torch.Generator(device=device).manual_seed(seed)
    data = MovingMNIST("train", steps * batch_size, seed=seed, digits="mnist5k")
    vae = VAE(VAEConfig(kind=kind)).to(device)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    sched = warmup_cosine(opt, steps, warmup=min(100, steps // 10 + 1))
    out = Path(out) if out is not None else None
    start = time.perf_counter()
    bar = tqdm(range(steps), desc=f"train {kind} VAE", unit="step", disable=not progress)
    for step in bar:
        x = clips(data, step * batch_size, batch_size, device)
        loss, parts = vae.loss(x, kl_weight, generator)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(psnr=f"{-10 * math.log10(parts['mse'] + 1e-10):.1f}", kl=f"{parts['kl']:.2f}")
        if out is not None and (step + 1) % checkpoint_every == 0:
            save_checkpoint({"config": asdict(vae.config), "model": vae.state_dict()}, out)
    seconds = time.perf_counter() - start
    vae.eval()
    vae.latent_scale.fill_(measure_latent_scale(vae))
    speed = encode_decode_ms(vae)
    summary = {"command": command, "code_version": version, "device": device_name(device), "kind": kind,
               "steps": steps, "batch_size": batch_size, "lr": lr, "kl_weight": kl_weight, "seed": seed,
               "wall_time_s": round(seconds, 1), "config": asdict(vae.config),
               "parameters": sum(p.numel() for p in vae.parameters()), "compression": vae.compression(),
               "latent_scale": round(float(vae.latent_scale), 5), **evaluate(vae),
               "encode_decode_ms_per_clip_cpu": round(speed, 1)}
    if out is not None:
        save_checkpoint({"config": asdict(vae.config), "model": vae.state_dict()}, out)
        summary["weights_bytes"] = out.stat().st_size
        write_manifest(summary, out.with_suffix(".json"))
    return vae, summary

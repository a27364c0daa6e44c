"""Training and evaluating the video VAEs (``python -m minisora train-vae``).

Training clips are standard Moving MNIST clips of **train** digits, generated on the fly; quality
is measured on the first clips of the standard test set (**test** digits only): PSNR and SSIM of
the posterior-mean reconstruction, per frame.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .checkpoint import RunRecord, init_record, save_checkpoint, write_manifest
from .config import check_device, check_finite, check_positive, option
from .data import MovingMNIST, standard_test_set
from .metrics import psnr, ssim
from .optim import warmup_cosine
from .vae import KL_WEIGHT, VAE, VAE_PATHS, VAEConfig, encode_decode_ms, high_frequency_share, load_vae


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
    """PSNR and SSIM (data_range 1) of reconstructions of the first ``n`` standard test clips, and the share of
    the latent's spectral energy in high frequencies (``vae.high_frequency_share``, of the posterior means)."""
    test = standard_test_set("mnist5k")
    device = vae.latent_scale.device
    scores = {"psnr": 0.0, "ssim": 0.0, "latent_high_frequency_share": 0.0}
    for i in range(0, n, batch):
        x = clips(test, i, batch, device)
        z = vae.encode(x).mean
        x_hat = vae.decode(z)
        scores["psnr"] += float(psnr(x_hat, x)) * batch / n
        scores["ssim"] += float(ssim(x_hat, x)) * batch / n
        scores["latent_high_frequency_share"] += high_frequency_share(z) * batch / n
    return {"test_clips": n, **{k: round(v, 4) for k, v in scores.items()}}


@dataclass
class VAETrainConfig:
    """Every setting of ``python -m minisora train-vae``, written once."""

    kind: str = option("frame", "frame: 2D convolutions per frame (64x64 -> 16x16x4); spacetime: 3D convolutions "
                                "that also halve time (20 frames -> 10)", choices=("frame", "spacetime"))
    steps: int = option(6000, "optimisation steps")
    batch_size: int = option(4, "clips (of 20 frames) per step")
    kl_weight: float = option(KL_WEIGHT, "beta, the weight of the KL term")
    scale_equivariance: float = option(0.0, "gamma, the weight of the scale-equivariance term (Skorokhodov et al. "
                                            "2025): pooled latents must decode to the pooled clip, which moves the "
                                            "latent's spectrum to low frequencies (easier to diffuse); 0 = off")
    shift_equivariance: float = option(0.0, "delta, the weight of the shift-equivariance term: a latent shifted by a "
                                            "fraction of a cell (Fourier phase) must decode to the clip shifted by "
                                            "as many pixels, so a moving digit's latent moves instead of changing "
                                            "its pattern; 0 = off")
    encoder_equivariance: float = option(0.0, "epsilon, the weight of the encoder's shift-equivariance term: the "
                                              "latent of a clip shifted by a fraction of a cell must be the latent "
                                              "shifted as far (relative squared distance); 0 = off")
    init: str | None = option(None, "start from these VAE weights instead of random ones (a fine-tune), e.g. "
                                    "data/vae_frame.pt; their kind must be --kind")
    lr: float = option(2e-3, "peak AdamW learning rate (warm-up, then cosine decay)")
    seed: int = option(0, "seed for initialisation, clips and sampling")
    device: str = option("cpu", "torch device, e.g. cpu or cuda")
    out: str | None = option(None, "weights path (default: data/vae_KIND.pt); manifest next to it")
    ckpt_every: int = option(500, "steps between checkpoints of the weights during training")

    def __post_init__(self):
        self.out = self.out or str(VAE_PATHS[self.kind])
        check_positive(self, "steps", "batch_size", "ckpt_every")
        check_finite(self, "lr", above=0.0)
        check_finite(self, "kl_weight", at_least=0.0)
        check_finite(self, "scale_equivariance", at_least=0.0)
        check_finite(self, "shift_equivariance", at_least=0.0)
        check_finite(self, "encoder_equivariance", at_least=0.0)
        if self.init is not None and not Path(self.init).is_file():
            raise FileNotFoundError(f"--init {self.init}: no such VAE checkpoint")
        check_device(self.device)


def train_vae(cfg: VAETrainConfig, progress: bool = True, command: str = "", save: bool = True) -> tuple[VAE, dict]:
    """Train a frame or spacetime VAE on train-digit clips; save weights and manifest to ``cfg.out`` (unless
    ``save`` is False)."""
    run = RunRecord(command, cfg.device)
    kind, steps, batch_size, seed, device = cfg.kind, cfg.steps, cfg.batch_size, cfg.seed, cfg.device
    torch.manual_seed(seed)
    generator = torch.Generator(device=device).manual_seed(seed)
    data = MovingMNIST("train", steps * batch_size, seed=seed, digits="mnist5k")
    vae = VAE(VAEConfig(kind=kind)).to(device)
    origin = {"init": init_record(cfg.init)} if cfg.init else {}  # read now: --out may be the same file
    if cfg.init is not None:
        start = load_vae(cfg.init, device)
        if start.config != vae.config:
            raise ValueError(f"--init {cfg.init} is a {start.config} VAE; expected {vae.config}")
        vae.load_state_dict(start.state_dict())
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, weight_decay=0.0)
    sched = warmup_cosine(opt, steps, warmup=min(100, steps // 10 + 1))
    out = Path(cfg.out)
    bar = tqdm(range(steps), desc=f"train {kind} VAE", unit="step", disable=not progress)
    for step in bar:
        x = clips(data, step * batch_size, batch_size, device)
        loss, parts = vae.loss(x, cfg.kl_weight, generator, cfg.scale_equivariance, cfg.shift_equivariance,
                               cfg.encoder_equivariance)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(psnr=f"{-10 * math.log10(parts['mse'] + 1e-10):.1f}", kl=f"{parts['kl']:.2f}")
        if save and (step + 1) % cfg.ckpt_every == 0:
            save_checkpoint({"config": asdict(vae.config), "model": vae.state_dict()}, out)
    run.stop()
    vae.eval()
    vae.latent_scale.fill_(measure_latent_scale(vae))
    speed = encode_decode_ms(vae)
    summary = run.manifest(settings=asdict(cfg), steps=steps, config=asdict(vae.config),
                           parameters=sum(p.numel() for p in vae.parameters()), compression=vae.compression(),
                           latent_scale=round(float(vae.latent_scale), 5), **evaluate(vae),
                           encode_decode_ms_per_clip_cpu=round(speed, 1),
                           **origin)
    if save:
        save_checkpoint({"config": asdict(vae.config), "model": vae.state_dict()}, out)
        summary["weights_bytes"] = out.stat().st_size
        write_manifest(summary, out.with_suffix(".json"))
    return vae, summary

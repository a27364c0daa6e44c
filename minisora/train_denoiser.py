"""Training and scoring the class-conditional digit denoiser of notebook 04 (``python -m minisora train-denoiser``).

Digits are the **train** digits of the shipped MNIST subset, scaled to [-1, 1]. With probability
``p_uncond`` a label is replaced by the null class, so one network learns both the conditional and
the unconditional prediction that classifier-free guidance combines. Samples are scored by the
shipped ViT evaluator: the share of samples it reads as the requested digit, and a diversity figure
(mean pairwise pixel distance between samples of one class, next to the same figure for real digits).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .checkpoint import RunRecord, save_checkpoint, write_manifest
from .config import check_device, check_finite, check_positive, option
from .diffusion import FAST_SAMPLER, make_objective
from .digits import load_digits
from .evaluator import classify, load_evaluator, to_float_images
from .optim import EMA, warmup_cosine
from .unet import DENOISER_PATHS, UNet, UNetConfig



def digit_tensors(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """The shipped digits of a split as (N, 1, 28, 28) in [-1, 1] and labels (N,)."""
    digits = load_digits(split, "mnist5k")
    return to_float_images(digits.images) * 2 - 1, torch.from_numpy(digits.labels).long()


@dataclass
class DenoiserConfig:
    """Every setting of ``python -m minisora train-denoiser``, written once."""

    objective: str = option("ddpm", "ddpm: noise prediction on a 1000-step linear schedule; flow: velocity on a "
                                    "straight path", choices=("ddpm", "flow"))
    steps: int = option(4000, "optimisation steps")
    batch_size: int = option(128, "digits per step")
    p_uncond: float = option(0.1, "probability of replacing a label by the null class (what guidance needs)")
    ema_decay: float = option(0.999, "decay of the weights' moving average")
    eval_per_class: int = option(30, "samples per digit class in the guidance sweep")
    lr: float = option(2e-3, "peak AdamW learning rate (warm-up, then cosine decay)")
    seed: int = option(0, "seed for initialisation, batches, noise and label dropout")
    device: str = option("cpu", "torch device, e.g. cpu or cuda")
    out: str | None = option(None, "weights path (default: data/denoiser_OBJECTIVE.pt); manifest beside it")

    def __post_init__(self):
        self.out = self.out or str(DENOISER_PATHS[self.objective])
        check_positive(self, "steps", "batch_size", "eval_per_class")
        check_finite(self, "lr", above=0.0)
        if not 0.0 <= self.p_uncond < 1.0 or not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"p_uncond and ema_decay must be in [0, 1), got {self.p_uncond} and {self.ema_decay}")
        check_device(self.device)


def train_denoiser(cfg: DenoiserConfig, progress: bool = True, command: str = "", save: bool = True,
                   config: UNetConfig = UNetConfig()) -> tuple[UNet, dict]:
    """Train a U-Net with the ``"ddpm"`` (eps target, linear schedule) or ``"flow"`` objective; returns the EMA
    model and what its manifest records; saves the weights to ``cfg.out`` unless ``save`` is False."""
    run = RunRecord(command, cfg.device)
    objective, steps, batch_size, device = cfg.objective, cfg.steps, cfg.batch_size, cfg.device
    torch.manual_seed(cfg.seed)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    x_train, y_train = (t.to(device) for t in digit_tensors("train"))
    model, obj = UNet(config).to(device), make_objective(objective)
    ema = EMA(model, cfg.ema_decay)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    sched = warmup_cosine(opt, steps, warmup=min(200, steps // 10 + 1))
    losses = []
    bar = tqdm(range(steps), desc=f"train {objective} denoiser", unit="step", disable=not progress)
    for step in bar:
        idx = torch.randint(0, len(x_train), (batch_size,), device=device, generator=generator)
        x0, label = x_train[idx], y_train[idx]  # (B, 1, 28, 28), (B,)
        drop = torch.rand(batch_size, device=device, generator=generator) < cfg.p_uncond
        label = label.masked_fill(drop, model.null_label)  # condition dropout -> the null class
        loss = obj.loss(model, x0, label, generator)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        ema.update(model, step)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}")
    run.stop()
    model = ema.model
    summary = run.manifest(settings=asdict(cfg), steps=steps, config=asdict(config),
                           parameters=sum(p.numel() for p in model.parameters()),
                           final_loss=round(sum(losses[-200:]) / len(losses[-200:]), 4),
                           loss_curve=[round(sum(losses[i:i + 100]) / len(losses[i:i + 100]), 4)
                                       for i in range(0, steps, 100)])
    if save:
        save_checkpoint({"config": asdict(config), "objective": objective, "model": model.state_dict()}, cfg.out)
    return model, summary


@torch.no_grad()
def sample_digits(model: UNet, objective: str, labels: torch.Tensor, guidance: float = 3.0,
                  sampler: str | None = None, steps: int | None = 50, seed: int = 0,
                  progress: bool = False) -> torch.Tensor:
    """Digits of the requested ``labels`` (N,) as (N, 28, 28) in [0, 1]."""
    obj = make_objective(objective)
    sampler = sampler or FAST_SAMPLER[objective]
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    labels = labels.to(device)
    null = torch.full_like(labels, model.null_label)
    x = obj.sample(model, (len(labels), 1, 28, 28), labels, null, guidance, steps=steps, sampler=sampler,
                   generator=generator, device=device, progress=progress)
    return ((x[:, 0] + 1) / 2).clamp(0, 1).cpu()  # (N, 28, 28)


def diversity(images: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean pairwise RMS pixel distance between images of the same class, averaged over classes."""
    scores = []
    for c in labels.unique():
        x = images[labels == c].flatten(1).double()  # (n, 784)
        if len(x) > 1:
            d = torch.cdist(x, x) / x.shape[1] ** 0.5  # RMS distance
            scores.append(float(d.sum() / (len(x) * (len(x) - 1))))
    return sum(scores) / len(scores)


def score_digits(images: torch.Tensor, labels: torch.Tensor, evaluator=None) -> dict:
    """Evaluator accuracy (the share read as the requested digit) and diversity of generated digits."""
    evaluator = evaluator or load_evaluator()
    predicted, _ = classify(evaluator, images)
    return {"accuracy": round(float((torch.as_tensor(predicted) == labels).double().mean()), 4),
            "diversity": round(diversity(images, labels), 4)}


def evaluate_denoiser(model: UNet, objective: str, per_class: int = 50, guidance_scales=(1.0, 2.0, 3.0, 5.0),
                      guidance: float = 3.0, compare_per_class: int = 10, progress: bool = True) -> dict:
    """Accuracy and diversity against guidance scale (fast sampler, 50 steps), the fast sampler against the
    full one (DDPM: 1000 ancestral steps; flow: 250 Euler steps) at ``guidance``, and sampling times."""
    evaluator = load_evaluator()
    labels = torch.arange(10).repeat_interleave(per_class)
    real_x, real_y = digit_tensors("test")
    result = {"samples_per_class": per_class, "real_test_digits": score_digits((real_x[:, 0] + 1) / 2, real_y, evaluator),
              "guidance": {}}
    for scale in tqdm(guidance_scales, desc="guidance sweep", disable=not progress):
        images = sample_digits(model, objective, labels, scale, seed=1)
        result["guidance"][str(scale)] = score_digits(images, labels, evaluator)
    few = torch.arange(10).repeat_interleave(compare_per_class)
    full_sampler, full_steps = ("ddpm", None) if objective == "ddpm" else ("euler", 250)
    result["compare"] = {"guidance": guidance, "samples": len(few)}
    for name, sampler, steps in [(f"{FAST_SAMPLER[objective]}_50", None, 50),
                                 (f"{full_sampler}_{full_steps or 1000}", full_sampler, full_steps)]:
        start = time.perf_counter()
        images = sample_digits(model, objective, few, guidance, sampler, steps, seed=2, progress=progress)
        ms = (time.perf_counter() - start) * 1000 / len(few)
        result["compare"][name] = {**score_digits(images, few, evaluator), "ms_per_digit_cpu": round(ms, 1)}
    return result


def train_and_evaluate(cfg: DenoiserConfig, progress: bool = True, command: str = "") -> dict:
    """``train-denoiser``: train, save the weights, evaluate, write the manifest beside the weights."""
    model, summary = train_denoiser(cfg, progress, command)
    start = time.perf_counter()
    summary["eval"] = evaluate_denoiser(model, cfg.objective, per_class=cfg.eval_per_class, progress=progress)
    summary["eval_wall_time_s"] = round(time.perf_counter() - start, 1)
    summary["weights_bytes"] = Path(cfg.out).stat().st_size
    write_manifest(summary, Path(cfg.out).with_suffix(".json"))
    return summary

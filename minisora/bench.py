"""Benchmarks: ``python -m minisora bench packing``, ``bench sizes``, ``bench train`` and ``bench peers``.

Packing: for a realistic mix of sizes (digits at many resolutions and aspect ratios, or clips of
many sizes and durations), how much of a batch is real tokens when sequences are packed into rows
versus padded to the longest, and how long a NaViT training step takes either way.

Train: the speed of a DiT training step (forward, backward, AdamW; bf16 autocast on CUDA) for each
preset on random latents of a 20-frame 64x64 clip, in steps/s, clips/s and achieved TFLOP/s (from
``dit.flops_per_clip``; divide by the chip's peak for the MFU). Data loading and the VAE are left out.

Peers: minisora's DiT against diffusers' Latte and Wan video transformers at equal shapes (``peers.py``; needs
diffusers).
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .config import REQUIRED, check_device, check_positive, option
from .diffusion import RectifiedFlow
from .dit import ATTENTIONS, PRESETS, DiT, flops_per_clip, get_preset, parameter_count
from .packing import ClipLayout, NaViT, pack, pad_to_longest
from .sample import PEER_NAMES, latent_shape
from .sizes import draw_shape, patch_grid
from .timing import seconds_per_step

SIZES = tuple(range(16, 65, 4))  # image sides in px: 4..16 patches of 4x4
CLIP_SIZES = tuple(range(32, 65, 8))  # clip sides in px: 4..8 tubelets of 8x8
FRAMES = tuple(range(4, 21, 2))  # clip lengths: 2..10 tubelets of 2 frames
MAX_TOKENS = {"images": 16 * 16, "videos": 10 * 8 * 8}  # the longest sequence of each mix: the default budget


def random_inputs(kind: str, n: int, generator: torch.Generator) -> list[torch.Tensor]:
    """``n`` random images (1, H, W) or clips (1, T, H, W) with sizes drawn uniformly from the mix."""
    pick = lambda options: options[int(torch.randint(len(options), (1,), generator=generator))]
    if kind == "images":
        return [torch.rand(1, pick(SIZES), pick(SIZES), generator=generator) for _ in range(n)]
    if kind == "videos":
        return [torch.rand(1, pick(FRAMES), pick(CLIP_SIZES), pick(CLIP_SIZES), generator=generator) for _ in range(n)]
    raise ValueError(f"kind must be 'images' or 'videos', got {kind!r}")


def small_navit(kind: str) -> NaViT:
    """The NaViT the benchmark times: 4x4 patches for images, (2, 8, 8) tubelets for videos."""
    if kind == "images":
        return NaViT(dim=64, depth=4, heads=4, patch_size=(4, 4), max_grid=(16, 16))
    return NaViT(dim=64, depth=4, heads=4, patch_size=(2, 8, 8), max_grid=(10, 8, 8))


def utilisation(kind: str, batch: int, budget: int, batches: int, seed: int = 0) -> dict:
    """Mean share of real tokens, packed (rows of ``budget``) vs padded to the longest, over many batches."""
    g = torch.Generator().manual_seed(seed)
    model = small_navit(kind)
    packed = padded = 0.0
    with torch.no_grad():
        for _ in range(batches):
            tokens, coords = model.tokenize(random_inputs(kind, batch, g))
            packed += pack(tokens, coords, budget).utilisation / batches
            padded += pad_to_longest(tokens, coords).utilisation / batches
    return {"packed": packed, "padded": padded}


def step_time(kind: str, batch: int, budget: int, layout: str, backend: str, steps: int, device: str,
              seed: int = 0) -> float:
    """Seconds per training step (forward, backward, AdamW) of a small NaViT."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = small_navit(kind).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = [[x.to(device) for x in random_inputs(kind, batch, g)] for _ in range(steps + 1)]
    labels = torch.randint(10, (batch,), generator=g).to(device)

    def step():
        loss = F.cross_entropy(model(next(batch_iter), budget, backend=backend, padded=layout == "padded"), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    batch_iter = iter(batches)
    return seconds_per_step(step, steps, device)


def bench_packing(kind: str = "images", batch: int = 128, budget: int | None = None, steps: int = 5,
                  batches: int = 50, device: str = "cpu", backends: tuple[str, ...] | None = None,
                  progress: bool = True) -> dict:
    """Utilisation and step times for packed vs padded batches; returns a dict of the results."""
    budget = budget or MAX_TOKENS[kind]
    if backends is None:
        backends = ("flex", "dense") if device.startswith("cuda") else ("loop", "dense")
    result = {"kind": kind, "batch": batch, "budget": budget, "device": device, "steps": steps,
              "utilisation": utilisation(kind, batch, budget, batches), "step_seconds": {}}
    runs = [(layout, backend) for layout in ("packed", "padded") for backend in backends]
    for layout, backend in tqdm(runs, desc="bench packing", disable=not progress):
        result["step_seconds"][f"{layout}/{backend}"] = step_time(kind, batch, budget, layout, backend, steps, device)
    return result


def format_packing(result: dict) -> str:
    """The benchmark as a small table."""
    u = result["utilisation"]
    lines = [f"{result['kind']}: batches of {result['batch']}, rows of {result['budget']} tokens, on {result['device']}",
             f"  token utilisation   packed {u['packed']:.1%}   padded to longest {u['padded']:.1%}",
             "  training step (ms)  " + "   ".join(f"{k} {v * 1000:.0f}" for k, v in result["step_seconds"].items())]
    return "\n".join(lines)


def bench_sizes(preset: str = "tiny", clips: int = 32, budget: int = 2560, steps: int = 3, device: str = "cpu",
                backends: tuple[str, ...] | None = None, seed: int = 0, progress: bool = True) -> dict:
    """The DiT (the recipe's blocks) on one batch of ``clips`` clips of mixed sizes (``sizes.py``): the share of
    real tokens packed into rows of ``budget`` tokens, padded to the longest clip, and in buckets (one pass per
    shape: no padding, but many small passes); and the time of a training step (forward, backward, AdamW) each way."""
    config = get_preset(preset, attention="factorized", conv=True, rope=True)
    rng, g = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    shapes = [draw_shape(rng, config, budget) for _ in range(clips)]
    torch.manual_seed(seed)
    model, objective = DiT(config).to(device), RectifiedFlow()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    latents = [torch.randn(config.in_channels, *(n * p for n, p in zip(patch_grid(s, config), config.patch)),
                           generator=g).to(device) for s in shapes]  # (C, T', H', W') each
    noises = [torch.randn(x.shape, generator=g).to(device) for x in latents]
    t, ids = torch.rand(clips, generator=g).to(device), model.tokenizer.batch(["3 and 7"] * clips).to(device)
    tokens = [torch.zeros(math.prod(patch_grid(s, config)), 1) for s in shapes]
    grids = [patch_grid(s, config) for s in shapes]
    result = {"preset": preset, "clips": clips, "budget": budget, "device": device, "steps": steps,
              "shapes": [list(s) for s in shapes], "distinct_shapes": len(set(shapes)),
              "utilisation": {"packed": ClipLayout(tokens, grids, budget).packed.utilisation,
                              "padded": ClipLayout(tokens, grids, padded=True).packed.utilisation, "buckets": 1.0},
              "step_seconds": {}}

    def train_step(loss_fn):
        def step():
            loss = loss_fn()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step

    def buckets():  # one pass per shape, each clip's loss weighted as in the packed mean
        groups = {}
        for i, s in enumerate(shapes):
            groups.setdefault(s, []).append(i)
        return sum(objective.loss(model, torch.stack([latents[i] for i in idx]), ids[idx], t=t[idx],
                                  noise=torch.stack([noises[i] for i in idx])) * len(idx) for idx in groups.values()) / clips

    backends = backends or (("dense",) if device.startswith("cuda") else ("loop", "dense"))
    runs = {f"{layout}/{backend}": train_step(lambda layout=layout, backend=backend: objective.packed_loss(
        model, latents, ids, t, noises, [None] * clips, budget=budget, backend=backend, padded=layout == "padded"))
        for layout in ("packed", "padded") for backend in backends}
    runs["buckets"] = train_step(buckets)
    for name, step in tqdm(runs.items(), desc="bench sizes", disable=not progress):
        result["step_seconds"][name] = seconds_per_step(step, steps, device)
    return result


def format_sizes(result: dict) -> str:
    u, s = result["utilisation"], result["step_seconds"]
    lines = [f"{result['preset']} DiT, {result['clips']} clips of mixed sizes ({result['distinct_shapes']} shapes), rows of "
             f"{result['budget']} tokens, on {result['device']}",
             f"  token utilisation   packed {u['packed']:.1%}   padded to longest {u['padded']:.1%}   buckets "
             f"{u['buckets']:.0%} in {result['distinct_shapes']} passes",
             "  training step (s)   " + "   ".join(f"{k} {v:.2f}" for k, v in s.items())]
    return "\n".join(lines)


def bench_train(presets=("micro", "tiny", "small"), batch: int = 16, steps: int = 3, device: str = "cpu",
                attention: str = "full", progress: bool = True) -> dict:
    """Timed DiT training steps (after one warm-up step) for each preset."""
    rows = []
    cuda = torch.device(device).type == "cuda"
    for name in tqdm(presets, desc="bench train", disable=not progress):
        config = get_preset(name, attention=attention)
        model, objective = DiT(config).to(device), RectifiedFlow()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        z = torch.randn(batch, *latent_shape(config, config.frames, config.size, config.size), device=device)
        ids = model.tokenizer.batch(["3 and 7"] * batch).to(device)

        def step():
            with torch.autocast("cuda", torch.bfloat16) if cuda else contextlib.nullcontext():
                loss = objective.loss(model, z, ids)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        seconds = seconds_per_step(step, steps, device)
        flops = flops_per_clip(config)
        rows.append({"preset": name, "attention": attention, "parameters": parameter_count(model),
                     "gflop_per_clip": round(flops / 1e9, 2), "batch": batch, "step_s": round(seconds, 3),
                     "steps_per_s": round(1 / seconds, 3), "clips_per_s": round(batch / seconds, 2),
                     "tflop_per_s": round(flops * batch / seconds / 1e12, 4)})
    return {"device": device, "threads": torch.get_num_threads(), "rows": rows}


def format_train(result: dict) -> str:
    lines = [f"DiT training step on {result['device']} ({result['threads']} threads), random latents of 20x64x64 clips",
             f"{'preset':>6} | {'attention':>10} | {'params':>7} | {'GFLOP/clip':>10} | {'batch':>5} | "
             f"{'steps/s':>7} | {'clips/s':>7} | {'TFLOP/s':>7}"]
    for r in result["rows"]:
        lines.append(f"{r['preset']:>6} | {r['attention']:>10} | {r['parameters'] / 1e6:6.2f}M | {r['gflop_per_clip']:10.2f} | "
                     f"{r['batch']:5d} | {r['steps_per_s']:7.3f} | {r['clips_per_s']:7.2f} | {r['tflop_per_s']:7.4f}")
    return "\n".join(lines)


@dataclass
class BenchConfig:
    """Every setting of ``python -m minisora bench``, written once."""

    what: str = option(REQUIRED, "which benchmark to run", choices=("packing", "sizes", "train", "peers"))
    kind: str = option("images", "images: digits at 16-64 px per side (4x4 patches); videos: clips of 4-20 frames at "
                                 "32-64 px per side ((2, 8, 8) tubelets)", choices=("images", "videos"))
    batch: int | None = option(None, "sequences per batch (packing), clips of mixed sizes (sizes) or clips per step "
                                     "(train, peers); default: 128, and 8 for peers")
    budget: int | None = option(None, "tokens per packed row (default: the longest possible sequence: 256 images, "
                                      "640 videos; sizes: 2560, the longest clip the mix draws for tiny)")
    steps: int = option(5, "timed training steps per configuration (after a warm-up)")
    presets: tuple[str, ...] = option(("micro", "tiny", "small"), "train: the DiT presets to time; sizes and peers: "
                                      "the first one", choices=tuple(PRESETS))
    precisions: tuple[str, ...] = option(("fp32", "bf16"), "peers: matmul precisions to time (bf16: autocast)",
                                         choices=("fp32", "bf16"))
    peers: tuple[str, ...] = option(PEER_NAMES, "peers: the diffusers models to set beside minisora's (Latte: "
                                                "factorized attention; Wan: full attention with RoPE)", choices=PEER_NAMES)
    attention: str = option("full", "train: the attention mode", choices=tuple(ATTENTIONS))
    batches: int = option(50, "random batches averaged for the utilisation")
    device: str = option("cpu", "torch device, e.g. cpu or cuda")
    backends: tuple[str, ...] | None = option(None, "attention backends to time (default: loop and dense on CPU, "
                                                    "flex and dense on GPU)", choices=("dense", "loop", "flex"))
    out: str | None = option(None, "also write the results as JSON to this file")

    def __post_init__(self):
        if self.batch is None:
            self.batch = 8 if self.what == "peers" else 128
        check_positive(self, "batch", "budget", "steps", "batches")
        check_device(self.device)


def run_bench(cfg: BenchConfig, progress: bool = True) -> dict:
    """Run the benchmark ``cfg.what``, print its table, write its JSON to ``cfg.out`` if given; returns the result."""
    if cfg.what == "sizes":
        result = bench_sizes(cfg.presets[0], cfg.batch, cfg.budget or 2560, cfg.steps, cfg.device, cfg.backends,
                             progress=progress)
        print(format_sizes(result))
    elif cfg.what == "peers":
        from .peers import bench_peers, format_peers  # diffusers is needed here only

        result = bench_peers(cfg.presets[0], cfg.batch, cfg.steps, cfg.device, cfg.precisions, cfg.peers,
                             progress=progress)
        print(format_peers(result))
    elif cfg.what == "train":
        result = bench_train(cfg.presets, cfg.batch, cfg.steps, cfg.device, cfg.attention, progress=progress)
        print(format_train(result))
    else:
        result = bench_packing(cfg.kind, cfg.batch, cfg.budget, cfg.steps, cfg.batches, cfg.device, cfg.backends,
                               progress=progress)
        print(format_packing(result))
    if cfg.out:
        Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.out).write_text(json.dumps(result, indent=2) + "\n")
    return result

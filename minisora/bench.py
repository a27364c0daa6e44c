"""Benchmarks: ``python -m minisora bench packing``.

Packing: for a realistic mix of sizes (digits at many resolutions and aspect ratios, or clips of
many sizes and durations), how much of a batch is real tokens when sequences are packed into rows
versus padded to the longest, and how long a NaViT training step takes either way.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .packing import NaViT, pack, pad_to_longest

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

    def step(inputs):
        loss = F.cross_entropy(model(inputs, budget, backend=backend, padded=layout == "padded"), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step(batches[0])  # warm-up (and compilation, for flex)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for inputs in batches[1:]:
        step(inputs)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


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


def run_bench(args) -> None:
    result = bench_packing(args.kind, args.batch, args.budget, args.steps, args.batches, args.device,
                           tuple(args.backends) if args.backends else None, progress=not args.quiet)
    print(format_packing(result))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")

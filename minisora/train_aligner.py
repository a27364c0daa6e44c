"""Training the frozen encoder that REPA aligns the DiT with (``python -m minisora train-aligner``).

The encoder (``repa.FrameEncoder``) learns to label each 8x8-pixel cell of a Moving MNIST frame with the
digit that covers it, or background, from frames of train-digit clips with one or two digits. Its
accuracy on the digit cells of clips of **test** digits goes in the manifest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .checkpoint import RunRecord, save_checkpoint, write_manifest
from .config import option
from .data import MovingMNIST
from .optim import warmup_cosine
from .repa import ALIGNER_PATH, BACKGROUND, FrameEncoder, cell_labels


@dataclass
class AlignerConfig:
    """Every setting of the aligner's training: ``python -m minisora train-aligner --help`` is made from these."""

    steps: int = option(1500, "optimisation steps")
    clips: int = option(4, "clips per step; each gives all its frames (20 frames each)")
    dim: int = option(64, "feature channels of the encoder (what the DiT's tokens are aligned with)")
    lr: float = option(2e-3, "peak AdamW learning rate (warm-up, then cosine decay)")
    seed: int = option(0, "seed for initialisation and clips")
    out: str = option(str(ALIGNER_PATH), "weights path; the manifest goes next to it as .json")

    def __post_init__(self):
        for name in ("steps", "clips", "dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


def labelled_frames(sets: list[MovingMNIST], start: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips start..start+n (alternating between ``sets``) as frames (n*T, 1, H, W) and cell labels (n*T, h, w)."""
    frames, labels = [], []
    for i in range(start, start + n):
        data = sets[i % len(sets)]
        clip = data.clip(i // len(sets))
        frames.append(torch.from_numpy(clip.video).float().div(255)[:, None])  # (T, 1, H, W)
        labels.append(torch.from_numpy(cell_labels(clip, data.digits)))  # (T, h, w)
    return torch.cat(frames), torch.cat(labels)


@torch.no_grad()
def digit_cell_accuracy(encoder: FrameEncoder, clips: int = 50, seed: int = 1) -> dict:
    """Accuracy of the cell labels on clips of test digits: on cells a digit covers, and on all cells."""
    sets = [MovingMNIST("test", clips, seed=seed + k, digits="mnist5k", num_digits=k) for k in (1, 2)]
    frames, labels = labelled_frames(sets, 0, clips)
    right = encoder.classify(frames).argmax(1) == labels
    digit = labels != BACKGROUND
    return {"test_clips": clips, "digit_cells": round(float(right[digit].float().mean()), 4),
            "all_cells": round(float(right.float().mean()), 4)}


def train_aligner(cfg: AlignerConfig, progress: bool = True, command: str = "") -> tuple[FrameEncoder, dict]:
    run = RunRecord(command, "cpu")
    torch.manual_seed(cfg.seed)
    encoder = FrameEncoder(cfg.dim)
    opt = torch.optim.AdamW(encoder.parameters(), lr=cfg.lr, weight_decay=0.01)
    sched = warmup_cosine(opt, cfg.steps, min(100, cfg.steps // 10))
    sets = [MovingMNIST("train", cfg.steps * cfg.clips, seed=cfg.seed + k, digits="mnist5k", num_digits=k)
            for k in (1, 2)]
    for step in tqdm(range(cfg.steps), desc="train aligner", disable=not progress):
        frames, labels = labelled_frames(sets, step * cfg.clips, cfg.clips)
        loss = F.cross_entropy(encoder.classify(frames), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    run.stop()
    encoder.eval()
    summary = run.manifest(settings=asdict(cfg), steps=cfg.steps, final_loss=round(loss.item(), 4),
                           accuracy=digit_cell_accuracy(encoder),
                           parameters=sum(p.numel() for p in encoder.parameters()))
    out = Path(cfg.out)
    save_checkpoint({"config": {"dim": cfg.dim}, "model": encoder.state_dict()}, out)
    write_manifest({**summary, "weights_bytes": out.stat().st_size}, out.with_suffix(".json"))
    return encoder, summary

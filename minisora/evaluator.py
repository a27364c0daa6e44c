"""The evaluator: a ViT digit classifier that later judges generated videos.

It is trained on the **train** digits only, with light augmentation (small shifts, rotations and
scalings, as a digit cropped from a video frame is never perfectly centred), and shipped as
``data/evaluator.pt`` with a manifest ``data/evaluator.json``. ``python -m minisora
train-evaluator`` reproduces it.

To read the digits in a Moving MNIST frame, :func:`locate_digits` finds the 28x28 windows that hold
the most ink (then re-centres each on its ink's centre of mass, as MNIST digits are centred) and
:func:`classify` reads each crop.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .checkpoint import code_version, device_name, load_checkpoint, save_checkpoint, write_manifest
from .digits import DATA_DIR, load_digits
from .optim import warmup_cosine
from .vit import ViT

EVALUATOR_PATH = DATA_DIR / "evaluator.pt"
EVALUATOR_CONFIG = dict(num_classes=10, in_channels=1, patch_size=4, dim=96, depth=6, heads=4, pool="cls")
DIGIT = 28  # the evaluator reads 28x28 crops


def to_float_images(images) -> torch.Tensor:
    """Digit crops (N, 28, 28) uint8 or float in [0, 1], numpy or torch -> (N, 1, 28, 28) float in [0, 1]."""
    x = images if torch.is_tensor(images) else torch.from_numpy(np.array(images))  # a copy: pools are read-only
    if x.ndim != 3 or tuple(x.shape[1:]) != (DIGIT, DIGIT):
        raise ValueError(f"expected digit crops of shape (N, {DIGIT}, {DIGIT}), got {tuple(x.shape)}")
    x = x.float().div(255) if x.dtype == torch.uint8 else x.float()
    return x.unsqueeze(1)  # (N, 1, 28, 28)


def augment(x: torch.Tensor, generator: torch.Generator, degrees: float = 10, scale: float = 0.1,
            shift: float = 3) -> torch.Tensor:
    """Random affine per image: rotation in ±degrees, zoom in 1 ± scale, translation in ±shift px."""
    n = len(x)
    u = lambda: torch.rand(n, generator=generator) * 2 - 1  # U[-1, 1] per image
    angle, zoom = u() * math.radians(degrees), 1 + u() * scale
    tx, ty = u() * shift * 2 / x.shape[-1], u() * shift * 2 / x.shape[-2]  # in [-1, 1] grid units
    cos, sin = angle.cos() / zoom, angle.sin() / zoom
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)  # (N, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


@torch.no_grad()
def classify(model: ViT, images, batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Labels (N,) and class probabilities (N, 10) for digit crops (N, 28, 28)."""
    x = to_float_images(images)
    device = next(model.parameters()).device
    probs = torch.cat([model(x[i:i + batch_size].to(device)).softmax(-1).cpu() for i in range(0, len(x), batch_size)])
    return probs.argmax(-1).numpy(), probs.numpy()


def accuracy(model: ViT, split: str = "test", source: str = "mnist5k") -> float:
    """Fraction of the ``split`` digits that ``model`` classifies correctly."""
    digits = load_digits(split, source)
    return float((classify(model, digits.images)[0] == digits.labels).mean())


def train_evaluator(epochs: int = 120, batch_size: int = 128, lr: float = 1e-3, weight_decay: float = 0.05,
                    train_digits: int | None = None, seed: int = 0, device: str = "cpu",
                    out: str | Path | None = EVALUATOR_PATH, progress: bool = True,
                    command: str = "") -> tuple[ViT, dict]:
    """Train the evaluator ViT on the train digits (a random ``train_digits`` of them, if given);
    save weights and manifest to ``out`` (unless None)."""
    if epochs < 1 or batch_size < 1 or (train_digits is not None and train_digits < 1):
        raise ValueError(f"epochs, batch_size and train_digits must be positive, got {epochs}, {batch_size}, "
                         f"{train_digits}")
    version = code_version()  # of the code that starts training, before anyone edits the tree
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    train = load_digits("train", "mnist5k")
    subset = slice(None)
    if train_digits is not None:  # a seeded random subset (the pool is sorted by class)
        subset = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:train_digits].numpy()
    x_train, y_train = to_float_images(train.images[subset]), torch.tensor(train.labels[subset])
    model = ViT(**EVALUATOR_CONFIG).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(x_train) / batch_size)
    total, warmup = epochs * steps_per_epoch, steps_per_epoch * 2
    sched = warmup_cosine(opt, total, warmup)
    start = time.perf_counter()
    bar = tqdm(total=total, desc="train evaluator", unit="step", disable=not progress)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            x = augment(x_train[idx], generator).to(device)
            loss = F.cross_entropy(model(x), y_train[idx].to(device), label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update()
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
    bar.close()
    seconds = time.perf_counter() - start
    model.eval()
    summary = {
        "command": command, "code_version": version, "device": device_name(device),
        "epochs": epochs, "steps": total, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
        "seed": seed, "wall_time_s": round(seconds, 1), "config": EVALUATOR_CONFIG,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_digits": len(x_train), "train_accuracy": round(accuracy(model, "train"), 4),
        "test_accuracy": round(accuracy(model, "test"), 4), "test_digits": len(load_digits("test", "mnist5k")),
    }
    if out is not None:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        save_checkpoint({"config": EVALUATOR_CONFIG, "model": state}, out)
        summary["weights_bytes"] = Path(out).stat().st_size
        write_manifest(summary, Path(out).with_suffix(".json"))
    return model, summary


def load_evaluator(path: str | Path = EVALUATOR_PATH, device: str = "cpu") -> ViT:
    """The shipped evaluator (or another checkpoint written by :func:`train_evaluator`), in eval mode."""
    ckpt = load_checkpoint(path, map_location=device, kind="evaluator", keys=("config", "model"))
    model = ViT(**ckpt["config"])
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval()


def locate_digits(frame, num_digits: int, size: int = DIGIT) -> np.ndarray:
    """Top-left corners (K, 2) of the ``num_digits`` size x size windows holding the most ink.

    Greedy: take the window with the most ink, re-centre it on its ink's centre of mass, blank the
    ink it covers, repeat. Heavily overlapping digits cannot be told apart this way (nor by eye):
    when less than 10% of the first window's ink is left, the last window is repeated.
    """
    f = torch.as_tensor(np.asarray(frame, dtype=np.float32)).clone()  # (H, W)
    H, W = f.shape
    if H < size or W < size:
        raise ValueError(f"a frame of {H}x{W} is smaller than a {size}x{size} digit window")
    corners, first_mass = [], None
    for _ in range(num_digits):
        mass = F.avg_pool2d(f[None, None], size, stride=1)[0, 0]  # (H-size+1, W-size+1) window means
        if first_mass is None:
            first_mass = float(mass.max())
        elif mass.max() < 0.1 * first_mass:  # no ink left: this digit hides behind one already found
            corners.append(corners[-1])
            continue
        y, x = divmod(int(mass.argmax()), mass.shape[1])
        window = f[y:y + size, x:x + size]
        if window.sum() > 0:  # re-centre on the centre of mass
            ys, xs = torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32)
            cy = float((window.sum(1) * ys).sum() / window.sum())
            cx = float((window.sum(0) * xs).sum() / window.sum())
            y = min(max(round(y + cy - (size - 1) / 2), 0), H - size)
            x = min(max(round(x + cx - (size - 1) / 2), 0), W - size)
        corners.append((y, x))
        f[y:y + size, x:x + size] = 0
    return np.array(corners, dtype=np.int64)


def crop_digits(video, num_digits: int) -> tuple[np.ndarray, np.ndarray]:
    """Crops (T, K, 28, 28) of the digits found in each frame of a (T, H, W) video, and their corners (T, K, 2)."""
    video = np.asarray(video)
    if video.ndim != 3:
        raise ValueError(f"expected a video of shape (T, H, W), got {video.shape}")
    corners = np.stack([locate_digits(frame, num_digits) for frame in video])  # (T, K, 2)
    crops = np.stack([[frame[y:y + DIGIT, x:x + DIGIT] for y, x in cs] for frame, cs in zip(video, corners)])
    return crops, corners


def classify_video(model: ViT, video, num_digits: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame labels (T, K) of the digits found in a (T, H, W) video (uint8, or float in [0, 1]), with corners."""
    crops, corners = crop_digits(video, num_digits)  # (T, K, 28, 28)
    labels, _ = classify(model, crops.reshape(-1, DIGIT, DIGIT))
    return labels.reshape(crops.shape[:2]), corners


def separated(points: np.ndarray, size: int = DIGIT) -> np.ndarray:
    """(T, K) bool for digit boxes at ``points`` (T, K, 2): True where a box overlaps no other box of its frame."""
    gap = np.abs(points[:, :, None] - points[:, None]).max(-1)  # (T, K, K) Chebyshev distance between digits
    return (gap + np.eye(points.shape[1]) * size >= size).all(-1)


def read_clip(model: ViT, video, num_digits: int) -> list[tuple[int, ...]]:
    """What the evaluator reads in a (T, H, W) video: the sorted labels of its ``num_digits`` digits, per frame.

    With several digits, only frames where their windows do not overlap are read: when digits overlap,
    neither the windows nor a person can tell them apart. The list is empty if they never separate.
    """
    per_frame, corners = classify_video(model, np.asarray(video), num_digits)  # (T, K), (T, K, 2)
    return [tuple(sorted(labels)) for labels in per_frame[separated(corners).all(1)].tolist()]


def majority(readings: list[tuple[int, ...]]) -> tuple[int, ...]:
    """The most common reading of a clip's frames (ties: the smallest)."""
    return max(sorted(set(readings)), key=readings.count)


def prompt_agreement(model: ViT, videos, prompt_labels: list[list[int]]) -> float:
    """Share of clips whose digits, read by the evaluator, are the prompt's digits.

    Each frame is read (as many digits as the prompt names; see :func:`read_clip`); a clip's reading is
    the most common sorted tuple of labels over its frames; it agrees when that equals the prompt's
    sorted digits (a clip whose digits never separate does not agree).
    ``videos`` is (N, T, H, W) in [0, 1] (or uint8).
    """
    if len(videos) != len(prompt_labels):
        raise ValueError(f"expected one list of labels per clip ({len(videos)}), got {len(prompt_labels)}")
    readings = [read_clip(model, video, len(wanted)) for video, wanted in zip(videos, prompt_labels)]
    agree = sum(bool(r) and majority(r) == tuple(sorted(wanted)) for r, wanted in zip(readings, prompt_labels))
    return agree / len(videos)

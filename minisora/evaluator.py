"""The evaluator: a ViT digit classifier that later judges generated videos.

It is trained on the **train** digits only, with light augmentation (small shifts, rotations and
scalings, as a digit cropped from a video frame is never perfectly centred), and shipped as
``data/evaluator.pt`` with a manifest ``data/evaluator.json``. ``python -m minisora
train-evaluator`` reproduces it.

To read the digits in a Moving MNIST frame, ``geometry.locate_digits`` finds the 28x28 windows that
hold the most ink (then re-centres each on its ink's centre of mass, as MNIST digits are centred) and
the ViT reads each crop. :func:`read_clip` does this once per clip, and :func:`digit_scores` is the one
definition of "a clip matches its prompt".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .checkpoint import RunRecord, load_model, save_checkpoint, write_manifest
from .config import check_device, check_finite, check_positive, option
from .data import MovingMNIST
from .digits import DATA_DIR, load_digits
from .geometry import DIGIT, crop_digits, separated
from .physics import probe, summarize
from .optim import warmup_cosine
from .vit import ViT

EVALUATOR_PATH = DATA_DIR / "evaluator.pt"
EVALUATOR_CONFIG = dict(num_classes=10, in_channels=1, patch_size=4, dim=96, depth=6, heads=4, pool="cls")


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


@dataclass
class EvaluatorConfig:
    """Every setting of ``python -m minisora train-evaluator``, written once."""

    epochs: int = option(120, "passes over the training digits")
    batch_size: int = option(128, "digits per optimisation step")
    weight_decay: float = option(0.05, "AdamW weight decay")
    train_digits: int | None = option(None, "use a random N of the training digits (quick experiments; default: all "
                                            "4,000)")
    lr: float = option(1e-3, "peak AdamW learning rate (warm-up, then cosine decay)")
    seed: int = option(0, "seed for initialisation, shuffling and augmentation")
    device: str = option("cpu", "torch device, e.g. cpu or cuda")
    out: str = option(str(EVALUATOR_PATH), "where to write the weights; the manifest goes next to it as .json")

    def __post_init__(self):
        check_positive(self, "epochs", "batch_size", "train_digits")
        check_finite(self, "lr", above=0.0)
        check_finite(self, "weight_decay", at_least=0.0)
        check_device(self.device)


def train_evaluator(cfg: EvaluatorConfig, progress: bool = True, command: str = "",
                    save: bool = True) -> tuple[ViT, dict]:
    """Train the evaluator ViT on the train digits (a random ``train_digits`` of them, if given); save weights
    and manifest to ``cfg.out`` unless ``save`` is False."""
    run = RunRecord(command, cfg.device)
    seed, device, batch_size = cfg.seed, cfg.device, cfg.batch_size
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    train = load_digits("train", "mnist5k")
    subset = slice(None)
    if cfg.train_digits is not None:  # a seeded random subset (the pool is sorted by class)
        subset = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:cfg.train_digits].numpy()
    x_train, y_train = to_float_images(train.images[subset]), torch.tensor(train.labels[subset])
    model = ViT(**EVALUATOR_CONFIG).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(x_train) / batch_size)
    total, warmup = cfg.epochs * steps_per_epoch, steps_per_epoch * 2
    sched = warmup_cosine(opt, total, warmup)
    bar = tqdm(total=total, desc="train evaluator", unit="step", disable=not progress)
    for epoch in range(cfg.epochs):
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
    run.stop()
    model.eval()
    summary = run.manifest(
        settings=asdict(cfg), steps=total, config=EVALUATOR_CONFIG, parameters=sum(p.numel() for p in model.parameters()),
        train_digits=len(x_train), train_accuracy=round(accuracy(model, "train"), 4),
        test_accuracy=round(accuracy(model, "test"), 4), test_digits=len(load_digits("test", "mnist5k")))
    if save:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        save_checkpoint({"config": EVALUATOR_CONFIG, "model": state}, cfg.out)
        summary["weights_bytes"] = Path(cfg.out).stat().st_size
        write_manifest(summary, Path(cfg.out).with_suffix(".json"))
    return model, summary


def load_evaluator(path: str | Path = EVALUATOR_PATH, device: str = "cpu") -> ViT:
    """The shipped evaluator (or another checkpoint written by :func:`train_evaluator`), in eval mode."""
    return load_model(path, ViT, device=device, kind="evaluator")[0]


@dataclass
class ClipReading:
    """What the evaluator reads in one clip, found once and used by every score."""

    corners: np.ndarray  # (T, K, 2) top-left corners of the K digit windows in each frame
    labels: np.ndarray  # (T, K) the digit read in each window
    features: torch.Tensor  # (D,) the evaluator's features of the windows, averaged over the clip

    @property
    def readings(self) -> list[tuple[int, ...]]:
        """The sorted labels of each frame whose digit windows do not overlap: when digits overlap, neither
        the windows nor a person can tell them apart. Empty if the digits never separate."""
        apart = separated(self.corners).all(1)  # (T,)
        return [tuple(sorted(labels)) for labels in self.labels[apart].tolist()]


@torch.no_grad()
def read_clip(model: ViT, video, num_digits: int) -> ClipReading:
    """Locate, crop and read the ``num_digits`` digits of each frame of a (T, H, W) video (uint8, or in [0, 1])."""
    crops, corners = crop_digits(np.asarray(video), num_digits)  # (T, K, 28, 28), (T, K, 2)
    device = next(model.parameters()).device
    features = model.features(to_float_images(crops.reshape(-1, DIGIT, DIGIT)).to(device))  # (T*K, D)
    labels = model.head(features).argmax(-1).cpu().numpy().reshape(crops.shape[:2])  # (T, K)
    return ClipReading(corners, labels, features.mean(0).cpu())


def majority(readings: list[tuple[int, ...]]) -> tuple[int, ...]:
    """The most common reading of a clip's frames (ties: the smallest)."""
    return max(sorted(set(readings)), key=readings.count)


def digit_scores(reads: list[ClipReading], prompt_labels: list[list[int]]) -> dict:
    """Whether clips show their prompts' digits; the one definition the eval, export check and notebooks use.

    A clip is *readable* when its digits are apart in some frame (always, for one digit). A readable clip
    **agrees with its prompt** when its most common reading over those frames is the prompt's sorted
    digits. ``alignment`` is the share of readable clips that agree (``readable`` says how many were),
    ``frame_agreement`` the mean share of their frames read as the prompt, ``identity`` the mean share of
    their frames that show the clip's own most common reading.
    """
    if len(reads) != len(prompt_labels):
        raise ValueError(f"expected one list of labels per clip ({len(reads)}), got {len(prompt_labels)}")
    aligned, frames_right, identity = [], [], []
    for read, wanted in zip(reads, prompt_labels):
        readings, wanted = read.readings, tuple(sorted(wanted))
        if not readings:
            continue
        top = majority(readings)
        aligned.append(top == wanted)
        frames_right.append(np.mean([r == wanted for r in readings]))
        identity.append(np.mean([r == top for r in readings]))
    mean = lambda x: float(np.mean(x)) if x else float("nan")
    return {"readable": len(aligned) / len(reads), "alignment": mean(aligned),
            "frame_agreement": mean(frames_right), "identity": mean(identity)}


def prompt_agreement(model: ViT, videos, prompt_labels: list[list[int]]) -> float:
    """The ``alignment`` of :func:`digit_scores` for videos (N, T, H, W) in [0, 1] (or uint8)."""
    if len(videos) != len(prompt_labels):
        raise ValueError(f"expected one list of labels per clip ({len(videos)}), got {len(prompt_labels)}")
    return digit_scores(read_clips(model, videos, prompt_labels), prompt_labels)["alignment"]


def prompts_for(num_clips: int, num_digits: int, seed: int = 0) -> tuple[list[str], list[list[int]]]:
    """Evaluation prompts and their digits: "0".."9" in turn, or random pairs "a and b"."""
    if num_digits == 1:
        labels = [[i % 10] for i in range(num_clips)]
    else:
        rng = np.random.default_rng([seed, num_digits])
        labels = [sorted(rng.choice(10, num_digits).tolist()) for _ in range(num_clips)]
    return [" and ".join(map(str, digits)) for digits in labels], labels


def real_clips(num_clips: int, num_digits: int, seed: int = 0, frames: int = 20) -> tuple[torch.Tensor, list[list[int]]]:
    """Real clips (N, T, H, W) of test digits and their digits: the reference for every score."""
    data = MovingMNIST("test", num_clips, seed=seed, num_digits=num_digits, num_frames=frames)
    items = [data[i] for i in range(num_clips)]
    return torch.stack([it["video"][0] for it in items]), [it["labels"].tolist() for it in items]


def read_clips(evaluator: ViT, videos, labels: list[list[int]]) -> list[ClipReading]:
    """Each clip of ``videos`` (N, T, H, W) read once, with as many digits as its prompt names."""
    return [read_clip(evaluator, video, len(wanted)) for video, wanted in zip(np.asarray(videos), labels)]


def clip_scores(evaluator: ViT, videos, labels: list[list[int]]) -> tuple[dict, torch.Tensor]:
    """One column of the table (``evaluator.digit_scores`` and the physics probe's summary, from one reading
    of each clip), and each clip's evaluator features (N, D) for the Frechet distance."""
    reads = read_clips(evaluator, videos, labels)
    physics = summarize(probe(videos, len(labels[0]), corners=[r.corners for r in reads]))
    return {**digit_scores(reads, labels), **physics}, torch.stack([r.features for r in reads])

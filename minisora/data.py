"""Moving MNIST: the toy world whose videos minisora learns to generate.

A clip draws digits (28x28 MNIST sprites) on a black canvas along the trajectories of ``motion.py``
(the standard OpenSTL protocol, or SVG's stochastic one) and carries its captions and metadata.
Clip ``i`` of a dataset with seed ``s`` is always the same clip: its random numbers come
from ``numpy.random.default_rng([s, split, i])``.

Every clip carries its metadata, in fixed-shape arrays so that a ``DataLoader`` can batch them:
``labels`` (K,), ``positions`` (T, K, 2) top-left corners (y, x) in pixels, ``velocities``
(T, K, 2) in px/frame with p_{t+1} = clamp(p_t + v_t), and ``bounces`` (T, K, 2) with -1 where
frame t hit the top (y) or left (x) wall, +1 the bottom or right wall, 0 otherwise.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .captions import describe, short_caption
from .checkpoint import atomic_write
from .digits import SPLITS, Digits, load_digits
from .config import check_positive, option
from .motion import PRESETS, Motion, MovingMNISTConfig, get_config, sample_motion  # noqa: F401 (PRESETS: public here too)

# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------

def resize_digit(image: np.ndarray, size: int) -> np.ndarray:
    """Resize a (28, 28) uint8 digit to (size, size) with bilinear filtering, as SVG does."""
    if image.shape[0] == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def render(sprites: np.ndarray, positions: np.ndarray, config: MovingMNISTConfig) -> np.ndarray:
    """Draw digit sprites (K, d, d) uint8 at floor(positions) (T, K, 2) on a (T, H, W) uint8 video.

    Standard dynamics combine overlapping digits by pixel-wise max, stochastic ones by a
    sum clipped to 255.
    """
    T, K, _ = positions.shape
    d = config.digit_size
    corners = np.floor(positions).astype(np.int64)  # (T, K, 2)
    if config.dynamics == "standard":
        video = np.zeros((T, config.height, config.width), np.uint8)
        for t in range(T):
            for k in range(K):
                y, x = corners[t, k]
                np.maximum(video[t, y:y + d, x:x + d], sprites[k], out=video[t, y:y + d, x:x + d])
        return video
    video = np.zeros((T, config.height, config.width), np.uint16)
    for t in range(T):
        for k in range(K):
            y, x = corners[t, k]
            video[t, y:y + d, x:x + d] += sprites[k]
    return np.minimum(video, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Clips
# ---------------------------------------------------------------------------------------------

@dataclass
class Clip:
    """One Moving MNIST clip and the metadata that describes it."""

    video: np.ndarray  # (T, H, W) uint8
    labels: np.ndarray  # (K,) int64
    digit_ids: np.ndarray  # (K,) int64, indices into the digit pool
    motion: Motion
    config: MovingMNISTConfig = field(repr=False)

    @property
    def caption(self) -> str:
        """Short caption, e.g. "3 and 7"."""
        return short_caption(self.labels)

    @property
    def description(self) -> str:
        """Descriptive caption: where each digit starts, where it moves, which walls it hits."""
        return describe(self.labels, self.motion, self.config)


def make_clip(rng: np.random.Generator, digits: Digits, config: MovingMNISTConfig,
              labels: list[int] | None = None) -> Clip:
    """Sample a clip: digits (of the given ``labels``, if any), their motion, and the video."""
    K = config.num_digits
    if labels is None:
        ids = rng.integers(len(digits), size=K)
    else:
        if len(labels) != K:
            raise ValueError(f"expected {K} labels (num_digits), got {len(labels)}: {list(labels)}")
        bad = [lab for lab in labels if lab not in range(10)]
        if bad:
            raise ValueError(f"labels must be digits 0-9, got {bad}")
        ids = np.array([rng.choice(digits.of_class(lab)) for lab in labels])
    sprites = np.stack([resize_digit(digits.images[i], config.digit_size) for i in ids])  # (K, d, d)
    motion = sample_motion(rng, config)
    video = render(sprites, motion.positions, config)  # (T, H, W)
    return Clip(video, digits.labels[ids].astype(np.int64), ids.astype(np.int64), motion, config)


class MovingMNIST(Dataset):
    """A seeded, reproducible Moving MNIST dataset.

    Item ``i`` is a dict: ``video`` (1, T, H, W) float32 in [0, 1], ``caption`` (short),
    ``description`` (descriptive), and the metadata tensors ``labels``, ``positions``,
    ``velocities``, ``bounces``. It is regenerated on the fly, so any ``num_clips`` is free,
    and it works with ``DataLoader(num_workers > 0)``.

    >>> ds = MovingMNIST("test", num_clips=100, seed=0, digits="mnist5k")
    >>> ds[0]["video"].shape
    torch.Size([1, 20, 64, 64])
    """

    def __init__(self, split: str = "train", num_clips: int = 10_000, seed: int = 0,
                 config: str | MovingMNISTConfig = "standard", digits: str | Digits = "auto",
                 **overrides):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if not isinstance(num_clips, int) or num_clips < 1:
            raise ValueError(f"num_clips must be a positive integer, got {num_clips!r}")
        self.split, self.num_clips, self.seed = split, num_clips, seed
        self.config = get_config(config, **overrides)
        self.digits = digits if isinstance(digits, Digits) else load_digits(split, digits)

    def __len__(self) -> int:
        return self.num_clips

    def __repr__(self) -> str:
        return (f"MovingMNIST(split={self.split!r}, num_clips={self.num_clips}, seed={self.seed}, "
                f"digits={self.digits.source!r}, config={self.config})")

    def rng(self, i: int) -> np.random.Generator:
        """The random stream of clip ``i``: a function of (seed, split, i) only."""
        return np.random.default_rng([self.seed, SPLITS.index(self.split), i])

    def clip(self, i: int, labels: list[int] | None = None) -> Clip:
        """Clip ``i`` as a :class:`Clip` (numpy video and metadata)."""
        if not -self.num_clips <= i < self.num_clips:
            raise IndexError(f"clip index {i} out of range for a dataset of {self.num_clips} clips")
        return make_clip(self.rng(i % self.num_clips), self.digits, self.config, labels)

    def __getitem__(self, i: int) -> dict:
        c = self.clip(int(i))
        return {
            "video": torch.from_numpy(c.video).float().div(255).unsqueeze(0),  # (1, T, H, W)
            "caption": c.caption,
            "description": c.description,
            "labels": torch.from_numpy(c.labels),  # (K,)
            "positions": torch.from_numpy(c.motion.positions),  # (T, K, 2)
            "velocities": torch.from_numpy(c.motion.velocities),  # (T, K, 2)
            "bounces": torch.from_numpy(c.motion.bounces),  # (T, K, 2)
        }


# The seeded test set that evaluations use: 10,000 standard clips of test digits.
TEST_SET = dict(split="test", num_clips=10_000, seed=0, config="standard")
CONTEXT = 10  # frames given in video prediction (10 -> 10): the test clips' first half


def standard_test_set(digits: str = "auto") -> MovingMNIST:
    """The 10,000-clip standard Moving MNIST test set (10 -> 10 frame prediction) from test digits."""
    return MovingMNIST(**TEST_SET, digits=digits)


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------

@dataclass
class DataConfig:
    """Every setting of ``python -m minisora data``, written once; the defaults write the standard test set."""

    preset: str = option(TEST_SET["config"], "dynamics and sizes: 'standard' (Srivastava/OpenSTL: 28px digits, 3.6 "
                                             "px/frame, max) or 'stochastic' (SVG: 32px digits, random integer "
                                             "velocities redrawn at bounces, sum)", choices=tuple(sorted(PRESETS)))
    split: str = option(TEST_SET["split"], "which digits to draw from; test digits are never used for training",
                        choices=SPLITS)
    num_clips: int = option(TEST_SET["num_clips"], "number of clips N")
    seed: int = option(TEST_SET["seed"], "clip i of a seed is always the same clip")
    frames: int | None = option(None, "frames per clip T (default: the preset's, 20)")
    height: int | None = option(None, "canvas height H in px (default: the preset's, 64)")
    width: int | None = option(None, "canvas width W in px (default: the preset's, 64)")
    num_digits: int | None = option(None, "digits per clip (default: the preset's, 2)")
    digit_size: int | None = option(None, "digit size in px; MNIST's 28x28 digits are resized (default: the preset's)")
    digits: str = option("auto", "digit source: the shipped 5,000-digit subset, torchvision's full MNIST, or 'auto' "
                                 "(full MNIST if it is on disk, else the subset)", choices=("auto", "mnist5k", "mnist"))
    download: bool = option(False, "allow downloading full MNIST with torchvision (nothing downloads without this flag)")
    out: str = option("outputs/moving_mnist", "output folder")
    name: str = option("mnist_test_seq", "file name stem")
    preview: int = option(8, "clips in the preview GIF (0: no GIF)")

    def __post_init__(self):
        check_positive(self, "num_clips")
        if self.preview < 0:
            raise ValueError(f"preview must be a number of clips >= 0, got {self.preview}")
        get_config(self.preset, **self.overrides())  # sizes that fit together, or a clear error now

    def overrides(self) -> dict:
        """The preset's fields these settings change."""
        given = dict(num_frames=self.frames, height=self.height, width=self.width, num_digits=self.num_digits,
                     digit_size=self.digit_size)
        return {k: v for k, v in given.items() if v is not None}

    def dataset(self) -> MovingMNIST:
        digits = load_digits(self.split, self.digits, download=self.download)
        return MovingMNIST(self.split, self.num_clips, self.seed, self.preset, digits, **self.overrides())


def export(dataset: MovingMNIST, out_dir: str | Path, name: str = "moving_mnist",
           preview: int = 8, progress: bool = True) -> dict:
    """Write ``dataset`` to ``out_dir`` and return a summary.

    Files: ``{name}.npy`` uint8 (T, N, H, W), the layout of the standard ``mnist_test_seq.npy``;
    ``{name}_meta.npz`` with the metadata arrays, stacked over clips (N first);
    ``{name}_captions.json`` with the config and each clip's captions;
    ``{name}_preview.gif`` with the first ``preview`` clips tiled (0 to skip).
    """
    from .viz import save_gif  # viz imports matplotlib; keep `import minisora.data` light

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg, N = dataset.config, len(dataset)
    T, K = cfg.num_frames, cfg.num_digits
    meta = {"labels": np.zeros((N, K), np.int64), "digit_ids": np.zeros((N, K), np.int64),
            "positions": np.zeros((N, T, K, 2), np.float32),
            "velocities": np.zeros((N, T, K, 2), np.float32), "bounces": np.zeros((N, T, K, 2), np.int8)}
    captions, start = [], time.perf_counter()

    def write_videos(tmp: Path) -> None:  # streamed to disk: the clips need not fit in memory
        videos = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(T, N, cfg.height, cfg.width))
        for i in tqdm(range(N), desc=f"export {name}", unit="clip", disable=not progress):
            c = dataset.clip(i)
            videos[:, i] = c.video  # (T, N, H, W)
            meta["labels"][i], meta["digit_ids"][i] = c.labels, c.digit_ids
            meta["positions"][i], meta["velocities"][i] = c.motion.positions, c.motion.velocities
            meta["bounces"][i] = c.motion.bounces
            captions.append({"caption": c.caption, "description": c.description})
        videos.flush()

    # every file is written under a temporary name, then renamed: an interrupted export leaves no
    # half-written file under the final names
    atomic_write(out_dir / f"{name}.npy", write_videos)
    seconds = time.perf_counter() - start

    def write_meta(tmp: Path) -> None:
        with tmp.open("wb") as f:  # a file, not a path: numpy would append ".npz" to the temporary name
            np.savez_compressed(f, **meta)

    atomic_write(out_dir / f"{name}_meta.npz", write_meta)
    info = {"split": dataset.split, "seed": dataset.seed, "num_clips": N, "digits": dataset.digits.source,
            "config": asdict(cfg), "layout": "(T, N, H, W) uint8"}
    atomic_write(out_dir / f"{name}_captions.json",
                 lambda tmp: tmp.write_text(json.dumps({**info, "captions": captions}, indent=1)))
    if preview:
        clips = [dataset.clip(i).video for i in range(min(preview, N))]
        save_gif(clips, out_dir / f"{name}_preview.gif", ncols=min(4, len(clips)))
    return {**info, "out_dir": str(out_dir), "seconds": seconds, "clips_per_second": N / seconds}

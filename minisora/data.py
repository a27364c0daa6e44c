"""Moving MNIST: the toy world whose videos minisora learns to generate.

Standard protocol (Srivastava et al. 2015, as re-implemented by OpenSTL)::

    canvas 64x64, two 28x28 digits, 20 frames
    start   p_0 ~ U([0, H-d] x [0, W-d])             (top-left corner, on the free area)
    heading theta ~ U[0, 2 pi),  v = s (sin theta, cos theta),  s = 3.6 px/frame
    step    p_t = p_{t-1} + v                         (OpenSTL steps before recording frame 0)
    bounce  if p_t leaves [0, H-d] (or [0, W-d]): clamp it there and flip that component of v
    draw    the digit at floor(p_t); digits combine by pixel-wise max

3.6 px/frame is OpenSTL's step of 0.1 in units of the 36-pixel free area.

Stochastic variant (SVG, Denton & Fergus 2018): 32x32 digits (MNIST resized), integer
velocities in [-4, 4]; at a bounce the digit is clamped inside [0, H-d-1] and its velocity is
redrawn (the component off the wall points away from it; at a corner, the x bounce comes second
and redraws v_y again, as in SVG's code); digits are summed, then clipped.

Both generalise to any number of digits, canvas height and width, number of frames and digit
size. Clip ``i`` of a dataset with seed ``s`` is always the same clip: its random numbers come
from ``numpy.random.default_rng([s, split, i])``.

Every clip carries its metadata, in fixed-shape arrays so that a ``DataLoader`` can batch them:
``labels`` (K,), ``positions`` (T, K, 2) top-left corners (y, x) in pixels, ``velocities``
(T, K, 2) in px/frame with p_{t+1} = clamp(p_t + v_t), and ``bounces`` (T, K, 2) with -1 where
frame t hit the top (y) or left (x) wall, +1 the bottom or right wall, 0 otherwise.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .captions import describe, short_caption
from .digits import SPLITS, Digits, load_digits

DYNAMICS = ("standard", "stochastic")


@dataclass(frozen=True)
class MovingMNISTConfig:
    """Everything that defines how clips look; the defaults are the standard protocol."""

    height: int = 64
    width: int = 64
    num_frames: int = 20
    num_digits: int = 2
    digit_size: int = 28
    dynamics: str = "standard"  # "standard" (OpenSTL) or "stochastic" (SVG)
    step: float = 3.6  # standard: speed in px/frame
    max_velocity: int = 4  # stochastic: velocities are integers in [-max_velocity, max_velocity]

    def __post_init__(self):
        for name in ("height", "width", "num_frames", "num_digits", "digit_size", "max_velocity"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.dynamics not in DYNAMICS:
            raise ValueError(f"dynamics must be one of {DYNAMICS}, got {self.dynamics!r}")
        if not self.step > 0:
            raise ValueError(f"step must be a positive speed in px/frame, got {self.step!r}")
        if self.height <= self.digit_size or self.width <= self.digit_size:
            raise ValueError(
                f"the canvas must be larger than a digit so that digits can move: got a "
                f"{self.height}x{self.width} canvas (height x width) for {self.digit_size}-pixel digits; "
                f"use height and width of at least {self.digit_size + 1}")

    @property
    def free(self) -> tuple[int, int]:
        """The free area (H - d, W - d): the range of a digit's top-left corner."""
        return self.height - self.digit_size, self.width - self.digit_size


PRESETS = {
    "standard": MovingMNISTConfig(),
    "stochastic": MovingMNISTConfig(digit_size=32, dynamics="stochastic"),
}


def get_config(preset: str | MovingMNISTConfig = "standard", **overrides) -> MovingMNISTConfig:
    """A preset by name ("standard", "stochastic"), with any field overridden."""
    if isinstance(preset, MovingMNISTConfig):
        config = preset
    elif preset in PRESETS:
        config = PRESETS[preset]
    else:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    unknown = set(overrides) - set(asdict(config))
    if unknown:
        raise ValueError(f"unknown config field(s) {sorted(unknown)}; expected some of {list(asdict(config))}")
    return replace(config, **overrides)


# ---------------------------------------------------------------------------------------------
# Motion
# ---------------------------------------------------------------------------------------------

@dataclass
class Motion:
    """The trajectories of K digits over T frames."""

    positions: np.ndarray  # (T, K, 2) float32, top-left corner (y, x) in px
    velocities: np.ndarray  # (T, K, 2) float32, px/frame: p_{t+1} = clamp(p_t + v_t)
    bounces: np.ndarray  # (T, K, 2) int8, -1 top/left wall, +1 bottom/right wall


def standard_trajectory(rng: np.random.Generator, config: MovingMNISTConfig):
    """One digit's path under the standard protocol. Returns positions, velocities, bounces (T, 2)."""
    T, free = config.num_frames, config.free
    pos, vel, bounce = np.zeros((T, 2)), np.zeros((T, 2)), np.zeros((T, 2), np.int8)
    y, x = rng.random() * free[0], rng.random() * free[1]  # p_0 ~ U(free area)
    theta = rng.random() * 2 * math.pi  # theta ~ U[0, 2 pi)
    vy, vx = config.step * math.sin(theta), config.step * math.cos(theta)  # |v| = s
    for t in range(T):
        y, x = y + vy, x + vx  # p_t = p_{t-1} + v
        if y <= 0:  # clamp at the wall and flip the velocity component
            y, vy, bounce[t, 0] = 0.0, -vy, -1
        elif y >= free[0]:
            y, vy, bounce[t, 0] = float(free[0]), -vy, 1
        if x <= 0:
            x, vx, bounce[t, 1] = 0.0, -vx, -1
        elif x >= free[1]:
            x, vx, bounce[t, 1] = float(free[1]), -vx, 1
        pos[t], vel[t] = (y, x), (vy, vx)
    return pos, vel, bounce


def stochastic_trajectory(rng: np.random.Generator, config: MovingMNISTConfig):
    """One digit's path under SVG's stochastic dynamics. Returns positions, velocities, bounces (T, 2)."""
    T, m = config.num_frames, config.max_velocity
    hi = [f - 1 for f in config.free]  # SVG keeps the corner in [0, H-d-1]
    pos, vel, bounce = np.zeros((T, 2)), np.zeros((T, 2)), np.zeros((T, 2), np.int8)
    p = [int(rng.integers(f)) for f in config.free]
    v = [int(rng.integers(-m, m + 1)) for _ in range(2)]
    for t in range(T):
        for axis in (0, 1):
            if p[axis] < 0 or p[axis] > hi[axis]:  # a bounce redraws the whole velocity
                side = -1 if p[axis] < 0 else 1
                p[axis] = 0 if side < 0 else hi[axis]
                v[axis] = int(rng.integers(1, m + 1)) * -side  # away from the wall
                v[1 - axis] = int(rng.integers(-m, m + 1))
                bounce[t, axis] = side
        pos[t], vel[t] = p, v
        p = [p[0] + v[0], p[1] + v[1]]  # SVG records the frame, then steps
    return pos, vel, bounce


TRAJECTORIES = {"standard": standard_trajectory, "stochastic": stochastic_trajectory}


def sample_motion(rng: np.random.Generator, config: MovingMNISTConfig) -> Motion:
    """Independent trajectories for the config's ``num_digits`` digits."""
    paths = [TRAJECTORIES[config.dynamics](rng, config) for _ in range(config.num_digits)]
    pos, vel, bounce = (np.stack(arrays, axis=1) for arrays in zip(*paths))  # (T, K, 2) each
    return Motion(pos.astype(np.float32), vel.astype(np.float32), bounce)


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


def standard_test_set(digits: str = "auto") -> MovingMNIST:
    """The 10,000-clip standard Moving MNIST test set (10 -> 10 frame prediction) from test digits."""
    return MovingMNIST(**TEST_SET, digits=digits)


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------

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
    videos = np.lib.format.open_memmap(out_dir / f"{name}.npy.tmp", mode="w+", dtype=np.uint8,
                                       shape=(T, N, cfg.height, cfg.width))  # (T, N, H, W)
    meta = {"labels": np.zeros((N, K), np.int64), "digit_ids": np.zeros((N, K), np.int64),
            "positions": np.zeros((N, T, K, 2), np.float32),
            "velocities": np.zeros((N, T, K, 2), np.float32), "bounces": np.zeros((N, T, K, 2), np.int8)}
    captions = []
    start = time.perf_counter()
    for i in tqdm(range(N), desc=f"export {name}", unit="clip", disable=not progress):
        c = dataset.clip(i)
        videos[:, i] = c.video
        meta["labels"][i], meta["digit_ids"][i] = c.labels, c.digit_ids
        meta["positions"][i], meta["velocities"][i] = c.motion.positions, c.motion.velocities
        meta["bounces"][i] = c.motion.bounces
        captions.append({"caption": c.caption, "description": c.description})
    seconds = time.perf_counter() - start
    videos.flush()
    del videos
    # Write everything under temporary names, then rename: an interrupted export leaves no
    # half-written file under the final names.
    (out_dir / f"{name}.npy.tmp").replace(out_dir / f"{name}.npy")
    np.savez_compressed(out_dir / f"{name}_meta.tmp.npz", **meta)
    (out_dir / f"{name}_meta.tmp.npz").replace(out_dir / f"{name}_meta.npz")
    info = {"split": dataset.split, "seed": dataset.seed, "num_clips": N, "digits": dataset.digits.source,
            "config": asdict(cfg), "layout": "(T, N, H, W) uint8"}
    tmp = out_dir / f"{name}_captions.json.tmp"
    tmp.write_text(json.dumps({**info, "captions": captions}, indent=1))
    tmp.replace(out_dir / f"{name}_captions.json")
    if preview:
        clips = [dataset.clip(i).video for i in range(min(preview, N))]
        save_gif(clips, out_dir / f"{name}_preview.gif", ncols=min(4, len(clips)))
    return {**info, "out_dir": str(out_dir), "seconds": seconds, "clips_per_second": N / seconds}

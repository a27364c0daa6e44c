"""How Moving MNIST digits move: the clip settings, the two dynamics, and each digit's trajectory.

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
size.

The metadata of a clip's motion, in fixed-shape arrays: ``positions`` (T, K, 2) top-left corners (y, x)
in pixels, ``velocities`` (T, K, 2) in px/frame with p_{t+1} = clamp(p_t + v_t), and ``bounces`` (T, K, 2)
with -1 where frame t hit the top (y) or left (x) wall, +1 the bottom or right wall, 0 otherwise.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np

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
        fit = (self.height * self.width) // self.digit_size**2
        if self.num_digits > fit:
            raise ValueError(f"{self.num_digits} digits of {self.digit_size} px do not fit on a {self.height}x"
                             f"{self.width} canvas: at most {fit} (the canvas area over a digit's)")

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

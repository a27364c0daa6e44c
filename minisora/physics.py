"""The physics probe: track the digits through a clip and measure how they move.

Moving MNIST's physics (``data.py``): a digit moves in a straight line at 3.6 px/frame and bounces
off a wall by flipping one velocity component. With c_t a digit's tracked centre and
d_t = c_{t+1} - c_t its steps, a clip obeys that physics when

    speed      the mean step length |d_t| away from the walls is 3.6 px/frame  (speed error = |mean - 3.6|)
    direction  consecutive steps away from the walls keep their direction: cos(d_t, d_{t+1}) = 1
    jitter     ... and their length: | |d_t| - |d_{t+1}| | = 0 (real clips: 0.6-0.7 px, from whole-pixel positions).
               The mean speed cannot see a digit that alternates short and long steps (a "stutter"), this can
    bounces    a velocity component reverses only where the digit touches that wall (steps under 1 px,
               such as a pause against the wall, are skipped when looking for reversals)

Steps that start or end with the digit touching a wall are left out of speed and direction: there
the renderer clamps the position, so the step is shorter and turns (that is the bounce itself).

Trackers. **One digit**: the intensity centroid, c_t = sum_p p I_t(p) / sum_p I_t(p); MNIST digits are
centred by their centre of mass, so this is the digit box's centre, exactly up to the whole-pixel
positions the renderer draws at. **Several digits**: each frame's digits are found by
``geometry.locate_digits`` (the 28x28 window with most ink, re-centred on its ink, blanked, repeat);
a digit's centre is the ink centroid of its window; frame t's detections are matched to the tracks
by the assignment closest to the constant-velocity predictions c_{t-1} + (c_{t-1} - c_{t-2}). Where
two digits overlap so much that one window holds both, both tracks sit on it for those frames and
their steps there would be wrong, so steps and reversals are only counted while the digits' boxes
do not overlap. The two-digit probe is still coarser, which is why the bars use one digit.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from .data import MovingMNISTConfig
from .geometry import DIGIT, locate_digits, separated

SPEED = MovingMNISTConfig().step  # 3.6 px/frame
MIN_STEP = 1.0  # px: a step shorter than this has no direction to keep or reverse
WALL_TOLERANCE = 4.0  # px between a digit's box and the wall that still counts as touching it


def centroid(frame: np.ndarray) -> np.ndarray:
    """(y, x) of a frame's ink, sum_p p I(p) / sum_p I(p); the canvas centre if the frame is black."""
    frame = np.asarray(frame, dtype=np.float64)
    mass = frame.sum()
    if mass <= 0:
        return (np.array(frame.shape, dtype=np.float64) - 1) / 2
    ys, xs = np.arange(frame.shape[0]), np.arange(frame.shape[1])
    return np.array([frame.sum(1) @ ys, frame.sum(0) @ xs]) / mass


def detect(frame: np.ndarray, num_digits: int, corners: np.ndarray | None = None) -> np.ndarray:
    """Centres (K, 2) of the ``num_digits`` digits found in a frame (one digit: the frame's centroid), in their
    28x28 windows (top-left ``corners`` (K, 2), if already located)."""
    if num_digits == 1:
        return centroid(frame)[None]
    corners = locate_digits(frame, num_digits) if corners is None else corners  # (K, 2)
    return np.stack([(y, x) + centroid(frame[y:y + DIGIT, x:x + DIGIT]) for y, x in corners])


def track(video, num_digits: int = 1, corners: np.ndarray | None = None) -> np.ndarray:
    """Centres (T, K, 2) in px, (y, x), of the digits of a video (T, H, W), in a consistent order over time
    (``corners`` (T, K, 2): the digit windows, if already located, e.g. by ``evaluator.read_clip``)."""
    video = np.asarray(video, dtype=np.float32)
    if video.ndim != 3:
        raise ValueError(f"expected a video of shape (T, H, W), got {video.shape}")
    if num_digits < 1:
        raise ValueError(f"num_digits must be at least 1, got {num_digits}")
    windows = [None] * len(video) if corners is None else corners
    tracks = [detect(video[0], num_digits, windows[0])]
    for frame, window in zip(video[1:], windows[1:]):
        found = detect(frame, num_digits, window)
        previous = tracks[-1]
        velocity = previous - tracks[-2] if len(tracks) > 1 else 0.0
        predicted = previous + velocity  # constant velocity
        best = min(itertools.permutations(range(num_digits)),
                   key=lambda order: np.linalg.norm(found[list(order)] - predicted, axis=1).sum())
        tracks.append(found[list(best)])
    return np.stack(tracks)


@dataclass
class ClipPhysics:
    """What the probe measures on one clip."""

    speed: float  # mean step length away from the walls, px/frame
    persistence: float  # mean cos(d_t, d_{t+1}) away from the walls (a step under 1 px counts 0); nan if none
    jitter: float  # mean | |d_t| - |d_{t+1}| | over the same pairs of steps, px; nan if none
    reversals: int  # velocity components that changed sign
    reversals_at_wall: int  # ... with the digit touching that wall

    @property
    def speed_error(self) -> float:
        return abs(self.speed - SPEED)


def wall_gaps(centres: np.ndarray, height: int, width: int, digit: int = DIGIT) -> tuple[np.ndarray, np.ndarray]:
    """How far a digit's box (centred at ``centres`` (..., 2), (y, x)) is from the top/left and from the
    bottom/right walls, px: the box [c - 13.5, c + 13.5] touches a wall when its gap is 0."""
    low = (digit - 1) / 2
    high = np.array([height, width], dtype=np.float64) - 1 - low
    return centres - low, high - centres


def component_reversals(d: np.ndarray, counted: np.ndarray | bool = True):
    """Where one digit's velocity components reverse: for its steps d (T-1, 2), each (axis j, i, i_next) where
    consecutive steps that moved (|d_j| >= MIN_STEP, and ``counted`` (T-1,)) have opposite signs: the component
    reversed in frames i+1 .. i_next (a pause at a wall between them is skipped)."""
    for j in range(2):
        moves = np.flatnonzero((np.abs(d[:, j]) >= MIN_STEP) & counted)
        for i, i_next in zip(moves[:-1], moves[1:]):
            if d[i, j] * d[i_next, j] < 0:
                yield j, i, i_next


def probe_track(centres: np.ndarray, height: int, width: int, digit: int = DIGIT) -> ClipPhysics:
    """The physics of one track (T, K, 2) on a height x width canvas."""
    if centres.ndim != 3 or centres.shape[-1] != 2 or len(centres) < 3:
        raise ValueError(f"expected centres (T >= 3, K, 2), got {centres.shape}")
    d = centres[1:] - centres[:-1]  # (T-1, K, 2) steps d_t
    length = np.linalg.norm(d, axis=-1)  # (T-1, K)
    to_low, to_high = wall_gaps(centres, height, width, digit)
    touching = (to_low <= WALL_TOLERANCE) | (to_high <= WALL_TOLERANCE)  # (T, K, 2)
    apart = separated(centres, digit)  # (T, K): boxes do not overlap
    free = ~touching.any(-1) & apart  # (T, K): frames away from every wall and every other digit
    free_step = free[1:] & free[:-1]  # (T-1, K): steps the renderer did not clamp
    speed = float(length[free_step].mean()) if free_step.any() else float(length.mean())
    reversals = at_wall = 0
    for k in range(d.shape[1]):  # each digit, its steps while apart from the others
        for j, i, i_next in component_reversals(d[:, k], apart[1:, k] & apart[:-1, k]):
            reversals += 1
            at_wall += touching[i + 1:i_next + 1, k, j].any()
    a, b = d[:-1], d[1:]  # consecutive steps (T-2, K, 2); they meet at frame t+1
    pairs = free_step[:-1] & free_step[1:]  # (T-2, K): pairs of steps between bounces
    moving = (length[:-1] >= MIN_STEP) & (length[1:] >= MIN_STEP)
    cos = np.where(moving, (a * b).sum(-1) / np.maximum(length[:-1] * length[1:], 1e-9), 0.0)  # (T-2, K)
    persistence = float(cos[pairs].mean()) if pairs.any() else float("nan")  # nan: never between bounces and apart
    jitter = float(np.abs(length[:-1] - length[1:])[pairs].mean()) if pairs.any() else float("nan")
    return ClipPhysics(speed=speed, persistence=persistence, jitter=jitter, reversals=reversals,
                       reversals_at_wall=int(at_wall))


def probe(videos, num_digits: int = 1, corners: list[np.ndarray] | None = None) -> list[ClipPhysics]:
    """The physics of each clip of ``videos`` (N, T, H, W) in [0, 1] (``corners``: each clip's digit windows
    (T, K, 2), if already located)."""
    videos = np.asarray(videos, dtype=np.float32)
    if videos.ndim != 4:
        raise ValueError(f"expected videos of shape (N, T, H, W), got {videos.shape}")
    corners = [None] * len(videos) if corners is None else corners
    return [probe_track(track(v, num_digits, c), *v.shape[-2:]) for v, c in zip(videos, corners)]


def mean_of_measured(values: list[float]) -> float:
    """The mean over the clips where a figure could be measured (not nan); nan if none."""
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def summarize(clips: list[ClipPhysics]) -> dict:
    """Set-level figures: median speed and speed error, mean persistence and jitter, share of reversals at a wall."""
    reversals = sum(c.reversals for c in clips)
    return {
        "median_speed_px": float(np.median([c.speed for c in clips])),
        "median_speed_error_px": float(np.median([c.speed_error for c in clips])),
        "direction_persistence": mean_of_measured([c.persistence for c in clips]),
        "speed_jitter_px": mean_of_measured([c.jitter for c in clips]),
        "bounces_at_walls": sum(c.reversals_at_wall for c in clips) / reversals if reversals else float("nan"),
        "reversals_per_clip": reversals / len(clips),
    }

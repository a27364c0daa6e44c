"""Captions for Moving MNIST clips, written from their metadata, and prompt expansion.

Sora trains on *descriptive* captions written for every clip (recaptioning) and, at sampling
time, expands a user's short prompt into that style. Here both are exact, because the metadata
says everything about a clip:

* short: ``"3 and 7"``
* descriptive: ``"a 3 starts at the top left and moves down and right, bouncing off the bottom
  wall. a 7 starts in the middle and moves left without bouncing."``

Where a digit starts is the third of the canvas (vertically and horizontally) that holds its
centre; where it moves is its first velocity rounded to one of eight directions; the walls are
listed in the order they are hit (``the bottom right corner`` when two are hit at once).
"""

from __future__ import annotations

import math
import re
import numpy as np

from .motion import Motion, MovingMNISTConfig, get_config, sample_motion

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# Where a digit starts, by (row third, column third) of its centre.
REGIONS = (("at the top left", "at the top", "at the top right"),
           ("on the left", "in the middle", "on the right"),
           ("at the bottom left", "at the bottom", "at the bottom right"))
# Eight headings, counter-clockwise from "right", in screen coordinates (y grows downwards).
HEADINGS = ("right", "up and right", "up", "up and left", "left", "down and left", "down", "down and right")
WALLS = {(0, -1): "top", (0, 1): "bottom", (1, -1): "left", (1, 1): "right"}


def join_words(words: list[str]) -> str:
    """["a"] -> "a"; ["a", "b"] -> "a and b"; ["a", "b", "c"] -> "a, b and c"."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def article(label: int) -> str:
    """ "an 8", "a 3": the article is chosen by how the number is said."""
    return "an" if label == 8 else "a"


def short_caption(labels) -> str:
    """The digits of a clip, in order: "3 and 7"."""
    return join_words([str(int(label)) for label in labels])


def region(center_y: float, center_x: float, height: int, width: int) -> str:
    """Which third of the canvas, vertically and horizontally, holds a point."""
    row = min(int(3 * center_y / height), 2)
    col = min(int(3 * center_x / width), 2)
    return REGIONS[row][col]


def heading(vy: float, vx: float) -> str | None:
    """A velocity rounded to the nearest of eight directions; None when it is zero."""
    if vy == 0 and vx == 0:
        return None
    angle = math.atan2(-vy, vx)  # counter-clockwise from +x, with "up" positive
    return HEADINGS[round(angle / (math.pi / 4)) % 8]


def wall_hits(bounces: np.ndarray) -> list[str]:
    """The walls one digit hits, in time order, from its (T, 2) bounce flags.

    A bounce at frame 0 is left out: the digit is first seen already moving away from that wall.
    """
    hits = []
    for flags in bounces[1:]:
        walls = [WALLS[axis, int(side)] for axis, side in enumerate(flags) if side]
        if len(walls) == 2:
            hits.append(f"the {walls[0]} {walls[1]} corner")
        elif walls:
            hits.append(f"the {walls[0]} wall")
    return hits


def speed_word(vy: float, vx: float, config: MovingMNISTConfig) -> str:
    """Stochastic clips have varied speeds: "slowly " / "" / "quickly " (standard ones: always "")."""
    if config.dynamics == "standard":
        return ""
    speed = math.hypot(vy, vx) / config.max_velocity  # in [0, sqrt 2]
    return "slowly " if speed < 0.6 else "quickly " if speed > 1.1 else ""


def describe_digit(label: int, positions: np.ndarray, velocities: np.ndarray, bounces: np.ndarray,
                   config: MovingMNISTConfig) -> str:
    """One sentence for one digit, from its (T, 2) positions, velocities and bounce flags."""
    half = config.digit_size / 2
    where = region(positions[0, 0] + half, positions[0, 1] + half, config.height, config.width)
    vy, vx = velocities[0]
    direction = heading(vy, vx)
    if direction is None:
        sentence = f"{article(label)} {label} starts {where} and stays still"
    else:
        sentence = f"{article(label)} {label} starts {where} and moves {speed_word(vy, vx, config)}{direction}"
    hits = wall_hits(bounces)
    if hits:
        if len(hits) > 1:
            hits[-1] = "then " + hits[-1]  # "the bottom wall and then the right wall"
        sentence += ", bouncing off " + join_words(hits)
    elif direction is not None:
        sentence += " without bouncing"
    return sentence + "."


def describe(labels, motion: Motion, config: MovingMNISTConfig) -> str:
    """The descriptive caption of a clip: one sentence per digit."""
    return " ".join(describe_digit(int(label), motion.positions[:, k], motion.velocities[:, k],
                                   motion.bounces[:, k], config) for k, label in enumerate(labels))


def parse_prompt(prompt: str) -> list[int]:
    """The digits a short prompt asks for: "3 and 7", "3, 7 and 1", "three and seven" -> [3, 7] ..."""
    words = [w for w in re.split(r"[\s,]+", prompt.strip().lower()) if w]
    labels, unknown = [], []
    for w in words:
        if w in ("and", "a", "an", "digit", "digits"):  # filler words
            continue
        if w.isdigit() and len(w) == 1:
            labels.append(int(w))
        elif w in NUMBER_WORDS:
            labels.append(NUMBER_WORDS.index(w))
        else:
            unknown.append(w)
    if unknown or not labels:
        raise ValueError(
            f"a short prompt names digits, like '3 and 7' or 'three and seven'; could not read "
            f"{unknown if unknown else 'any digit'} in {prompt!r}")
    return labels


def expand_prompt(prompt: str, seed: int = 0, config: MovingMNISTConfig | str = "standard") -> str:
    """Prompt expansion: turn a short prompt ("3 and 7") into a descriptive caption.

    The motion is sampled from the data's own distribution (seeded, so the same prompt and seed
    always expand the same way), then described exactly as training clips are.
    """
    labels = parse_prompt(prompt)
    config = get_config(config, num_digits=len(labels))
    motion = sample_motion(np.random.default_rng([seed, len(labels), *labels]), config)
    return describe(labels, motion, config)

"""Does a clip do what its descriptive prompt says? (recaptioning's claim, measured)

The prompts are the descriptive captions of real one-digit test clips ("a 3 starts at the top left and
moves down and right, bouncing off the bottom wall."). From the clip's tracked centre c_t (physics.py):

    start      c_0 lies in the third of the canvas the prompt names ("at the top left")
    direction  the first step, c_1 - c_0, within 45 degrees of the heading the prompt names (a later step may
               already have bounced)
    bounce     the first wall the prompt names is hit: the velocity component towards it reverses with the
               digit touching it; a prompt that says "without bouncing": no component reverses at all

The same checks on the real clips say how often the checks themselves pass a clip that surely follows; held to
other clips' captions, they give each check's chance level (true motion that ignores the prompt). The model's own
clips held to other clips' captions are the control that matters for the model: its motion statistics differ from
the real ones (it may bounce less, start elsewhere), and a model that ignores the motion words scores the same
against its own prompt as against another's.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .captions import HEADINGS, heading, region
from .data import MovingMNIST
from .evaluator import clip_scores
from .geometry import DIGIT
from .physics import WALL_TOLERANCE, component_reversals, track, wall_gaps
from .sample import generate

MAX_TURN = 45.0  # degrees between the first steps and the named heading


def described_clips(num_clips: int, seed: int = 0):
    """Real one-digit test clips: videos (N, T, H, W) in [0, 1], labels [[d], ...], descriptive prompts, motions."""
    data = MovingMNIST("test", num_clips, seed=seed, num_digits=1)
    clips = [data.clip(i) for i in range(num_clips)]
    videos = torch.tensor(np.stack([c.video for c in clips]), dtype=torch.float32) / 255
    return videos, [c.labels.tolist() for c in clips], [c.description for c in clips], [c.motion for c in clips]


def reversals_at(centres: np.ndarray, height: int, width: int) -> list[tuple[int, int, bool]]:
    """Each reversal of a velocity component of one track (T, 2): (axis, side of the wall it turned from: the
    sign of the step before, touching that wall?)."""
    d = np.diff(centres, axis=0)  # (T-1, 2)
    to_low, to_high = wall_gaps(centres, height, width)  # (T, 2) each
    found = []
    for j, i, i_next in component_reversals(d):
        side = int(np.sign(d[i, j]))  # moving towards +1 (bottom/right) or -1 (top/left) before
        gap = (to_high if side > 0 else to_low)[i + 1:i_next + 1, j]
        found.append((j, side, bool((gap <= WALL_TOLERANCE).any())))
    return found


def follows(centres: np.ndarray, motion, height: int, width: int) -> dict:
    """The three checks for one clip's track (T, 2) against the motion its prompt describes (digit 0)."""
    half = DIGIT / 2
    start = region(*(motion.positions[0, 0] + half), height, width)
    named = heading(*motion.velocities[0, 0])
    step = centres[1] - centres[0]
    angle = math.degrees(math.atan2(-step[0], step[1]))  # as captions.heading: counter-clockwise, up positive
    turn = abs((angle - 45.0 * HEADINGS.index(named) + 180.0) % 360.0 - 180.0) if named else 0.0
    reversals = reversals_at(centres, height, width)
    # the first wall the prompt names (as in captions.wall_hits, a bounce at frame 0 is not named)
    hit = next((flags for flags in motion.bounces[1:, 0] if flags.any()), None)
    if hit is not None:  # a corner names two walls: either counts
        bounce = any((axis, int(side), True) in reversals for axis, side in enumerate(hit) if side)
    else:
        bounce = not reversals
    return {"start": region(*centres[0], height, width) == start, "direction": turn <= MAX_TURN, "bounce": bounce}


def following_scores(videos, motions, shifts=(0,)) -> dict:
    """Shares of clips passing each check, and all three. With ``shifts`` other than 0, clip i is held to the motion
    of clip i + shift: the chance level of each check for clips with true physics whose motion ignores the prompt."""
    videos = np.asarray(videos, dtype=np.float32)
    tracks = [track(v)[:, 0] for v in videos]
    checks = [follows(c, motions[(i + s) % len(motions)], *videos.shape[-2:])
              for s in shifts for i, c in enumerate(tracks)]
    shares = {k: float(np.mean([c[k] for c in checks])) for k in ("start", "direction", "bounce")}
    return {**shares, "all_three": float(np.mean([all(c.values()) for c in checks]))}


def chance_scores(videos, motions, pairings: int = 9) -> dict:
    """``following_scores`` of real clips against the motions of ``pairings`` other clips each (fewer if there are
    not that many others): what following the prompt's motion *by chance* scores."""
    if len(motions) < 2:
        raise ValueError(f"a chance level needs at least 2 clips, got {len(motions)}")
    return following_scores(videos, motions, shifts=range(1, min(pairings, len(motions) - 1) + 1))


def descriptive_table(model, codec, objective, evaluator, num_clips: int, guidance: float, steps: int, batch: int,
                      seed: int, progress: bool) -> dict:
    """Descriptive prompts of real clips: the model's clips (digit read and the three checks) beside the real, and
    each held to other clips' prompts (``generated_chance``, ``chance``)."""
    real, labels, prompts, motions = described_clips(num_clips, seed)
    out = torch.cat([generate(model, codec, prompts[i:i + batch], objective, guidance=guidance, steps=steps,
                              seed=seed + i)[:, 0].cpu() for i in range(0, num_clips, batch)])
    return {"clips": num_clips, "example_prompt": prompts[0],
            "generated": {**clip_scores(evaluator, out, labels)[0], **following_scores(out, motions)},
            "real": {**clip_scores(evaluator, real, labels)[0], **following_scores(real, motions)},
            **({"generated_chance": chance_scores(out, motions), "chance": chance_scores(real, motions)}
               if num_clips > 1 else {})}

"""What the capabilities do, measured on real clips of test digits (``python -m minisora eval --capabilities N``).

Each figure is measured the same way on real clips, which say what "right" is:

    image-to-video   identity, speed error and text alignment of the clip made from a real frame 0;
                     the first generated frame's mean pixel distance to the given one (real: frame 0 -> 1)
    extension        given the first (forward) or last (backward) 10 frames of a real clip: the seam step's
                     speed error and its direction cosine with the steps beside it, the joined clip's probe, and
                     the ink mass of the generated frames (real: the same frames of the real clip), and 90%
                     intervals of the seam's excess speed error over the real clips' and of how much less straight
                     it turns (``excess_interval``; both hold 0 for a seam like a real step)
    loop             the step from the last frame back to frame 0: speed error and pixel distance, against
                     the loop's other steps, and a 90% interval of the seam's excess speed error over theirs
    connect          A's last 4 frames, 12 new, B's first 4 (A and B show different digits, the null prompt):
                     the probe over the whole, and the frame where the reading switches from A's digit to B's
    edit (SDEdit)    a real clip of digit d noised to time s and denoised with another digit's prompt: frames
                     read as the new digit, and the mean distance between the two clips' digit tracks, per s
    long video       200 frames in windows of 20 (10 given, 10 new) with and without noisy context: per window
                     of 20 frames, frames read as the prompt, identity, speed error and ink mass against real
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from .capabilities import connect, extend, image_to_video, long_video, loop
from .evaluator import clip_scores, digit_scores, read_clips, real_clips
from .physics import SPEED, summarize, probe, track
from .sample import generate

GIVEN = 10  # frames given to extension
STRENGTHS = (0.4, 0.6, 0.8, 0.85, 0.9, 1.0)  # SDEdit noise levels (the trade-off turns between 0.8 and 1)
LONG = dict(frames=200, window=20, given=10)
CONTEXT_NOISE = 0.1  # the long-video mitigation: given frames shown at time 0.1
PARTS = ("image_to_video", "extension", "loop", "connect", "edit", "long_video")


def steps(videos) -> np.ndarray:
    """The one-digit tracks' steps (N, T - 1, 2) in px."""
    return np.diff(np.stack([track(v)[:, 0] for v in np.asarray(videos)]), axis=1)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-9)


def seam_errors(videos, at: int) -> tuple[np.ndarray, np.ndarray]:
    """Per clip (N,): the speed error of the step from frame ``at - 1`` to ``at``, and its mean direction cosine with
    the steps before and after it."""
    d = steps(videos)
    error = np.abs(np.linalg.norm(d[:, at - 1], axis=-1) - SPEED)
    turn = (cosine(d[:, at - 2], d[:, at - 1]) + cosine(d[:, at - 1], d[:, at])) / 2
    return error, turn


def seam(error: np.ndarray, turn: np.ndarray) -> dict:
    """The seam step's speed error (median over clips) and direction cosine (mean over clips), from
    :func:`seam_errors`."""
    return {"seam_speed_error_px": float(np.median(error)), "seam_direction_cos": float(np.mean(turn))}


def excess_interval(a: np.ndarray, b: np.ndarray, statistic=np.median, resamples: int = 2000) -> list[float]:
    """The 90% bootstrap interval of statistic(a) - statistic(b), where a (N,) and b (N, ...) are per-clip figures
    of the same N clips, resampled together (a paired bootstrap). It holds 0 when a and b are alike within what N
    clips can tell; a median seam error moves by about 0.1 px between seeds of 20 clips."""
    picks = np.random.default_rng(0).integers(0, len(a), (resamples, len(a)))  # (R, N): clips drawn with replacement
    excess = statistic(a[picks], axis=1) - statistic(b[picks].reshape(resamples, -1), axis=1)  # (R,)
    return [float(q) for q in np.quantile(excess, (0.05, 0.95))]


def ink(videos: torch.Tensor) -> float:
    """Ink mass: the sum of a frame's pixels, the mean over frames and clips (a real digit: about 100)."""
    return float(videos.sum((-2, -1)).mean())


def pixel_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean absolute difference per pixel, in [0, 1]."""
    return float((a - b).abs().mean())


def scored(evaluator, videos, labels) -> dict:
    return clip_scores(evaluator, videos, labels)[0]


def image_to_video_scores(model, codec, evaluator, real, labels, prompts, **kw) -> dict:
    group = model.config.tubelet_frames
    out = image_to_video(model, codec, real[:, 0], prompts, real.shape[1], **kw)[:, 0].cpu()  # (N, T, H, W)
    shown = out[:, group - 1:]  # the image once, then what the model made
    return {"generated": {**scored(evaluator, shown, labels), "first_step_distance": pixel_distance(out[:, group],
                                                                                                  real[:, 0])},
            "real": {**scored(evaluator, real[:, :shown.shape[1]], labels),
                     "first_step_distance": pixel_distance(real[:, 1], real[:, 0])}}


def extension_scores(model, codec, evaluator, real, labels, prompts, **kw) -> dict:
    frames, result = real.shape[1], {}
    real_scores = scored(evaluator, real, labels)  # the real clips read and tracked once for both directions
    real_seams = {at: seam_errors(real, at) for at in {GIVEN, frames - GIVEN}}  # the same clips: paired
    for direction in ("forward", "backward"):
        given = real[:, None, :GIVEN] if direction == "forward" else real[:, None, -GIVEN:]
        out = extend(model, codec, given, prompts, frames, direction, **kw)[:, 0].cpu()
        at = GIVEN if direction == "forward" else frames - GIVEN  # the first step into or out of the given frames
        new = slice(GIVEN, None) if direction == "forward" else slice(None, frames - GIVEN)  # the generated frames
        (error, turn), (real_error, real_turn) = seam_errors(out, at), real_seams[at]
        result[direction] = {"generated": {**scored(evaluator, out, labels), **seam(error, turn),
                                           "ink": ink(out[:, new]),
                                           "seam_excess_ci90_px": excess_interval(error, real_error),
                                           "seam_cos_shortfall_ci90": excess_interval(real_turn, turn, np.mean)},
                             "real": {**real_scores, **seam(real_error, real_turn),
                                      "ink": ink(real[:, new])}}
    return result


def loop_scores(model, codec, evaluator, prompts, labels, seed, **kw) -> dict:
    clips = generate(model, codec, prompts, seed=seed, **kw)
    looped = loop(model, codec, clips, prompts, gap=10, given=4, seed=seed + 1, **kw)[:, 0].cpu()  # (N, T, H, W)
    twice = torch.cat([looped, looped[:, :2]], dim=1)  # the loop played on into its start
    at = looped.shape[1]  # the step from the last frame to frame 0
    d = np.linalg.norm(steps(twice), axis=-1)  # (N, T + 1)
    error = np.abs(d - SPEED)
    jumps = (twice[:, 1:] - twice[:, :-1]).abs().mean((-2, -1))  # (N, T + 1) pixel distance per step
    others = np.delete(error, at - 1, axis=1)  # (N, T)
    return {"seam_speed_error_px": float(np.median(error[:, at - 1])),
            "other_steps_speed_error_px": float(np.median(others)),
            "seam_excess_ci90_px": excess_interval(error[:, at - 1], others),
            "seam_pixel_distance": float(jumps[:, at - 1].mean()),
            "other_steps_pixel_distance": float(np.delete(jumps.numpy(), at - 1, axis=1).mean()),
            **scored(evaluator, looped, labels)}


def connect_scores(model, codec, evaluator, seed, num_clips, **kw) -> dict:
    a, a_labels = real_clips(num_clips, 1, seed + 1)
    b, b_labels = real_clips(num_clips, 1, seed + 2)
    keep = [i for i in range(num_clips) if a_labels[i] != b_labels[i]]
    a, b = a[keep], b[keep]
    out = connect(model, codec, a[:, None, -4:], b[:, None, :4], [None] * len(keep), gap=12,
                  seed=seed, **{**kw, "guidance": 1.0})[:, 0].cpu()  # (N, 20, H, W)
    switches, ordered = [], []
    for read, ka in zip(read_clips(evaluator, out, [[0]] * len(keep)), keep):
        frames = read.labels[:, 0]  # (T,) the digit read in each frame
        first_b = np.flatnonzero(frames == b_labels[ka][0])
        last_a = np.flatnonzero(frames == a_labels[ka][0])
        ordered.append(bool(len(first_b) and len(last_a) and last_a.max() < first_b.min()))
        switches.append(int(first_b.min()) if len(first_b) else -1)
    physics = summarize(probe(out))
    return {"clips": len(keep), **physics, "a_then_b": float(np.mean(ordered)),
            "median_switch_frame": float(np.median([s for s in switches if s >= 0])) if any(
                s >= 0 for s in switches) else float("nan")}


def edit_scores(model, codec, evaluator, real, labels, **kw) -> dict:
    new = [[(d[0] + 1 + i % 9) % 10] for i, d in enumerate(labels)]  # another digit for each clip
    tracks = np.stack([track(v)[:, 0] for v in real.numpy()])  # (N, T, 2)
    result = {}
    for s in STRENGTHS:
        out = generate(model, codec, [str(d[0]) for d in new], init=real[:, None], strength=s, **kw)[:, 0].cpu()
        moved = np.linalg.norm(np.stack([track(v)[:, 0] for v in out.numpy()]) - tracks, axis=-1)  # (N, T)
        reads = read_clips(evaluator, out, new)
        result[str(s)] = {"frames_read_as_new_digit": digit_scores(reads, new)["frame_agreement"],
                          "frames_read_as_old_digit": digit_scores(reads, labels)["frame_agreement"],
                          "track_distance_px": float(np.median(moved.mean(1)))}
    return result


def windows(evaluator, videos, labels, window: int) -> list[dict]:
    """Per window of ``window`` frames: digit and physics scores and ink mass (mean per frame)."""
    out = []
    for start in range(0, videos.shape[1] - window + 1, window):
        part = videos[:, start:start + window]
        out.append({"start": start, **scored(evaluator, part, labels), "ink": ink(part)})
    return out


def long_video_scores(model, codec, evaluator, prompts, labels, seed, num_clips, **kw) -> dict:
    real, real_labels = real_clips(num_clips, 1, seed + 3, frames=LONG["frames"])
    result = {"real": windows(evaluator, real, real_labels, LONG["window"])}
    for name, noise in (("none", 0.0), (f"context_noise {CONTEXT_NOISE}", CONTEXT_NOISE)):
        out = long_video(model, codec, prompts, **LONG, seed=seed, context_noise=noise, **kw)[:, 0].cpu()
        result[name] = windows(evaluator, out, labels, LONG["window"])
    return result


def capability_table(model, codec, objective, evaluator, num_clips: int, guidance: float, steps: int, batch: int,
                     seed: int, progress: bool, parts: tuple[str, ...] = PARTS, frame_guidance: float = 1.0,
                     guidance_ramp: float = 0.0) -> dict:
    """The capabilities named in ``parts`` (default: all of ``PARTS``) on ``num_clips`` one-digit clips
    (``batch`` is unused: each capability is one batch); ``frame_guidance`` and ``guidance_ramp`` act wherever
    frames are given."""
    real, labels = real_clips(num_clips, 1, seed)
    prompts = [str(d[0]) for d in labels]
    kw = dict(objective=objective, guidance=guidance, steps=steps, seed=seed, frame_guidance=frame_guidance,
              guidance_ramp=guidance_ramp)
    measures = {
        "image_to_video": lambda: image_to_video_scores(model, codec, evaluator, real, labels, prompts, **kw),
        "extension": lambda: extension_scores(model, codec, evaluator, real, labels, prompts, **kw),
        "loop": lambda: loop_scores(model, codec, evaluator, prompts, labels, **kw),
        "connect": lambda: connect_scores(model, codec, evaluator, num_clips=num_clips, **kw),
        "edit": lambda: edit_scores(model, codec, evaluator, real, labels, **kw),
        "long_video": lambda: long_video_scores(model, codec, evaluator, prompts, labels, num_clips=num_clips, **kw),
    }
    chosen = {name: run for name, run in measures.items() if name in parts}
    return {name: run() for name, run in tqdm(chosen.items(), desc="capabilities", disable=not progress)}

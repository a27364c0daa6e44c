"""Evaluating a text-to-video model (``python -m minisora eval``): one table, real clips alongside.

    text       prompts "0".."9" and "a and b"; the evaluator reads each frame's digits (evaluator.py;
               two digits only in frames where they are apart, "readable" clips have some)
               alignment  = share of clips whose most common reading is the prompt's digits
               identity   = mean share of a clip's frames that show its most common reading
    physics    the probe of physics.py on the generated clips: speed error, direction, bounces
    prediction 10 -> 10 on the standard test set (test digits): the first 10 frames are given
               (conditioning frames by masks), the null prompt, the model makes the last 10;
               MSE / MAE per frame summed over 64x64 pixels in [0, 1] (OpenSTL), SSIM, PSNR
    Frechet    distance between evaluator features of generated and real one-digit clips
               (an internal metric: our evaluator, our clips; it measures how the digits look,
               not how they move, which the physics rows measure)

Every figure is also computed on real clips of test digits, so each row says what "right" is.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .checkpoint import ROOT, code_version, device_name, write_manifest
from .data import MovingMNIST, standard_test_set
from .evaluator import DIGIT, crop_digits, load_evaluator, majority, read_clip
from .metrics import frechet_distance, mae_per_frame, mse_per_frame, psnr, ssim
from .physics import probe, summarize
from .sample import VideoCodec, generate, load_dit, objective_of
from .vit import ViT

CONTEXT = 10  # frames given in video prediction (10 -> 10)


def prompts_for(num_clips: int, num_digits: int, seed: int = 0) -> tuple[list[str], list[list[int]]]:
    """Evaluation prompts and their digits: "0".."9" in turn, or random pairs "a and b"."""
    if num_digits == 1:
        labels = [[i % 10] for i in range(num_clips)]
    else:
        rng = np.random.default_rng([seed, num_digits])
        labels = [sorted(rng.choice(10, num_digits).tolist()) for _ in range(num_clips)]
    return [" and ".join(map(str, digits)) for digits in labels], labels


def real_clips(num_clips: int, num_digits: int, seed: int = 0) -> tuple[torch.Tensor, list[list[int]]]:
    """Real clips (N, T, H, W) of test digits and their digits: the reference for every row."""
    data = MovingMNIST("test", num_clips, seed=seed, num_digits=num_digits)
    items = [data[i] for i in range(num_clips)]
    return torch.stack([it["video"][0] for it in items]), [it["labels"].tolist() for it in items]


def digit_scores(evaluator: ViT, videos, labels: list[list[int]]) -> dict:
    """Text alignment (clip level), frame agreement and identity persistence of videos (N, T, H, W).

    Two-digit clips are scored on the frames where their digits are apart (``evaluator.read_clip``);
    ``readable`` is the share of clips that have such frames, and the other figures are over those.
    """
    aligned, frames_right, identity = [], [], []
    for video, wanted in zip(videos, labels):
        readings = read_clip(evaluator, np.asarray(video), len(wanted))
        if not readings:
            continue
        top = majority(readings)
        aligned.append(top == tuple(sorted(wanted)))
        frames_right.append(np.mean([r == tuple(sorted(wanted)) for r in readings]))
        identity.append(np.mean([r == top for r in readings]))
    mean = lambda x: float(np.mean(x)) if x else float("nan")
    return {"readable": len(aligned) / len(labels), "alignment": mean(aligned),
            "frame_agreement": mean(frames_right), "identity": mean(identity)}


def clip_scores(evaluator: ViT, videos, labels: list[list[int]]) -> dict:
    """One column of the table: :func:`digit_scores` and the physics probe's summary."""
    return {**digit_scores(evaluator, videos, labels), **summarize(probe(videos, len(labels[0])))}


@torch.no_grad()
def clip_features(evaluator: ViT, videos, num_digits: int = 1) -> torch.Tensor:
    """One feature vector per clip (N, D): the evaluator's features of its digit crops, averaged over frames."""
    feats = []
    for video in np.asarray(videos):
        crops, _ = crop_digits(video, num_digits)  # (T, K, 28, 28)
        x = torch.from_numpy(np.ascontiguousarray(crops)).float().reshape(-1, 1, DIGIT, DIGIT)
        feats.append(evaluator.features(x).mean(0))
    return torch.stack(feats)


def text_to_video(model, codec, objective, evaluator, num_clips: int, num_digits: int, guidance: float,
                  steps: int, batch: int, seed: int, progress: bool) -> tuple[dict, torch.Tensor]:
    """Generate ``num_clips`` clips for the evaluation prompts; their digit and physics scores, and the clips."""
    prompts, labels = prompts_for(num_clips, num_digits, seed)
    videos = []
    for i in tqdm(range(0, num_clips, batch), desc=f"generate {num_digits}-digit", unit="batch", disable=not progress):
        out = generate(model, codec, prompts[i:i + batch], objective, guidance=guidance, steps=steps, seed=seed + i)
        videos.append(out[:, 0].cpu())  # (b, T, H, W)
    videos = torch.cat(videos)
    return clip_scores(evaluator, videos, labels), videos


def video_prediction(model, codec, objective, num_clips: int, steps: int, batch: int, seed: int,
                     progress: bool) -> dict:
    """10 -> 10 on the first ``num_clips`` clips of the standard test set: the model, and two floors that any
    predictor should beat, copying the last given frame and a black frame."""
    data = standard_test_set()
    scores = {"model": [], "copy_last_frame": [], "blank": []}
    for i in tqdm(range(0, num_clips, batch), desc="predict 10 -> 10", unit="batch", disable=not progress):
        truth = torch.stack([data[j]["video"] for j in range(i, min(i + batch, num_clips))])  # (b, 1, 20, H, W)
        known = torch.arange(truth.shape[2]) < CONTEXT
        out = generate(model, codec, [None] * len(truth), objective, guidance=1.0, steps=steps, seed=seed + i,
                       context=truth, known=known)
        future = truth[:, 0, CONTEXT:]  # (b, 10, H, W)
        floors = (("copy_last_frame", truth[:, 0, CONTEXT - 1:CONTEXT]), ("blank", torch.zeros_like(future[:, :1])))
        for name, pred in (("model", out[:, 0, CONTEXT:].cpu()), *floors):
            pred = pred.expand_as(future)
            scores[name].append([len(future), float(mse_per_frame(pred, future)), float(mae_per_frame(pred, future)),
                                 float(ssim(pred, future)), float(psnr(pred, future))])
    result = {"clips": num_clips}
    for name, rows in scores.items():
        rows = np.array(rows)
        mean = (rows[:, 1:] * rows[:, :1]).sum(0) / rows[:, 0].sum()  # every clip weighs the same
        result[name] = dict(zip(("mse", "mae", "ssim", "psnr"), map(float, mean)))
    return result


def evaluate(ckpt: str | Path, clips: int = 100, prediction_clips: int = 1000, guidance: float = 4.0,
             steps: int = 50, prediction_steps: int = 25, batch: int = 50, seed: int = 0, device: str = "cpu",
             progress: bool = True, shift: float | None = None) -> dict:
    """The whole evaluation of a DiT checkpoint, as a dict (what ``eval`` prints and writes)."""
    if clips < 2 or prediction_clips < 0:
        raise ValueError(f"clips must be at least 2 and prediction_clips at least 0, got {clips}, {prediction_clips}")
    started = time.perf_counter()
    model, train = load_dit(ckpt, device)
    codec, objective, evaluator = VideoCodec(model.config.vae, device), objective_of(train, shift), load_evaluator()
    shown = Path(ckpt).resolve()
    shown = shown.relative_to(ROOT) if shown.is_relative_to(ROOT) else shown  # data/dit_tiny.pt, not /home/...
    result = {"checkpoint": str(shown), "settings": dict(clips=clips, prediction_clips=prediction_clips,
                                                       guidance=guidance, steps=steps,
                                                       prediction_steps=prediction_steps, seed=seed,
                                                       **({"shift": shift} if shift else {}))}
    real_one, one_labels = real_clips(clips, 1, seed)
    real_two, two_labels = real_clips(clips, 2, seed)
    args = dict(guidance=guidance, steps=steps, batch=batch, seed=seed, progress=progress)
    gen_one, one_videos = text_to_video(model, codec, objective, evaluator, clips, 1, **args)
    gen_two, _ = text_to_video(model, codec, objective, evaluator, clips, 2, **args)
    result["one_digit"] = {"generated": gen_one, "real": clip_scores(evaluator, real_one, one_labels)}
    result["two_digits"] = {"generated": gen_two, "real": clip_scores(evaluator, real_two, two_labels)}
    other_real, _ = real_clips(clips, 1, seed + 1)
    real_features = clip_features(evaluator, real_one)
    result["frechet"] = {"generated_vs_real": frechet_distance(clip_features(evaluator, one_videos), real_features),
                         "real_vs_real": frechet_distance(clip_features(evaluator, other_real), real_features)}
    if prediction_clips:
        result["prediction"] = video_prediction(model, codec, objective, prediction_clips, prediction_steps,
                                                batch, seed, progress)
    result.update(code_version=code_version(), device=device_name(device),
                  wall_time_s=round(time.perf_counter() - started, 1))
    return result


ROWS = [("readable", "clips whose digits the evaluator can read apart", "{:.1%}"),
        ("alignment", "text alignment (clip's digits = prompt's)", "{:.1%}"),
        ("frame_agreement", "frames read as the prompt's digits", "{:.1%}"),
        ("identity", "identity persistence (frames = clip's reading)", "{:.1%}"),
        ("median_speed_px", "median speed, px/frame (protocol 3.6)", "{:.2f}"),
        ("median_speed_error_px", "median speed error, px/frame", "{:.2f}"),
        ("direction_persistence", "direction persistence, cos between steps", "{:.3f}"),
        ("bounces_at_walls", "reversals at a wall", "{:.1%}"),
        ("reversals_per_clip", "reversals per clip", "{:.2f}")]


def format_table(result: dict) -> str:
    """The evaluation as a Markdown table (generated next to real) plus the prediction and Frechet rows."""
    fmt = lambda f, x: "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f.format(x)
    n = result["settings"]["clips"]
    lines = ["| metric | 1 digit: model | 1 digit: real | 2 digits: model | 2 digits: real |",
             "|---|---|---|---|---|"]
    for key, name, f in ROWS:
        cells = [fmt(f, result[kind][who].get(key)) for kind in ("one_digit", "two_digits") for who in ("generated", "real")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    fd = result["frechet"]
    lines += ["", f"{n} clips per column; Frechet distance on evaluator features (internal metric): "
                  f"generated vs real {fd['generated_vs_real']:.2f}, real vs real {fd['real_vs_real']:.2f}"]
    if "prediction" in result:
        p = result["prediction"]
        lines += ["", f"Video prediction 10 -> 10, first {p['clips']} clips of the regenerated standard test set:",
                  "| predictor | MSE | MAE | SSIM | PSNR (dB) |", "|---|---|---|---|---|"]
        for name in ("model", "copy_last_frame", "blank"):
            s = p[name]
            lines.append(f"| {name.replace('_', ' ')} | {s['mse']:.2f} | {s['mae']:.2f} | {s['ssim']:.3f} | {s['psnr']:.2f} |")
    return "\n".join(lines)


def write_result(result: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_manifest(result, path)


def record_in_manifest(result: dict, ckpt: str | Path) -> Path:
    """Add the results under "eval" to the manifest beside exported weights (``X.pt`` -> ``X.json``)."""
    path = Path(ckpt).with_suffix(".json")
    if not path.exists():
        raise FileNotFoundError(f"no manifest {path} beside {ckpt}: --manifest is for exported weights")
    manifest = json.loads(path.read_text())
    manifest["eval"] = result
    return write_result(manifest, path)

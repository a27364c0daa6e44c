"""Evaluating a text-to-video model (``python -m minisora eval``): one table, real clips alongside.

    text       prompts "0".."9" and "a and b"; the evaluator reads each frame's digits (evaluator.py;
               two digits only in frames where they are apart, "readable" clips have some)
               alignment  = share of clips whose most common reading is the prompt's digits
               identity   = mean share of a clip's frames that show its most common reading
    physics    the probe of physics.py on the generated clips: speed error, direction, bounces
    prediction 10 -> 10 on the standard test set (test digits): the first 10 frames are given
               (conditioning frames by masks), the null prompt, the model makes the last 10;
               MSE / MAE per frame summed over 64x64 pixels in [0, 1] (OpenSTL), SSIM, PSNR; and whether
               the predicted future still shows the clip's digits (MSE alone rewards a faint blur)
    following  descriptive captions of real clips as prompts: are the start, first direction and first bounce
               they name followed (following.py); ``--expand``: the short prompts expanded first
    permanence two test digits that cross after the 10 given frames: do both come out as themselves, in
               their places (permanence.py)
    Frechet    distance between evaluator features of generated and real one-digit clips
               (an internal metric: our evaluator, our clips; it measures how the digits look,
               not how they move, which the physics rows measure)

Every figure is also computed on real clips of test digits, so each row says what "right" is.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .checkpoint import ROOT, code_version, device_name, write_manifest
from .config import check_device, check_finite, check_positive, option
from .convlstm import MIRRORS, ConvLSTM, draft_clips, draft_of
from .data import CONTEXT, TEST_SET, standard_test_set
from .diffusion import check_guidance_interval, check_guidance_ramp, check_guidance_rescale
from .capability_eval import PARTS, capability_table, ink
from .captions import expand_prompt
from .evaluator import clip_scores, digit_scores, load_evaluator, prompts_for, read_clips, real_clips
from .following import descriptive_table
from .permanence import permanence_table
from .metrics import frechet_distance, mae_per_frame, mse_per_frame, psnr, ssim
from .sample import DIT_PATH, VideoCodec, generate, load_dit, objective_of
from .size_eval import at_sizes, format_sizes



def text_to_video(model, codec, objective, evaluator, num_clips: int, num_digits: int, guidance: float,
                  steps: int, batch: int, seed: int, progress: bool, expand: bool = False) -> tuple[dict, torch.Tensor]:
    """Generate ``num_clips`` clips for the evaluation prompts (``expand``: each expanded into a descriptive
    caption first, as Sora expands users' prompts); their scores and features (``clip_scores``)."""
    prompts, labels = prompts_for(num_clips, num_digits, seed)
    if expand:
        prompts = [expand_prompt(p, seed=seed + i) for i, p in enumerate(prompts)]
    videos = []
    for i in tqdm(range(0, num_clips, batch), desc=f"generate {num_digits}-digit", unit="batch", disable=not progress):
        out = generate(model, codec, prompts[i:i + batch], objective, guidance=guidance, steps=steps, seed=seed + i)
        videos.append(out[:, 0].cpu())  # (b, T, H, W)
    return clip_scores(evaluator, torch.cat(videos), labels)


def standard_table(model, codec, objective, evaluator, clips: int, args: dict, expand: bool = False) -> dict:
    """One- and two-digit text-to-video at the training size, beside real clips, and the Frechet distance."""
    seed = args["seed"]
    (gen_one, gen_features), (gen_two, _) = (text_to_video(model, codec, objective, evaluator, clips, k, **args,
                                                           expand=expand) for k in (1, 2))
    (real_one, real_features), (real_two, _), (_, other_features) = (
        clip_scores(evaluator, *real_clips(clips, k, s)) for k, s in ((1, seed), (2, seed), (1, seed + 1)))
    return {"one_digit": {"generated": gen_one, "real": real_one}, "two_digits": {"generated": gen_two, "real": real_two},
            "frechet": {"generated_vs_real": frechet_distance(gen_features, real_features),
                        "real_vs_real": frechet_distance(other_features, real_features)}}


def prediction_metrics(pred: torch.Tensor, future: torch.Tensor) -> dict:
    """MSE and MAE per frame (OpenSTL's), SSIM and PSNR of predicted futures against the true ones (..., H, W):
    each a mean over frames, so a mean over batches weighted by their clips is the same figure."""
    return {name: float(metric(pred, future))
            for name, metric in (("mse", mse_per_frame), ("mae", mae_per_frame), ("ssim", ssim), ("psnr", psnr))}


def future_digits(evaluator, predicted: torch.Tensor, true: torch.Tensor, labels: list[list[int]]) -> dict:
    """Does a predicted future (N, 10, H, W) still show its clip's digits? ``evaluator.digit_scores`` of the
    predicted and the true futures (the clip's digits as the prompt), and the predicted future's ink against the
    truth's: a faint or blurred future can score a low MSE while showing no digit."""
    return {"model": digit_scores(read_clips(evaluator, predicted, labels), labels),
            "true_future": digit_scores(read_clips(evaluator, true, labels), labels),
            "ink_vs_real": ink(predicted) / ink(true)}


def video_prediction(model, codec, objective, num_clips: int, steps: int, batch: int, seed: int,
                     progress: bool, samples: int = 1, frame_guidance: float = 1.0, evaluator=None,
                     draft: ConvLSTM | None = None, draft_noise: float = 1.0, mirrors: bool = False) -> dict:
    """10 -> 10 on the first ``num_clips`` clips of the standard test set: the model (one sample), two floors that
    any predictor should beat (copying the last given frame, a black frame) and, with ``samples`` K > 1, the mean
    of K samples: an estimate of the expected future, the prediction that MSE rewards (a sample is a guess at one
    future; regression models like OpenSTL's predict the mean directly). ``mse_per_frame`` follows the model's
    error through the 10 future frames; ``frame_guidance`` w_f > 1 guides towards the 10 given frames. With an
    ``evaluator``, ``future_digits`` reads the sample's future and the true one (:func:`future_digits`). A model
    trained with ``--draft`` samples from its ``draft`` model's future plus noise (sigma ``draft_noise``). With
    ``mirrors``, sample k is of the clip's k-th mirror image (``MIRRORS[4]``, cycled), mirrored back: the motion looks
    the same in a mirror, so each is an honest guess, and their mean averages out what the model does differently
    in one (test-time augmentation)."""
    data = standard_test_set()
    names = ["model", "copy_last_frame", "blank"] + ([f"mean_of_{samples}_samples"] if samples > 1 else [])
    scores, per_frame, futures = {name: [] for name in names}, [], []
    flips = [MIRRORS[4][k % 4] if mirrors else () for k in range(samples)]  # the axes sample k flips
    for i in tqdm(range(0, num_clips, batch), desc="predict 10 -> 10", unit="batch", disable=not progress):
        truth = torch.stack([data[j]["video"] for j in range(i, min(i + batch, num_clips))])  # (b, 1, 20, H, W)
        known = torch.arange(truth.shape[2]) < CONTEXT
        drafts = {axes: None if draft is None else draft_clips(draft, truth.flip(axes).to(
            next(draft.parameters()).device)) for axes in set(flips)}  # each mirror image's drafted clip
        outs = torch.stack([generate(model, codec, [None] * len(truth), objective, guidance=1.0, steps=steps,
                                     seed=seed + i + k * num_clips, context=truth.flip(axes), known=known,
                                     frame_guidance=frame_guidance, draft=drafts[axes],
                                     draft_noise=draft_noise)[:, 0, CONTEXT:].flip(axes).cpu()
                            for k, axes in enumerate(flips)])  # (K, b, 10, H, W), each mirrored back
        future = truth[:, 0, CONTEXT:]  # (b, 10, H, W)
        preds = {"model": outs[0], "copy_last_frame": truth[:, 0, CONTEXT - 1:CONTEXT], "blank": torch.zeros_like(
            future[:, :1]), **({names[-1]: outs.mean(0)} if samples > 1 else {})}
        for name, pred in preds.items():
            pred = pred.expand_as(future)
            scores[name].append([len(future), *prediction_metrics(pred, future).values()])
        per_frame.append((outs[0] - future).pow(2).sum((-2, -1)).sum(0))  # (10,) summed over the batch's clips
        futures.append(torch.stack([outs[0], future]))  # (2, b, 10, H, W): the sample's future, the true one
    result = {"clips": num_clips, "samples": samples, **({"mirrors": True} if mirrors else {})}
    for name, rows in scores.items():
        rows = np.array(rows)
        mean = (rows[:, 1:] * rows[:, :1]).sum(0) / rows[:, 0].sum()  # every clip weighs the same
        result[name] = dict(zip(("mse", "mae", "ssim", "psnr"), map(float, mean)))
    result["model"]["mse_per_frame"] = [round(float(e), 2) for e in torch.stack(per_frame).sum(0) / num_clips]
    if evaluator is not None:
        sampled, true = torch.cat(futures, 1)  # (N, 10, H, W) each
        labels = [data[j]["labels"].tolist() for j in range(num_clips)]
        result["future_digits"] = future_digits(evaluator, sampled, true, labels)
    return result


@dataclass
class EvalConfig:
    """Every setting of ``python -m minisora eval``, written once."""

    ckpt: str = option(str(DIT_PATH), "exported weights or a run's ckpt.pt (its EMA weights)")
    clips: int = option(100, "generated clips per prompt kind (one digit, two digits); 0: skip (e.g. with --sizes)")
    prediction_clips: int = option(1000, "test clips for 10 -> 10 prediction (the standard set has 10000; 0: skip)")
    guidance: float = option(4.0, "classifier-free guidance scale for text-to-video")
    guidance_interval: tuple[float, float] = option((0.0, 1.0), "guide by the prompt only at noise levels in [LO, HI] "
                                                                "(1: pure noise); 0 1: at every step",
                                                    metavar=("LO", "HI"))
    guidance_rescale: float = option(0.0, "CFG-rescale weight phi in [0, 1] (Lin et al. 2024); 0: plain guidance")
    guidance_ramp: float = option(0.0, "capabilities: the text guidance rises from about none beside the given "
                                       "frames to --guidance this many frames away (KnownFrames.text_guidance); 0: "
                                       "the same on every frame", metavar="FRAMES")
    steps: int = option(50, "sampler steps for text-to-video")
    prediction_steps: int = option(25, "sampler steps for prediction")
    prediction_samples: int = option(1, "samples per prediction clip; K > 1 also scores their mean (the expected "
                                        "future, which MSE rewards) beside the first sample")
    prediction_mirrors: bool = option(False, "sample k of the K draws the future of the clip's k-th mirror image "
                                             "(none, left-right, up-down, both; convlstm.MIRRORS), mirrored back; the "
                                             "first sample is unchanged, their mean averages over mirrors")
    draft: str | None = option(None, "prediction: draft the future with this regression model (a ConvLSTM's weights, "
                                     "scripts/convlstm_peer.py --export) instead of the one the run trained with "
                                     "(train --draft); only for a model trained with a draft", metavar="PATH")
    draft_noise: float | None = option(None, "prediction: the noise sigma around the draft, x_1 = z_draft + sigma eps "
                                             "(default: the one the run trained with; lower narrows the spread of the "
                                             "samples); only for a model trained with a draft", metavar="SIGMA")
    shift: float | None = option(None, "rectified flow: sample with this time shift (default: the one the model "
                                       "trained with)")
    batch: int = option(50, "clips generated at once")
    seed: int = option(0, "seed of prompts, noise and the real reference clips")
    out: str = option("outputs/eval.json", "JSON file for the results")
    sizes: int = option(0, "also generate this many one-digit clips at each size of size_eval.SIZES (wide, tall, "
                           "a side never trained on, a still, 40 frames) and score them beside real clips; 0: skip")
    capabilities: int = option(0, "also measure image-to-video, extension, loops, connecting, SDEdit and 200-frame "
                                  "videos (capability_eval.py) on this many one-digit clips; 0: skip")
    capability_parts: tuple[str, ...] = option(PARTS, "the capabilities --capabilities measures (default: all)",
                                               choices=PARTS)
    frame_guidance: float = option(1.0, "capabilities and prediction: guidance towards the given frames "
                                        "(diffusion.KnownFrames; rectified flow), at twice the sampling cost; 1: off")
    expand: bool = option(False, "expand the short prompts of the main table into descriptive captions first "
                                 "(prompt expansion, captions.expand_prompt)")
    descriptive: int = option(0, "also generate from the descriptive captions of this many real one-digit clips and "
                                 "check the start, first direction and first bounce they name (following.py); 0: skip")
    permanence: int = option(0, "also measure object permanence on this many real two-digit clips whose digits cross "
                                "after the 10 given frames (permanence.py); 0: skip")
    manifest: bool = option(False, "also record the results under 'eval' in the weights' manifest (CKPT with .json)")
    device: str = option("cpu", "torch device, e.g. cpu or cuda")

    def __post_init__(self):
        if self.clips == 1 or self.clips < 0 or not 0 <= self.prediction_clips <= TEST_SET["num_clips"]:
            raise ValueError(f"clips must be 0 (skip) or at least 2 and prediction_clips in 0..{TEST_SET['num_clips']}, "
                             f"got {self.clips} and {self.prediction_clips}")
        for name in ("sizes", "capabilities", "descriptive", "permanence"):
            if getattr(self, name) < 0 or getattr(self, name) == 1:
                raise ValueError(f"{name} must be 0 (skip) or at least 2 clips, got {getattr(self, name)}")
        check_positive(self, "steps", "prediction_steps", "prediction_samples", "batch")
        if self.prediction_mirrors and self.prediction_samples < 2:
            raise ValueError(f"prediction_mirrors draws samples 2..K from mirror images and needs prediction_samples "
                             f">= 2, got {self.prediction_samples}")
        if not self.capability_parts or not set(self.capability_parts) <= set(PARTS):
            raise ValueError(f"capability_parts must be some of {PARTS}, got {self.capability_parts}")
        check_finite(self, "guidance", at_least=0.0)
        self.guidance_interval = check_guidance_interval(self.guidance_interval)
        self.guidance_rescale = check_guidance_rescale(self.guidance_rescale)
        self.guidance_ramp = check_guidance_ramp(self.guidance_ramp)
        check_finite(self, "frame_guidance", at_least=0.0)
        check_finite(self, "shift", above=0.0)
        check_finite(self, "draft_noise", above=0.0)
        check_device(self.device)


def evaluate(cfg: EvalConfig, progress: bool = True) -> dict:
    """The whole evaluation of a DiT checkpoint, as a dict (what ``eval`` prints and writes)."""
    ckpt, clips, prediction_clips, seed, device = cfg.ckpt, cfg.clips, cfg.prediction_clips, cfg.seed, cfg.device
    started = time.perf_counter()
    model, train = load_dit(ckpt, device)
    given_frames = {k: getattr(cfg, k) for k in ("prediction_clips", "capabilities", "permanence", "sizes")}
    if train.get("arch", "minisora") != "minisora" and any(given_frames.values()):
        raise ValueError(f"{ckpt} holds a {train['arch']} model, which takes one time per clip at one size: it has no "
                         f"given frames or other sizes to measure; pass 0 for {given_frames}")
    codec, evaluator = VideoCodec(model.config.vae, device), load_evaluator()
    objective = objective_of(train, cfg.shift, cfg.guidance_interval, cfg.guidance_rescale)
    shown = Path(ckpt).resolve()
    shown = shown.relative_to(ROOT) if shown.is_relative_to(ROOT) else shown  # data/dit_tiny.pt, not /home/...
    settings = ("clips", "prediction_clips", "sizes", "capabilities", "capability_parts", "frame_guidance", "expand",
                "descriptive", "permanence", "guidance", "guidance_interval", "guidance_rescale", "guidance_ramp",
                "steps", "prediction_steps", "prediction_samples", "prediction_mirrors", "seed", "shift", "draft",
                "draft_noise")
    unused = ({"capability_parts"} if not cfg.capabilities else set()) | \
        ({"frame_guidance"} if not (cfg.capabilities or prediction_clips) else set()) | \
        ({"draft", "draft_noise"} if not prediction_clips else set()) | \
        ({"prediction_mirrors"} if not (prediction_clips and cfg.prediction_mirrors) else set()) | \
        ({"guidance_interval"} if cfg.guidance_interval == (0.0, 1.0) else set()) | \
        ({"guidance_rescale"} if not cfg.guidance_rescale else set()) | \
        ({"guidance_ramp"} if not (cfg.guidance_ramp and cfg.capabilities) else set())
    result = {"checkpoint": str(shown), "settings": {k: getattr(cfg, k) for k in settings
                                                     if getattr(cfg, k) is not None and k not in unused}}
    args = dict(guidance=cfg.guidance, steps=cfg.steps, batch=cfg.batch, seed=seed, progress=progress)
    if clips:
        result.update(standard_table(model, codec, objective, evaluator, clips, args, cfg.expand))
    if cfg.sizes:
        result["sizes"] = at_sizes(model, codec, objective, evaluator, cfg.sizes, **args)
    if cfg.capabilities:
        result["capabilities"] = capability_table(model, codec, objective, evaluator, cfg.capabilities,
                                                  parts=cfg.capability_parts, frame_guidance=cfg.frame_guidance,
                                                  guidance_ramp=cfg.guidance_ramp, **args)
    if cfg.descriptive:
        result["descriptive"] = descriptive_table(model, codec, objective, evaluator, cfg.descriptive, **args)
    if cfg.permanence:
        result["permanence"] = permanence_table(model, codec, objective, evaluator, cfg.permanence, **args)
    if prediction_clips:
        draft, draft_noise = draft_of(train, device, cfg.draft, cfg.draft_noise)
        result["prediction"] = video_prediction(model, codec, objective, prediction_clips, cfg.prediction_steps,
                                                cfg.batch, seed, progress, cfg.prediction_samples, cfg.frame_guidance,
                                                evaluator, draft, draft_noise, cfg.prediction_mirrors)
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
        ("speed_jitter_px", "speed jitter, px between consecutive steps", "{:.2f}"),
        ("bounces_at_walls", "reversals at a wall", "{:.1%}"),
        ("reversals_per_clip", "reversals per clip", "{:.2f}")]


def format_table(result: dict) -> str:
    """The evaluation as a Markdown table (generated next to real) plus the prediction and Frechet rows."""
    fmt = lambda f, x: "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f.format(x)
    lines = []
    if "one_digit" in result:
        lines += ["| metric | 1 digit: model | 1 digit: real | 2 digits: model | 2 digits: real |", "|---|---|---|---|---|"]
        for key, name, f in ROWS:
            values = [result[kind][who].get(key) for kind in ("one_digit", "two_digits") for who in ("generated", "real")]
            if all(v is None for v in values):  # an evaluation from before the row existed
                continue
            lines.append(f"| {name} | " + " | ".join(fmt(f, v) for v in values) + " |")
        fd = result["frechet"]
        lines += ["", f"{result['settings']['clips']} clips per column; Frechet distance on evaluator features "
                      f"(internal metric): generated vs real {fd['generated_vs_real']:.2f}, real vs real "
                      f"{fd['real_vs_real']:.2f}"]
    if "sizes" in result:
        lines += ["", f"At other sizes, {result['settings']['sizes']} one-digit clips each:", format_sizes(result["sizes"])]
    if "descriptive" in result:
        d = result["descriptive"]
        # *_chance: the model's clips / the real clips (chance) held to other clips' prompts
        kinds = [k for k in ("generated", "generated_chance", "real", "chance") if k in d]
        checks = ", ".join(f"{name} " + " / ".join(f"{d[k][key]:.0%}" for k in kinds) for name, key in
                           (("start region", "start"), ("first direction", "direction"), ("first bounce", "bounce"),
                            ("all three", "all_three")))
        lines += ["", f"Descriptive prompts, {d['clips']} one-digit clips ({' / '.join(kinds)}): digit right "
                      f"{d['generated']['alignment']:.0%} / {d['real']['alignment']:.0%}; {checks}"]
    if "permanence" in result:
        p = result["permanence"]
        lines += ["", f"Object permanence, {p['clips']} clips each (last 3 frames; model / real):"]
        for name, what in (("crossing", "digits that cross"), ("apart", "digits that stay apart (control)")):
            g, r = p[name]["generated"], p[name]["real"]
            lines.append(f"  {what}: both kept {g['kept']:.0%} / {r['kept']:.0%}, in place {g['in_place']:.0%} / "
                         f"{r['in_place']:.0%}, ink {g['ink_vs_real']:.2f} / 1.00")
    if "prediction" in result:
        p = result["prediction"]
        lines += ["", f"Video prediction 10 -> 10, first {p['clips']} clips of the regenerated standard test set:",
                  "| predictor | MSE | MAE | SSIM | PSNR (dB) |", "|---|---|---|---|---|"]
        for name in [k for k in p if isinstance(p[k], dict) and "mse" in p[k]]:
            s = p[name]
            label = name.replace('_', ' ') + (" of mirror images" if name.startswith("mean") and p.get("mirrors") else "")
            lines.append(f"| {label} | {s['mse']:.2f} | {s['mae']:.2f} | {s['ssim']:.3f} | {s['psnr']:.2f} |")
        if "future_digits" in p:
            f = p["future_digits"]
            lines.append(f"Digits of the future read as the clip's (of readable clips; model / truth): "
                         f"{fmt('{:.0%}', f['model']['alignment'])} / {fmt('{:.0%}', f['true_future']['alignment'])} "
                         f"(readable {f['model']['readable']:.0%} / {f['true_future']['readable']:.0%}); the model's ink "
                         f"{f['ink_vs_real']:.2f} of the truth's")
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

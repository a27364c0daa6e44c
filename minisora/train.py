"""Training the text-to-video DiT (``python -m minisora train --preset tiny``).

One step: take the next clips of train digits (clip ``i`` of the run is always the same clip),
caption each one (short "3 and 7" or descriptive, chosen per clip), encode the videos to latents
with the frozen VAE, replace a share of captions by the null prompt (for guidance), give a share of
clips conditioning frames (a prefix, a suffix or both ends, kept clean: see ``diffusion.KnownFrames``)
and minimise the DDPM or rectified-flow loss from ``diffusion.py`` on the other frames. AdamW with warm-up and cosine decay,
gradient clipping, an EMA of the weights for sampling.

Everything random is drawn from one seeded generator for the **global** batch, and each process
takes its slice, so a run is the same on 1 process or on N (``torchrun --nproc_per_node N``), and
``--resume`` continues exactly: the checkpoint holds the weights, EMA, optimiser, schedule, step and
generator state. Files in the run folder: ``ckpt.pt`` (atomic), ``log.jsonl``, ``loss.png``,
``samples_XXXXXX.gif`` and, with ``--export``, weights plus a manifest for sharing.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .checkpoint import RunRecord, init_record, load_checkpoint, save_checkpoint, write_manifest
from .config import check_device, check_finite, check_positive, check_probability, option
from .convlstm import ConvLSTM, draft_clips, load_convlstm
from .data import MovingMNIST
from .diffusion import WithInputs
from .digits import Digits, load_digits
from .dit import ATTENTIONS, PRESETS, DiT, DiTConfig, flops_per_clip, get_preset, parameter_count, tokens_per_clip
from .evaluator import load_evaluator, prompt_agreement
from .geometry import DIGIT
from .growth import grow
from .motion import get_config
from .optim import EMA, warmup_cosine
from .repa import FrameEncoder, Projector, aligned_block, alignment_loss, load_aligner, token_targets
from .repatch import repatch, repatched_config
from .sample import PEER_NAMES, VideoCodec, denoiser_class, generate, load_dit, objective_of
from .sizes import SIDES, draw_shapes, pixel_frames, square_crop
from .vae import SPACES, latent_space
from .viz import save_gif

SAMPLE_PROMPTS = ("3", "7", "1 and 8", "a 5 starts at the top left and moves down and right, bouncing off the bottom wall.")


@dataclass
class TrainConfig:
    """Every setting of a training run, written once: ``python -m minisora train --help`` is made from these.
    The defaults are the recipe the probes of docs/recipe.md found best per FLOP on a CPU (``make train``)."""

    preset: str = option("tiny", "model size (see dit.PRESETS)", choices=tuple(PRESETS))
    arch: str = option("minisora", "the network: minisora's DiT, or one of diffusers' video transformers at the same "
                                   "width, depth, heads and tubelets (peers.py; needs diffusers), trained the same way "
                                   "for an equal-compute comparison: latte (factorized attention: --no-conv --no-rope) or "
                                   "wan (--attention full --no-conv); peers take no given frames (--p-known 0), mixed "
                                   "sizes or REPA", choices=("minisora", *PEER_NAMES))
    attention: str = option("factorized", "full: joint spacetime attention; factorized: blocks alternate spatial and "
                                          "temporal attention; hybrid: blocks alternate spatial and full attention "
                                          "(an --init of another mode loads: the weights are the same)",
                            choices=tuple(ATTENTIONS))
    dim: int | None = option(None, "model width instead of the preset's (width vs depth at equal FLOPs)")
    depth: int | None = option(None, "number of DiT blocks instead of the preset's")
    heads: int | None = option(None, "attention heads instead of the preset's")
    patch: tuple[int, int, int] | None = option(None, "tubelet size in latent cells (frames, height, width), instead "
                                                      "of the preset's; smaller tubelets make more tokens: slower, but "
                                                      "attention then does more of the work", metavar=("PT", "PH", "PW"))
    conv: bool = option(True, "a depthwise 3x3x3 convolution over the token grid in each DiT block")
    skips: bool = option(False, "U-ViT long skips between the first and second half of the blocks")
    rope: bool = option(True, "3D rotary positions with QK-norm in self-attention instead of added sin-cos positions")
    vae: str = option("frame", "the space the model denoises: latents of a shipped VAE (frame; frame-se, the frame "
                               "VAE fine-tuned for a smoother latent; frame-eq, frame-se fine-tuned to move its "
                               "latent with the digit; frame-eqe, frame-eq whose encoder moves it too; spacetime) or pixels "
                               "(none)", choices=SPACES)
    objective: str = option("flow", "rectified flow (velocity, logit-normal times) or DDPM (epsilon, linear "
                                    "schedule)", choices=("flow", "ddpm"))
    shift: float = option(3.0, "rectified flow: shift training times and the sampling grid towards noise, "
                               "t -> s t / (1 + (s - 1) t); 1 = no shift")
    steps: int = option(2500, "optimisation steps of the whole run")
    batch_size: int = option(4, "clips per step (global, over all processes)")
    lr: float = option(1.5e-3, "peak AdamW learning rate (warm-up, then cosine decay)")
    warmup: int = option(100, "steps of linear learning-rate warm-up")
    weight_decay: float = option(0.0, "AdamW weight decay")
    grad_clip: float = option(1.0, "clip the gradient norm to this value")
    ema_decay: float = option(0.999, "decay of the EMA weights used for sampling")
    p_uncond: float = option(0.1, "share of captions replaced by the null prompt (what classifier-free guidance needs)")
    p_descriptive: float = option(0.5, "share of clips captioned descriptively ('a 3 starts at the top ...') "
                                       "rather than '3'")
    p_known: float = option(0.25, "share of clips given conditioning frames (a clean prefix, suffix or both ends), "
                                  "which teaches video prediction, extension and interpolation; 0: text-to-video only")
    p_known_uncond: float = option(0.0, "share of the clips given frames whose caption is dropped too: the digit's "
                                        "look must then come from the frames, as in prediction, which has no caption")
    p_predict: float = option(0.0, "share of clips drawn as the 10 -> 10 prediction task instead: the first half of "
                                   "the frames given, the caption dropped (the eval gives no prompt); drawn after "
                                   "--p-known, so the rest keep their given frames; fixed sizes only")
    draft: str | None = option(None, "a regression model's weights (a ConvLSTM from scripts/convlstm_peer.py "
                                     "--export, e.g. data/convlstm_predict.pt): the flow of the prediction clips' "
                                     "future starts at its prediction plus noise instead of noise alone, so the DiT "
                                     "learns the sharp rest of a blurry mean (convlstm.py); needs --p-predict and "
                                     "rectified flow", metavar="WEIGHTS")
    draft_noise: float = option(1.0, "--draft: the noise sigma around the draft, x_1 = z_draft + sigma eps; lower "
                                     "keeps the samples nearer the draft", metavar="SIGMA")
    draft_input: bool = option(False, "--draft: the DiT also reads the draft's latents, at every noise level, through "
                                      "a second tubelet embedding added to its tokens (zero-initialised, so an --init "
                                      "without one loads and starts as it was)")
    p_image: float = option(0.25, "share of steps that train on still images (one frame of tubelets, as many images "
                                 "as the clips' frames of tubelets) instead of clips: joint image-video training")
    repa: float = option(0.0, "REPA weight lambda: the tokens after block ~depth/3, through an MLP, learn to predict the "
                              "frozen aligner's features of the clean frames (python -m minisora train-aligner); 0: off")
    frame_difference: float = option(0.0, "weight lambda of the frame-difference loss: lambda * |e_t+1 - e_t|^2 over "
                                          "consecutive generated latent frames (e: the model's error), which weighs "
                                          "errors that alternate frame to frame (a stutter) 1 + 4 lambda; 0: off")
    num_digits: tuple[int, ...] = option((1, 2), "digits per clip; clips cycle through the values given")
    classes: tuple[int, ...] = option(tuple(range(10)), "digit classes the clips are drawn from (the debugging "
                                                        "ladder trains on one class, then all ten)")
    clips: int | None = option(None, "distinct training clips: the run cycles through the first N (1: overfit one "
                                     "clip, the ladder's first rung); default: every clip is new")
    seed: int = option(0, "seed for initialisation, clips, captions, noise and times")
    device: str = option("cpu", "torch device, e.g. cpu or cuda")
    precision: str = option("auto", "matmul precision: bf16 autocast, or fp32; auto = bf16 on CUDA, fp32 on the CPU",
                            choices=("auto", "bf16", "fp32"))
    out: str | None = option(None, "run folder (default: runs/PRESET)")
    log_every: int = option(10, "steps between lines of log.jsonl")
    ckpt_every: int = option(250, "steps between checkpoints")
    sample_every: int = option(1000, "steps between sample GIFs (and one at the end); 0: none")
    sample_steps: int = option(25, "sampler steps for those GIFs")
    compile: bool = option(False, "torch.compile the model (GPU)")
    workers: int = option(0, "processes that draw each step's clips ahead of the training loop (a GPU outruns the "
                             "one CPU core that draws them in the loop); 0: drawn in the loop. The run is the same "
                             "either way")
    sizes: str = option("fixed", "fixed: every clip is the preset's 20 frames of 64x64; mixed: clips of their own "
                                 "sizes (sides 32-128 px, square, wide and tall; 1 to 40 frames, 1 = a still image; "
                                 "96 px never), packed into rows (Patch n' Pack) up to --tokens a step; cropped: 20 "
                                 "frames drawn at the mixed canvases, then cut to their centred square and resized to "
                                 "64x64 (the usual approach, Sora's baseline), with short captions",
                        choices=("fixed", "mixed", "cropped"))
    tokens: int = option(2560, "mixed sizes: the token budget of a step (the fixed recipe's 4 clips of 640 tokens)")
    stop_at: int | None = option(None, "stop (with a checkpoint) at this step; --resume continues later, as if "
                                       "never stopped")
    init: str | None = option(None, "start from these weights (exported, or a run's ckpt.pt) instead of a random "
                                    "initialisation; with a --depth that is a multiple of theirs, the model is "
                                    "grown: its blocks are copied, the copies starting as the identity (growth.py); "
                                    "with a --patch whose time divides theirs (1 2 2 from 2 2 2), it is re-patched "
                                    "to one token per latent frame (repatch.py)")

    def model_config(self) -> DiTConfig:
        """The DiT these settings train: the preset, with the model settings above."""
        overrides = {k: v for k, v in dict(patch=self.patch, dim=self.dim, depth=self.depth, heads=self.heads).items()
                     if v is not None}
        return get_preset(self.preset, attention=self.attention, vae=self.vae, conv=self.conv, skips=self.skips,
                          rope=self.rope, draft_input=self.draft_input, **overrides)

    def __post_init__(self):
        self.out = self.out or f"runs/{self.preset}"
        check_probability(self, "p_uncond", "p_descriptive", "p_known", "p_known_uncond", "p_predict", "p_image")
        check_positive(self, "dim", "depth", "heads", "steps", "batch_size", "clips", "log_every", "ckpt_every",
                       "sample_steps", "stop_at", "tokens")
        if self.workers < 0 or (self.workers and self.sizes == "mixed"):
            raise ValueError(f"workers must be >= 0, and 0 with mixed sizes (their clips are drawn in the loop); "
                             f"got workers={self.workers} with sizes={self.sizes}")
        if self.sizes == "mixed" and (self.repa or self.clips or self.p_image):
            raise ValueError(f"mixed sizes draw their own stills (1-frame clips) and do not combine with repa, clips "
                             f"or p_image (use --p-image 0); got repa={self.repa}, clips={self.clips}, "
                             f"p_image={self.p_image}")
        for name, above, at_least in (("lr", 0.0, None), ("shift", 0.0, None), ("weight_decay", None, 0.0),
                                      ("grad_clip", 0.0, None), ("repa", None, 0.0), ("frame_difference", None, 0.0)):
            check_finite(self, name, above=above, at_least=at_least)
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.warmup < 0 or self.sample_every < 0:
            raise ValueError(f"warmup and sample_every must be >= 0, got {self.warmup} and {self.sample_every}")
        if self.patch is not None and min(self.patch) < 1:
            raise ValueError(f"patch sizes must be >= 1, got {self.patch}")
        if self.draft and not (self.p_predict and self.objective == "flow"):
            raise ValueError(f"draft starts the flow of prediction clips: it needs p_predict > 0 and the flow "
                             f"objective, got p_predict={self.p_predict} and objective={self.objective!r}")
        check_finite(self, "draft_noise", above=0.0)
        if self.draft_noise != 1.0 and not self.draft:
            raise ValueError(f"draft_noise is the noise around a draft: it needs draft, got draft_noise="
                             f"{self.draft_noise} without one")
        if self.draft_input and not self.draft:
            raise ValueError("draft_input reads the draft's latents: it needs draft, got draft_input without one")
        if self.p_predict and self.sizes != "fixed":
            raise ValueError(f"p_predict trains the fixed-size prediction task; got p_predict={self.p_predict} with "
                             f"sizes={self.sizes}")
        if not self.num_digits:
            raise ValueError("num_digits needs at least one value")
        for k in self.num_digits:  # digits per clip that fit on the canvas
            get_config("standard", num_digits=k)
        if not self.classes or not set(self.classes) <= set(range(10)):
            raise ValueError(f"classes must be digits 0-9, got {self.classes}")
        check_device(self.device)
        self.model_config()  # the model must be buildable: e.g. the canvas must be whole tubelets
        network = denoiser_class(self.arch)  # an unknown arch, or a peer without diffusers, is refused here
        differ = {k: getattr(self, k) for k, v in getattr(network, "requires", {}).items() if getattr(self, k) != v}
        if differ:
            raise ValueError(f"arch {self.arch} is built with {network.requires}; these settings differ: {differ}")

@dataclass
class Launch:
    """How ``python -m minisora train`` runs a config, apart from what the run trains."""

    resume: bool = option(False, "continue the run in OUT from its checkpoint, if any")
    export: str | None = option(None, "when the run completes (or stops at --stop-at), write its EMA weights here, "
                                      "with a JSON manifest beside them")


class TrainingClips:
    """Clip ``i`` of a run: train digits of ``classes``, ``num_digits[i % len]`` digits, a short or descriptive
    caption; with ``clips`` set, the run cycles through its first ``clips`` clips. ``images`` gives stills.
    ``cropped``: clip ``i`` is drawn at a canvas of the mixed sizes and squared by ``sizes.square_crop``."""

    def __init__(self, seed: int, num_digits: tuple[int, ...], p_descriptive: float, num_clips: int,
                 classes: tuple[int, ...] = tuple(range(10)), clips: int | None = None, cropped: bool = False):
        digits = load_digits("train", "mnist5k")
        if set(classes) != set(range(10)):
            keep = np.isin(digits.labels, classes)
            digits = Digits(digits.images[keep], digits.labels[keep], digits.source, digits.split)
        self.sets = [MovingMNIST("train", num_clips, seed=seed + k, digits=digits, num_digits=k) for k in num_digits]
        self.stills = [MovingMNIST("train", 2**31 - 1, seed=seed + 100 + k, digits=digits, num_digits=k)
                       for k in num_digits]
        self.seed, self.p_descriptive, self.clips, self.cropped = seed, p_descriptive, clips, cropped
        self.digits, self.num_digits, self.by_shape = digits, num_digits, {}

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
        i = i % self.clips if self.clips else i
        if self.cropped:  # drawn at a mixed canvas, then squared; the short caption (a description would be false)
            height, width = (int(side) for side in np.random.default_rng([self.seed, 12, i]).choice(SIDES, 2))
            video, caption = self.sized(i, self.sets[0].config.num_frames, height, width, fits=lambda text: False)
            return square_crop(video), caption
        data = self.sets[i % len(self.sets)]
        clip = data[i // len(self.sets)]
        descriptive = np.random.default_rng([self.seed, 7, i]).random() < self.p_descriptive
        return clip["video"], clip["description"] if descriptive else clip["caption"]

    def batch(self, indices) -> tuple[torch.Tensor, list[str]]:
        videos, captions = zip(*(self[i] for i in indices))
        return torch.stack(videos), list(captions)  # (B, 1, T, H, W)

    def sized(self, i: int, frames: int, height: int, width: int, fits=lambda caption: True) -> tuple[torch.Tensor, str]:
        """Clip ``i`` of a mixed-size run, (1, frames, height, width), with as many digits as fit on its canvas
        (``num_digits`` cycles as above); a clip of 1 frame is a still image with its short caption, and so is a
        clip whose description does not ``fit`` the text encoder (long clips on large canvases bounce a lot)."""
        k = min(self.num_digits[i % len(self.num_digits)], (height * width) // DIGIT**2)
        if (frames, height, width, k) not in self.by_shape:
            self.by_shape[frames, height, width, k] = MovingMNIST(
                "train", 2**31 - 1, seed=self.seed + 200 + k, digits=self.digits, num_digits=k, num_frames=frames,
                height=height, width=width)
        clip = self.by_shape[frames, height, width, k][i // len(self.num_digits)]
        descriptive = frames > 1 and np.random.default_rng([self.seed, 7, i]).random() < self.p_descriptive
        return clip["video"], clip["description"] if descriptive and fits(clip["description"]) else clip["caption"]

    def images(self, indices, frames: int) -> tuple[torch.Tensor, list[str]]:
        """Stills: image ``i`` is one frame of a clip shown for ``frames`` frames, with its short caption."""
        videos, captions = [], []
        for i in indices:
            clip = self.stills[i % len(self.stills)].clip(i // len(self.stills))
            frame = clip.video[np.random.default_rng([self.seed, 8, i]).integers(len(clip.video))]  # (H, W)
            videos.append(torch.from_numpy(frame).float().div(255).expand(1, frames, *frame.shape))  # (1, T, H, W)
            captions.append(clip.caption)
        return torch.stack(videos), captions  # (B, 1, frames, H, W)


def distributed() -> tuple[int, int]:
    """(rank, world size); starts the process group when launched by torchrun (gloo on CPU, NCCL on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def draw_known(batch: int, tubelets: int, tubelet: int, p: float, generator: torch.Generator) -> torch.Tensor:
    """Conditioning frames for a batch, (batch, tubelets * tubelet) bool, in whole frames of tubelets.

    A share ``p`` of clips gets k in 1..tubelets-1 known frames of tubelets, as a prefix (prediction,
    image-to-video), a suffix (extension backwards) or split between both ends (interpolation, loops).
    """
    used = torch.rand(batch, generator=generator) < p
    kind = torch.randint(3, (batch,), generator=generator)[:, None]  # 0 prefix, 1 suffix, 2 both ends
    k = torch.randint(1, tubelets, (batch,), generator=generator)[:, None]
    i = torch.arange(tubelets)[None]  # (1, tubelets)
    head = torch.where(kind == 2, (k + 1) // 2, torch.where(kind == 0, k, 0))  # known frames at the start
    tail = k - head  # and at the end
    known = (i < head) | (i >= tubelets - tail)
    return (known & used[:, None]).repeat_interleave(tubelet, dim=1)


@dataclass
class Trainee:
    """What a run trains and how: the DiT, its EMA, the optimiser and schedule, and with ``--repa`` the projector
    that is trained too and the frozen aligner it is aligned with."""

    model: DiT
    ema: EMA
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    projector: Projector | None = None
    aligner: FrameEncoder | None = None
    hidden: dict = field(default_factory=dict)  # REPA: the aligned block's output tokens of the last forward pass
    draft: ConvLSTM | None = None  # --draft: the frozen regression model whose future starts the flow

    def state(self, cfg: TrainConfig, step: int, generator: torch.Generator) -> dict:
        """The checkpoint: everything ``restore`` needs to continue exactly."""
        return {"config": asdict(self.model.config), "train": asdict(cfg), "model": self.model.state_dict(),
                "ema": self.ema.model.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(), "step": step, "generator": generator.get_state(),
                **({"projector": self.projector.state_dict()} if self.projector else {})}


def build(cfg: TrainConfig, device: torch.device) -> Trainee:
    """The model (seeded; weights from ``cfg.init`` if given), its EMA, optimiser, schedule and REPA's parts."""
    config, start = cfg.model_config(), None
    if cfg.init:
        start, _ = load_dit(cfg.init, device)
        # the same weights in every attention mode, and in every latent space of one shape (a fine-tuned VAE's)
        # and at any depth that is a multiple of its own (growth.grow: the extra blocks start as the identity),
        # or with a shorter temporal patch (repatch.repatch: one token per latent frame)
        repatching = start.config.patch[1:] == config.patch[1:] and start.config.patch != config.patch
        scale = repatched_config(start.config, config.patch).rope_time_scale if repatching else \
            start.config.rope_time_scale  # the rotary time of the start, or of its grid re-patched
        config = replace(config, rope_time_scale=scale)
        same_shape = latent_space(start.config.vae) == latent_space(config.vae)
        if not same_shape or replace(start.config, attention=config.attention, vae=config.vae, depth=config.depth,
                                     rope_time_scale=scale, patch=config.patch if repatching else start.config.patch,
                                     draft_input=start.config.draft_input or config.draft_input) != config:
            raise ValueError(f"--init {cfg.init} holds a different model: {start.config}, expected {config}")
    torch.manual_seed(cfg.seed)
    model = denoiser_class(cfg.arch)(config).to(device)
    if start is not None:
        if repatching:
            repatch(start, model)
        elif start.config.depth == model.config.depth:  # a draft embedding the start lacks keeps its zero init
            model.load_state_dict({**model.state_dict(), **start.state_dict()})
        else:
            grow(start, model)
    aligner = load_aligner(device=device) if cfg.repa else None
    projector = Projector(model.config.dim, aligner.dim).to(device) if cfg.repa else None
    params = [*model.parameters(), *(projector.parameters() if projector else ())]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    t = Trainee(model, EMA(model, cfg.ema_decay), opt, warmup_cosine(opt, cfg.steps, cfg.warmup), projector, aligner,
                draft=load_convlstm(cfg.draft, device) if cfg.draft else None)
    if projector:  # keep the aligned block's output tokens of each forward pass
        model.blocks[aligned_block(model.config.depth)].register_forward_hook(
            lambda module, inputs, output: t.hidden.update(tokens=output))
    return t


CKPT_KEYS = ("config", "train", "model", "ema", "optimizer", "scheduler", "step", "generator")
OPTIONAL_KEYS = ("projector",)  # REPA's MLP, in runs with --repa


FREE = ("stop_at", "device", "log_every", "ckpt_every", "sample_every", "sample_steps", "compile",
        "workers")  # may change on resume


def restore(cfg: TrainConfig, ckpt_path: Path, device, t: Trainee, generator: torch.Generator) -> int:
    """Load a run's checkpoint into ``t`` and the generator; returns its step.
    Refuses a checkpoint made with other settings (settings it predates count as their defaults)."""
    state = load_checkpoint(ckpt_path, map_location=device, kind="training", keys=CKPT_KEYS,
                            optional=OPTIONAL_KEYS)
    given = {k: v for k, v in asdict(cfg).items() if k not in FREE}
    saved = {**asdict(TrainConfig()), **state["train"]}
    saved = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in given}  # JSON-like lists
    if saved != given:
        diff = {k: (saved.get(k), v) for k, v in given.items() if saved.get(k) != v}
        raise ValueError(f"cannot resume {ckpt_path}: settings differ (saved, given): {diff}")
    t.model.load_state_dict(state["model"])
    if t.projector:
        t.projector.load_state_dict(state["projector"])
    t.ema.model.load_state_dict(state["ema"])
    t.opt.load_state_dict(state["optimizer"])
    t.sched.load_state_dict(state["scheduler"])
    generator.set_state(state["generator"].cpu())
    return state["step"]


@dataclass
class Batch:
    """One step's training batch on one process, on its device."""

    videos: torch.Tensor  # (b, 1, T, H, W) clips, or stills held for one frame of tubelets
    z: torch.Tensor  # (b, C, T', H', W') their latents
    ids: torch.Tensor  # (b, L) caption ids; the null prompt where the caption was dropped
    t: torch.Tensor  # (b,) diffusion times
    noise: torch.Tensor  # like z
    known: torch.Tensor | None  # (b, T') conditioning frames, or None
    draft: torch.Tensor | None = None  # like z: --draft-input's draft latents of the frames to generate, zeros elsewhere


def step_rows(step: int, cfg: TrainConfig, config: DiTConfig, rank: int = 0, world: int = 1) -> tuple[bool, int, slice]:
    """Step ``step``: whether it trains on stills, its global batch (an image per frame of tubelets of each clip),
    and this process's rows of it."""
    image = cfg.p_image > 0 and np.random.default_rng([cfg.seed, 9, step]).random() < cfg.p_image
    n = cfg.batch_size * (tokens_per_clip(config)[0] if image else 1)
    return image, n, slice(rank * n // world, (rank + 1) * n // world)


def step_clips(step: int, cfg: TrainConfig, data: TrainingClips, config: DiTConfig, rank: int = 0,
               world: int = 1) -> tuple[torch.Tensor, list[str]]:
    """Step ``step``'s clips (or stills) and captions in this process's rows: (b, 1, T, H, W), b captions."""
    image, n, rows = step_rows(step, cfg, config, rank, world)
    clips = range(step * n + rows.start, step * n + rows.stop)  # the run's clips (or stills) in those rows
    return data.images(clips, config.tubelet_frames) if image else data.batch(clips)


def clip_stream(cfg: TrainConfig, data: TrainingClips, config: DiTConfig, steps: range, rank: int = 0,
                world: int = 1):
    """``step_clips`` of each step in ``steps``, in order: drawn in the loop, or ahead by ``cfg.workers``
    processes (a DataLoader over step numbers; each step's clips depend on its number alone)."""
    draw = functools.partial(step_clips, cfg=cfg, data=data, config=config, rank=rank, world=world)
    if not cfg.workers:
        return map(draw, steps)
    return iter(DataLoader(steps, batch_size=None, collate_fn=draw, num_workers=cfg.workers, prefetch_factor=4,
                           pin_memory=torch.cuda.is_available()))


def draw_batch(step: int, cfg: TrainConfig, clips: tuple[torch.Tensor, list[str]], model: DiT, obj,
               codec: VideoCodec, generator: torch.Generator, rank: int = 0, world: int = 1,
               draft: ConvLSTM | None = None) -> Batch:
    """Step ``step``'s batch for this process from its ``step_clips``. The randomness is drawn for the whole
    global batch, identically on every process, and each process keeps its own rows of it, so N processes train
    exactly like one. With a ``draft`` model, the prediction clips' future starts at its latents plus noise
    (``noise`` = z_draft + sigma eps there: x_1 of the flow, whose path is then x_t = (1 - t) x_0 + t x_1)."""
    videos, captions = clips
    image, n, rows = step_rows(step, cfg, model.config, rank, world)
    pt = model.config.patch[0]
    device = next(model.parameters()).device
    t = obj.sample_t(n, "cpu", generator)[rows]
    drop = (torch.rand(n, generator=generator) < cfg.p_uncond)[rows]
    z = codec.encode(videos.to(device, non_blocking=True))  # (b, C, T', H', W')
    noise = torch.randn((n, *z.shape[1:]), generator=generator)[rows]
    known = draw_known(n, z.shape[2] // pt, pt, cfg.p_known, generator) if cfg.p_known and not image else None
    if known is not None and cfg.p_known_uncond:  # drawn only then: runs without it keep their random streams
        drop |= (known.any(1) & (torch.rand(n, generator=generator) < cfg.p_known_uncond))[rows]
    if cfg.p_predict and not image:  # drawn only then, as above
        task = torch.rand(n, generator=generator) < cfg.p_predict
        tubelets = z.shape[2] // pt
        first_half = (torch.arange(tubelets) < tubelets // 2).repeat_interleave(pt)  # (T',) the given frames
        known = torch.where(task[:, None], first_half, False if known is None else known)  # (n, T')
        drop |= task[rows]
    known = None if known is None else known[rows]
    ids = model.tokenizer.batch(captions)
    ids = torch.where(drop[:, None], model.null_ids(len(ids)), ids)
    noise, z_draft = noise.to(device), None
    if draft is not None and not image:  # the flow of the future starts at the draft: noise = z_draft + sigma eps
        start = (task[rows, None].to(device) & ~known.to(device))[:, None, :, None, None]  # (b, 1, T', 1, 1)
        drafted = codec.encode_frames(draft_clips(draft, videos.to(device)), start.flatten(1).any(0))  # given ones: 0
        z_draft = torch.where(start, drafted, 0.0)  # (b, C, T', H', W')
        noise = torch.where(start, z_draft + cfg.draft_noise * noise, noise)
    return Batch(videos.to(device), z, ids.to(device), t.to(device), noise, None if known is None else known.to(device),
                 z_draft if cfg.draft_input else None)


@dataclass
class PackedBatch:
    """One step's clips of mixed sizes, each kept at its own shape (for ``Objective.packed_loss``)."""

    z: list[torch.Tensor]  # (C, T'_i, H'_i, W'_i) latents
    ids: torch.Tensor  # (S, L) caption ids; the null prompt where the caption was dropped
    t: torch.Tensor  # (S,) diffusion times
    noise: list[torch.Tensor]  # like z
    known: list[torch.Tensor | None]  # (T'_i,) conditioning frames, or None


def draw_packed_batch(step: int, cfg: TrainConfig, data: TrainingClips, model: DiT, obj, codec: VideoCodec,
                      generator: torch.Generator) -> PackedBatch:
    """Step ``step``'s clips of mixed sizes: shapes from ``sizes.draw_shapes`` until ``cfg.tokens`` are used;
    a 1-frame clip (a still) is shown for one frame of tubelets."""
    shapes = draw_shapes(np.random.default_rng([cfg.seed, 11, step]), model.config, cfg.tokens)
    device, tokenizer = next(model.parameters()).device, model.tokenizer
    fits = lambda caption: len(tokenizer.words(caption)) <= tokenizer.max_len
    z, captions = [], []
    for j, (frames, height, width) in enumerate(shapes):
        video, caption = data.sized(step * MAX_CLIPS + j, frames, height, width, fits)  # (1, T, H, W)
        video = video.expand(1, pixel_frames(frames, model.config), height, width)  # a still: repeated
        z.append(codec.encode(video[None].to(device))[0])  # (C, T', H', W')
        captions.append(caption)
    n, pt = len(shapes), model.config.patch[0]
    t = obj.sample_t(n, "cpu", generator)
    drop = torch.rand(n, generator=generator) < cfg.p_uncond
    noise = [torch.randn(x.shape, generator=generator).to(device) for x in z]
    known = [draw_known(1, x.shape[1] // pt, pt, cfg.p_known, generator)[0].to(device)
             if cfg.p_known and x.shape[1] // pt > 1 else None for x in z]
    if cfg.p_known_uncond:
        drop |= torch.tensor([k is not None and bool(k.any()) for k in known]) & (
            torch.rand(n, generator=generator) < cfg.p_known_uncond)
    ids = torch.where(drop[:, None], model.null_ids(n), model.tokenizer.batch(captions))
    return PackedBatch(z, ids.to(device), t.to(device), noise, known)


MAX_CLIPS = 10_000  # clip indices of a mixed-size step: step * MAX_CLIPS + j (more than any budget holds)


def trim_log(log_path: Path, step: int) -> None:
    """Keep the log lines of the steps a resumed checkpoint holds, drop the rest."""
    if log_path.exists():
        lines = [line for line in log_path.read_text().splitlines() if json.loads(line)["step"] <= step]
        log_path.write_text("".join(line + "\n" for line in lines))


def clip_equivalents(b: Batch | PackedBatch, config: DiTConfig) -> float:
    """A batch's size in training clips (the preset's clip: 20 frames of 64x64) by its tokens: stills and clips of
    mixed sizes count at their own cost, so speeds and FLOP rates compare across recipes."""
    cells = sum(z[0].numel() for z in b.z)  # latent cells (T' H' W') of all clips or stills
    return cells / math.prod(config.patch) / math.prod(tokens_per_clip(config))


SKIPS = 20  # non-finite steps in a row after which a run stops: its weights can no longer make a finite step


class LogLines:
    """log.jsonl: one line per ``log_every`` steps with the means of the steps since the last line, speed (clips
    counted by ``clip_equivalents``) and the steps skipped for a non-finite gradient."""

    def __init__(self, path: Path):
        self.path = path
        self.losses, self.aligns, self.clips, self.skipped, self.tick = [], [], 0.0, 0, time.perf_counter()
        self.in_a_row = 0

    def add(self, step: int, loss: float, align: float | None, clips: float, grad_norm: float) -> None:
        finite = math.isfinite(grad_norm)
        self.skipped, self.in_a_row = self.skipped + (not finite), 0 if finite else self.in_a_row + 1
        if self.in_a_row == SKIPS:
            raise FloatingPointError(f"steps {step - SKIPS + 2}-{step + 1}: the loss or gradient was not finite "
                                     f"{SKIPS} times in a row (those steps were skipped); the run stops, and its "
                                     f"checkpoint holds the last finite weights")
        self.losses.append(loss)
        self.clips += clips
        if align is not None:
            self.aligns.append(align)

    def write(self, step: int, lr: float, grad_norm: float) -> dict:
        seconds, k = time.perf_counter() - self.tick, len(self.losses)
        record = {"step": step, "loss": round(sum(self.losses) / k, 5), "lr": lr, "grad_norm": round(grad_norm, 4),
                  "steps_per_s": round(k / seconds, 3), "clips_per_s": round(self.clips / seconds, 2),
                  **({"align": round(sum(self.aligns) / k, 4)} if self.aligns else {}),
                  **({"skipped": self.skipped} if self.skipped else {})}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        self.losses, self.aligns, self.clips, self.skipped, self.tick = [], [], 0.0, 0, time.perf_counter()
        return record


def optimise(t: Trainee, net: torch.nn.Module, obj, cfg: TrainConfig, b: Batch | PackedBatch, step: int,
             autocast) -> tuple[float, float | None, float]:
    """One step on batch ``b``: returns (diffusion loss, REPA's alignment loss or None, gradient norm)."""
    with autocast:
        if isinstance(b, PackedBatch):  # clips of their own sizes, packed into rows
            loss = obj.packed_loss(t.model, b.z, b.ids, b.t, b.noise, b.known, cfg.frame_difference)
        else:
            net = net if b.draft is None else WithInputs(net, draft=b.draft)  # --draft-input: the DiT reads the draft
            loss = obj.loss(net, b.z, b.ids, t=b.t, noise=b.noise, known=b.known, frame_difference=cfg.frame_difference)
        align = None
        if t.projector:  # L = L_diffusion + lambda * mean -cos(MLP(h), y), h: the aligned block's tokens
            targets = token_targets(t.aligner, b.videos, t.model.patch_grid(b.z))
            align = alignment_loss(t.projector(t.hidden["tokens"]), targets)
    t.opt.zero_grad(set_to_none=True)
    (loss if align is None else loss + cfg.repa * align).backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(t.opt.param_groups[0]["params"], cfg.grad_clip)
    if torch.isfinite(grad_norm):  # a non-finite loss or gradient (a bf16 overflow, say) never reaches the weights
        t.opt.step()
    t.sched.step()
    t.ema.update(t.model, step)
    return loss.item(), None if align is None else align.item(), float(grad_norm)


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True, command: str = "",
          export: str | Path | None = None) -> dict:
    """Train (or resume) a run in ``cfg.out``; returns a summary (speed, final loss, files)."""
    rank, world = distributed()
    if cfg.batch_size % world or (cfg.sizes == "mixed" and world > 1):
        raise ValueError(f"the global batch size {cfg.batch_size} must be divisible by the {world} processes "
                         f"(and mixed sizes train on one process for now)")
    device = torch.device(cfg.device if world == 1 or cfg.device == "cpu" else f"cuda:{int(os.environ['LOCAL_RANK'])}")
    run, out = RunRecord(command, device), Path(cfg.out)
    ckpt_path, log_path = out / "ckpt.pt", out / "log.jsonl"
    t = build(cfg, device)
    generator = torch.Generator().manual_seed(cfg.seed)  # on the CPU: the same stream on every device
    start_step = 0
    if resume and ckpt_path.exists():
        start_step = restore(cfg, ckpt_path, device, t, generator)
    elif resume and rank == 0:
        print(f"no checkpoint at {ckpt_path}: starting a new run")
    net = torch.nn.parallel.DistributedDataParallel(t.model) if world > 1 else t.model
    net = torch.compile(net) if cfg.compile else net
    obj, codec = objective_of(asdict(cfg)), VideoCodec(cfg.vae, device)
    data = TrainingClips(cfg.seed, cfg.num_digits, cfg.p_descriptive, num_clips=cfg.steps * cfg.batch_size,
                         classes=cfg.classes, clips=cfg.clips, cropped=cfg.sizes == "cropped")
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    autocast = torch.autocast(device.type, torch.bfloat16) if bf16 else contextlib.nullcontext()
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        trim_log(log_path, start_step)
    log, last_step = LogLines(log_path), min(cfg.steps, cfg.stop_at or cfg.steps)
    bar = tqdm(range(start_step, last_step), initial=start_step, total=cfg.steps, desc=f"train {cfg.preset}",
               unit="step", disable=not progress or rank > 0)
    stream = None if cfg.sizes == "mixed" else clip_stream(cfg, data, t.model.config, range(start_step, last_step),
                                                           rank, world)
    for step in bar:
        if stream is None:
            b = draw_packed_batch(step, cfg, data, t.model, obj, codec, generator)
        else:
            b = draw_batch(step, cfg, next(stream), t.model, obj, codec, generator, rank, world, t.draft)
        loss, align, grad_norm = optimise(t, net, obj, cfg, b, step, autocast)
        log.add(step, loss, align, clip_equivalents(b, t.model.config), grad_norm)
        done = step + 1
        if rank == 0 and (done % cfg.log_every == 0 or done == last_step):
            record = log.write(done, t.sched.get_last_lr()[0], grad_norm)
            bar.set_postfix(loss=f"{record['loss']:.4f}", clips_s=f"{record['clips_per_s']:.1f}")
        if rank == 0 and (done % cfg.ckpt_every == 0 or done == last_step):
            save_checkpoint(t.state(cfg, done, generator), ckpt_path)
        if rank == 0 and cfg.sample_every and (done % cfg.sample_every == 0 or done == cfg.steps):
            write_samples(t.ema.model, codec, cfg, out / f"samples_{done:06d}.gif")
    summary = {"run": str(out), "steps_done": last_step, "steps_planned": cfg.steps, "wall_time_s": run.stop()}
    if rank == 0:
        summary.update(run_summary(cfg, t.model, log_path, run, t.draft))
        plot_loss(log_path, out / "loss.png")
        if export is not None:  # when the run completes, or stops at --stop-at
            export_weights(ckpt_path, export, summary, device)
    if world > 1:
        dist.barrier()
    return summary


def write_samples(model: DiT, codec: VideoCodec, cfg: TrainConfig, path: Path, prompts=SAMPLE_PROMPTS) -> Path:
    """A GIF of the EMA model's samples for a few fixed prompts (guidance 4, ``sample_steps`` steps)."""
    videos = generate(model, codec, list(prompts), objective_of(asdict(cfg)), guidance=4.0, steps=cfg.sample_steps, seed=0)
    return save_gif(list(videos[:, 0].cpu()), path, ncols=len(prompts))


def run_summary(cfg: TrainConfig, model: DiT, log_path: Path, run: RunRecord, draft: ConvLSTM | None = None) -> dict:
    """What the manifest records: settings, size, cost and speed, and the last logged loss; with a ``draft``, what
    drafting a clip costs on top (the ConvLSTM's prediction and encoding the drafted clip, counted)."""
    log = [json.loads(line) for line in log_path.read_text().splitlines()]
    clips_s, steps_s = (statistics.median_low([r[key] for r in log[len(log) // 2:]] or [0.0])  # past warm-up
                        for key in ("clips_per_s", "steps_per_s"))
    if cfg.arch != "minisora":  # no formula for diffusers' models: torch's FlopCounterMode, on one clip
        from .peers import counted_step_flops
        flops = counted_step_flops(model, batch=1, p_image=0.0)
    else:
        flops = flops_per_clip(model.config)
    steps = [0] + [r["step"] for r in log]
    train_time = sum((b - a) / r["steps_per_s"] for a, b, r in zip(steps, steps[1:], log))  # all segments of a resumed run
    return {**run.manifest(), "settings": asdict(cfg), "preset": cfg.preset, "config": asdict(model.config), "parameters": parameter_count(model),
            "train_gflop_per_clip": round(flops / 1e9, 3), "clips_per_s": clips_s,
            "steps_per_s": steps_s, "train_tflop_per_s": round(flops * clips_s / 1e12, 4),
            "train_time_s": round(train_time, 1), "final_loss": log[-1]["loss"] if log else None,
            **({"init": init_record(cfg.init)} if cfg.init else {}),
            **({"draft_gflop_per_clip": round(draft_flops(draft, model.config) / 1e9, 3)} if draft else {})}


def draft_flops(draft: ConvLSTM, config: DiTConfig) -> float:
    """FLOPs of drafting one training clip: the ConvLSTM's future and the VAE's encoding of that future."""
    from .peers import flop_counter
    clip = torch.rand(1, 1, config.frames, config.size, config.size)
    frames = config.frames // latent_space(config.vae)[1]  # T'
    with flop_counter() as counter:
        VideoCodec(config.vae).encode_frames(draft_clips(draft, clip), torch.arange(frames) >= frames // 2)
    return counter.get_total_flops()


def plot_loss(log_path: Path, path: Path) -> Path:
    """The loss curve as a PNG (a bare Figure: no pyplot state, whatever the backend)."""
    from matplotlib.figure import Figure

    log = [json.loads(line) for line in log_path.read_text().splitlines()]
    fig = Figure(figsize=(5, 3), layout="tight")
    ax = fig.subplots()
    ax.plot([r["step"] for r in log], [r["loss"] for r in log])
    ax.set(xlabel="step", ylabel="loss", yscale="log", title=f"training loss ({log_path.parent.name})")
    fig.savefig(path, dpi=100)
    return path


def digit_agreement(model: DiT, codec: VideoCodec, objective: str, per_digit: int = 5, guidance: float = 4.0,
                    steps: int = 25, seed: int = 0) -> float:
    """Share of one-digit prompts ("0" ... "9", ``per_digit`` clips each) whose clip the evaluator reads as that digit."""
    prompts = [str(d) for d in range(10) for _ in range(per_digit)]
    videos = generate(model, codec, prompts, objective, guidance=guidance, steps=steps, seed=seed)
    return prompt_agreement(load_evaluator(), videos[:, 0].cpu(), [[int(p)] for p in prompts])


def export_weights(ckpt_path: Path, path: str | Path, summary: dict, device: torch.device | str = "cpu") -> Path:
    """Write the EMA weights alone (what sampling needs) and a manifest beside them, with the share of
    one-digit samples the evaluator reads as the prompted digit (5 per digit, guidance 4, 25 steps, on ``device``)."""
    state = load_checkpoint(ckpt_path, kind="training", keys=CKPT_KEYS,
                            optional=OPTIONAL_KEYS)
    path = Path(path)
    save_checkpoint({"config": state["config"], "train": state["train"], "ema": state["ema"]}, path)
    model, train_config = load_dit(path, device)
    agreement = digit_agreement(model, VideoCodec(model.config.vae, device), objective_of(train_config))
    write_manifest({**summary, "single_digit_agreement": {"value": agreement, "clips": 50, "guidance": 4.0,
                                                          "steps": 25, "seed": 0},
                    "weights_bytes": path.stat().st_size}, path.with_suffix(".json"))
    return path

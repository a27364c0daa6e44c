"""Sora's capabilities from one model (``python -m minisora sample`` with --image, --extend, --loop, --connect,
--edit, --window): each is text-to-video with some frames given (``diffusion.KnownFrames``),
or started from a noised clip (SDEdit). Nothing here is trained for it; the masks do the work.

    image-to-video    given: frame 0, held for one frame of tubelets    -> the frames after it
    extend forward    given: the first k frames                         -> the frames after them
    extend backward   given: the last k frames                          -> the frames before them
    connect A -> B    given: A's last k frames and B's first k frames   -> the frames between
    loop              connect a clip's end to its own start             -> the clip and the frames back to frame 0
    edit (SDEdit)     the clip noised to time s, denoised with a new prompt (Meng et al. 2021, arXiv 2108.01073)
    long video        extend forward window by window, each given the last frames of the one before

Given frames come in whole frames of tubelets (``DiTConfig.tubelet_frames``: 2 pixel frames with the frame VAE and a
temporal patch of 2), because the DiT gives one noise time to each.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from .captions import expand_prompt
from .config import check_device, check_finite, check_positive, option
from .convlstm import ConvLSTM, draft_clips, draft_of
from .diffusion import check_guidance_interval, check_guidance_ramp, check_guidance_rescale
from .sample import DIT_PATH, VideoCodec, generate, load_dit, objective_of


def image_to_video(model, codec, images: torch.Tensor, prompts: list[str | None], frames: int | None = None,
                   **kw) -> torch.Tensor:
    """Animate ``images`` (B, H, W): each is frame 0, held for one frame of tubelets as stills were in training;
    returns (B, 1, frames, H, W)."""
    if images.ndim != 3:
        raise ValueError(f"expected images (B, H, W), got {tuple(images.shape)}")
    frames = frames or model.config.frames
    context = images[:, None, None].expand(-1, 1, frames, -1, -1)  # (B, 1, T, H, W): only the first tubelet is read
    return generate(model, codec, prompts, context=context, known=torch.arange(frames) < model.config.tubelet_frames,
                    **kw)


def extend(model, codec, clips: torch.Tensor, prompts: list[str | None], frames: int, direction: str = "forward",
           draft: ConvLSTM | None = None, **kw) -> torch.Tensor:
    """Clips (B, 1, k, H, W) -> (B, 1, frames, H, W) that begin with them (forward) or end with them (backward):
    the same model and sampler, only the mask differs. A model trained with ``--draft`` extends forward from its
    ``draft`` model's prediction of the new frames plus noise, as it was trained to."""
    if direction not in ("forward", "backward"):
        raise ValueError(f"direction must be 'forward' or 'backward', got {direction!r}")
    k = clips.shape[2]
    if frames <= k:
        raise ValueError(f"extending {k} given frames needs frames > {k}, got {frames}")
    blank = clips.new_zeros(*clips.shape[:2], frames - k, *clips.shape[3:])  # (B, 1, frames - k, H, W)
    forward = direction == "forward"
    context = torch.cat([clips, blank] if forward else [blank, clips], dim=2)  # (B, 1, frames, H, W)
    known = torch.arange(frames) < k if forward else torch.arange(frames) >= frames - k
    if draft is not None and forward:
        kw["draft"] = draft_clips(draft, context.to(next(draft.parameters()).device), k)
    return generate(model, codec, prompts, context=context, known=known, **kw)


def connect(model, codec, start: torch.Tensor, end: torch.Tensor, prompts: list[str | None], gap: int,
            **kw) -> torch.Tensor:
    """``start`` (B, 1, k, H, W), ``gap`` new frames, ``end`` (B, 1, k', H, W): the transition between two clips."""
    blank = start.new_zeros(*start.shape[:2], gap, *start.shape[3:])  # (B, 1, gap, H, W)
    context = torch.cat([start, blank, end], dim=2)  # (B, 1, k + gap + k', H, W)
    i = torch.arange(context.shape[2])
    return generate(model, codec, prompts, context=context, known=(i < start.shape[2]) | (i >= len(i) - end.shape[2]),
                    **kw)


def loop(model, codec, clips: torch.Tensor, prompts: list[str | None], gap: int, given: int, **kw) -> torch.Tensor:
    """Clips (B, 1, T, H, W) -> (B, 1, T + gap, H, W) that play in a loop: the clip, then ``gap`` frames generated
    between its last ``given`` frames and its first ``given``, so frame T + gap - 1 leads into frame 0."""
    bridge = connect(model, codec, clips[:, :, -given:], clips[:, :, :given], prompts, gap, **kw)
    return torch.cat([clips, bridge[:, :, given:given + gap].to(clips)], dim=2)


def long_video(model, codec, prompts: list[str | None], frames: int, window: int | None = None, given: int = 10,
               seed: int = 0, progress: bool = False, **kw) -> torch.Tensor:
    """(B, 1, frames, H, W) by windows: the first ``window`` frames from the prompt, then each next window given the
    last ``given`` frames so far (autoregressive extension); ``kw`` go to every window (e.g. ``context_noise``)."""
    window = window or model.config.frames
    if not 0 < given < window:
        raise ValueError(f"each window must give fewer frames than it holds: given={given}, window={window}")
    video = generate(model, codec, prompts, frames=window, seed=seed, **kw)  # (B, 1, window, H, W)
    windows = range(1, -(-(frames - window) // (window - given)) + 1)
    for w in tqdm(windows, desc="windows", unit="window", disable=not progress, leave=False):
        new = extend(model, codec, video[:, :, -given:], prompts, window, seed=seed + w, **kw)
        video = torch.cat([video, new[:, :, given:]], dim=2)  # (B, 1, T + window - given, H, W)
    return video[:, :, :frames]


# ----------------------------------------------------------------------------- clips in and out of files

def load_clips(path: str | Path) -> torch.Tensor:
    """Clips (N, T, H, W) in [0, 1] from ``.npy`` ((T, H, W), or (T, N, H, W) as ``mnist_test_seq.npy`` and
    ``sample --out X.npy``; uint8 0-255 or float 0-1), a GIF (one clip; grey levels) or a PNG (one frame)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no clip file {path}")
    if path.suffix == ".npy":
        array = np.load(path, allow_pickle=False)
        if array.ndim not in (3, 4):
            raise ValueError(f"{path}: expected clips (T, H, W) or (T, N, H, W), got shape {array.shape}")
        array = array[:, None] if array.ndim == 3 else array  # (T, N, H, W)
        video = torch.from_numpy(array.astype(np.float32) / (255 if array.dtype == np.uint8 else 1))
        return video.transpose(0, 1).clamp(0, 1)  # (N, T, H, W)
    if path.suffix.lower() not in (".gif", ".png"):
        raise ValueError(f"{path}: expected a .npy, .gif or .png clip, got {path.suffix!r}")
    with Image.open(path) as im:
        frames = []
        for i in range(getattr(im, "n_frames", 1)):
            im.seek(i)
            frames.append(np.asarray(im.convert("L"), dtype=np.float32) / 255)
    return torch.from_numpy(np.stack(frames))[None]  # (1, T, H, W)


def save_clips(videos: torch.Tensor, path: str | Path) -> Path:
    """Videos (N, T, H, W) in [0, 1] -> ``.npy``, uint8 (T, N, H, W) like ``mnist_test_seq.npy``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, (videos.clamp(0, 1) * 255).round().to(torch.uint8).transpose(0, 1).numpy())
    return path


# ----------------------------------------------------------------------------- python -m minisora sample

@dataclass
class SampleConfig:
    """Every setting of ``python -m minisora sample``, written once. With none of --image, --extend, --loop,
    --connect, --edit, it is text-to-video."""

    prompt: tuple[str, ...] = option(("3",), "one or more prompts (one clip each; one prompt is used for every "
                                             "input clip)")
    ckpt: str = option(str(DIT_PATH), "exported weights or a run's ckpt.pt (its EMA weights)")
    out: str = option("outputs/sample.gif", "file to write: .gif (clips side by side) or .npy (uint8, (T, N, H, W) "
                                            "like mnist_test_seq.npy; it can be an --input again)")
    guidance: float = option(4.0, "classifier-free guidance scale (1: none)")
    guidance_interval: tuple[float, float] = option((0.0, 1.0), "guide by the prompt only at noise levels in [LO, "
                                                                "HI] (1: pure noise), elsewhere the prompt alone at "
                                                                "half the cost; 0.7 1 nearly halves the stutter "
                                                                "(README, 'Why the digit stutters')",
                                                    metavar=("LO", "HI"))
    guidance_rescale: float = option(0.0, "CFG-rescale weight phi in [0, 1] (Lin et al. 2024): the guided output "
                                          "scaled back to the spread of the prompt's alone; 0.7 thins the too bold "
                                          "digits of extensions and long videos (docs/recipe.md). 0: plain guidance")
    guidance_ramp: float = option(0.0, "with given frames: the text guidance rises from about none beside them "
                                       "to --guidance this many frames away, where the prompt must hold the digit; "
                                       "8 brought extension seams near a real clip's (docs/recipe.md). 0: the same "
                                       "guidance on every frame", metavar="FRAMES")
    sampler: str | None = option(None, "default: euler for rectified-flow models, ddim for DDPM models",
                                 choices=("euler", "ddim", "ddpm"))
    steps: int = option(50, "sampler steps (the ddpm sampler always takes 1000; --edit takes the share below "
                            "--strength)")
    frames: int | None = option(None, "frames per clip (default: the training length, 20); with --extend: the "
                                      "window generated, --given frames included (default: 2x --given)")
    height: int | None = option(None, "height in px (default: the training size, 64, or the input's)")
    width: int | None = option(None, "width in px (default: the training size, 64, or the input's)")
    expand: bool = option(False, "prompt expansion: turn short prompts ('3 and 7') into descriptive captions first")
    image: str | None = option(None, "image-to-video: animate this frame (a PNG, or the first frame of a GIF or "
                                     ".npy clip)", metavar="FILE")
    input: str | None = option(None, "the clip (.npy or .gif) for --extend and --loop", metavar="CLIP")
    extend: str | None = option(None, "extend --input forwards (new frames after it, from its last --given) or "
                                      "backwards (before it, from its first --given); writes the input and the new "
                                      "frames", choices=("forward", "backward"))
    loop: bool = option(False, "a seamless loop: --input (or a clip made from the prompt), then --gap frames "
                               "generated from its last --given frames back to its first --given")
    connect: tuple[str, str] | None = option(None, "connect two clips: all of A, --gap new frames generated from "
                                                   "A's last --given frames to B's first --given, all of B",
                                             metavar=("A", "B"))
    edit: str | None = option(None, "video-to-video (SDEdit): noise this clip to --strength, then denoise it with "
                                    "the prompt", metavar="CLIP")
    strength: float = option(0.6, "--edit: the time the clip is noised to, in (0, 1]; 1 keeps nothing of it")
    given: int = option(10, "frames given from a clip: --extend, --loop and --connect, and from one window to the "
                            "next with --window (a multiple of the model's tubelet, 2 frames)")
    gap: int = option(10, "--loop and --connect: new frames between the given ones")
    window: int | None = option(None, "long videos: make --frames window by window, each this many frames, the "
                                      "first --given of each given from the window before")
    context_noise: float = option(0.0, "show given frames noised to this time in [0, 1) (rectified flow), a "
                                       "mitigation for long videos")
    frame_guidance: float = option(1.0, "guidance towards the given frames of --image, --extend, --loop, --connect "
                                        "and --window: the model with them against the model told nothing of them "
                                        "(rectified flow), at twice the cost; 2 gave steadier speeds and straighter "
                                        "seams (README); 1: off")
    draft_noise: float | None = option(None, "--extend forward with a model trained with a draft (train --draft): the "
                                             "noise sigma around the draft, x_1 = z_draft + sigma eps (default: the "
                                             "one the run trained with); lower: single samples nearer the draft "
                                             "and the truth, their mean farther (README)", metavar="SIGMA")
    seed: int = option(0, "seed of the initial noise")
    device: str = option("cpu", "torch device, e.g. cpu or cuda")

    def __post_init__(self):
        if not self.prompt:
            raise ValueError("give at least one prompt")
        check_positive(self, "steps", "frames", "height", "width", "given", "gap", "window")
        check_finite(self, "guidance", at_least=0.0)
        self.guidance_interval = check_guidance_interval(self.guidance_interval)
        self.guidance_rescale = check_guidance_rescale(self.guidance_rescale)
        self.guidance_ramp = check_guidance_ramp(self.guidance_ramp)
        check_device(self.device)
        modes = [name for name in ("image", "extend", "loop", "connect", "edit", "window") if getattr(self, name)]
        if len(modes) > 1:
            raise ValueError(f"choose one of --image, --extend, --loop, --connect, --edit, --window; got {modes}")
        if self.extend and not self.input:
            raise ValueError("--extend needs the clip to extend: --input CLIP")
        if self.input and not (self.extend or self.loop):
            raise ValueError("--input is the clip of --extend or --loop; for --edit give the clip as --edit CLIP")
        check_finite(self, "frame_guidance", at_least=0.0)
        check_finite(self, "draft_noise", above=0.0)
        if self.draft_noise is not None and self.extend != "forward":
            raise ValueError(f"--draft-noise {self.draft_noise} is the noise around a draft of the frames after a "
                             f"clip: use it with --extend forward")
        for name, off in (("frame_guidance", 1.0), ("guidance_ramp", 0.0)):
            if getattr(self, name) != off and not (set(modes) - {"edit"}):
                raise ValueError(f"--{name.replace('_', '-')} {getattr(self, name)} acts on given frames: use it with "
                                 f"--image, --extend, --loop, --connect or --window")
        if not 0 < self.strength <= 1 or not 0 <= self.context_noise < 1:
            raise ValueError(f"strength must be in (0, 1] and context_noise in [0, 1), got {self.strength} and "
                             f"{self.context_noise}")
        if Path(self.out).suffix not in (".gif", ".npy"):
            raise ValueError(f"out must end in .gif or .npy, got {self.out!r}")


def matched(clips: torch.Tensor, prompts: list[str | None]) -> tuple[torch.Tensor, list[str | None]]:
    """Clips (N, T, H, W) and prompts paired one to one: one clip serves every prompt, one prompt every clip."""
    if len(clips) == 1:
        clips = clips.expand(len(prompts), -1, -1, -1)
    elif len(prompts) == 1:
        prompts = prompts * len(clips)
    if len(clips) != len(prompts):
        raise ValueError(f"{len(clips)} input clips and {len(prompts)} prompts: give one prompt, or one per clip")
    return clips, prompts


def sample_from_checkpoint(cfg: SampleConfig, progress: bool = True) -> tuple[torch.Tensor, list[str]]:
    """Load a checkpoint and its VAE, expand the prompts if asked, and generate what the flags ask for; returns
    (videos (B, 1, T, H, W), prompts used)."""
    model, train = load_dit(cfg.ckpt, cfg.device)
    prompts = [expand_prompt(p, seed=i) if cfg.expand else p for i, p in enumerate(cfg.prompt)]
    codec = VideoCodec(model.config.vae, cfg.device)
    kw = dict(objective=objective_of(train, guidance_interval=cfg.guidance_interval,
                                     guidance_rescale=cfg.guidance_rescale), guidance=cfg.guidance,
              steps=None if cfg.sampler == "ddpm" else cfg.steps, sampler=cfg.sampler, seed=cfg.seed, progress=progress,
              context_noise=cfg.context_noise, frame_guidance=cfg.frame_guidance, guidance_ramp=cfg.guidance_ramp)
    size = dict(frames=cfg.frames, height=cfg.height, width=cfg.width)
    if cfg.image:
        images, prompts = matched(load_clips(cfg.image)[:, :1], prompts)
        return image_to_video(model, codec, images[:, 0], prompts, cfg.frames, **kw), prompts
    if cfg.extend:  # the whole input, and the new frames after (or before) it
        clips, prompts = matched(load_clips(cfg.input), prompts)
        clips, k = clips[:, None], cfg.given  # (N, 1, T, H, W)
        forward = cfg.extend == "forward"
        draft, draft_noise = draft_of(train, cfg.device, noise=cfg.draft_noise)  # the run's --draft, if any
        window = extend(model, codec, clips[:, :, -k:] if forward else clips[:, :, :k], prompts,
                        cfg.frames or 2 * k, cfg.extend, draft, draft_noise=draft_noise, **kw).cpu()
        return torch.cat([clips, window[:, :, k:]] if forward else [window[:, :, :-k], clips], dim=2), prompts
    if cfg.loop:
        clips = (load_clips(cfg.input) if cfg.input else
                 generate(model, codec, prompts, **size, **kw)[:, 0].cpu())  # (N, T, H, W)
        clips, prompts = matched(clips, prompts)
        return loop(model, codec, clips[:, None], prompts, cfg.gap, cfg.given, **kw), prompts
    if cfg.connect:
        a, b = load_clips(cfg.connect[0]), load_clips(cfg.connect[1])
        if a.shape[-2:] != b.shape[-2:]:
            raise ValueError(f"clips to connect must have one size, got {tuple(a.shape[-2:])} and {tuple(b.shape[-2:])}")
        a, prompts = matched(a, prompts)
        b, _ = matched(b, prompts)
        a, b, k = a[:, None], b[:, None], cfg.given  # (N, 1, T, H, W)
        bridge = connect(model, codec, a[:, :, -k:], b[:, :, :k], prompts, cfg.gap, **kw).cpu()
        return torch.cat([a, bridge[:, :, k:k + cfg.gap], b], dim=2), prompts  # all of A, the transition, all of B
    if cfg.edit:
        clips, prompts = matched(load_clips(cfg.edit), prompts)
        return generate(model, codec, prompts, init=clips[:, None], strength=cfg.strength, **kw), prompts
    if cfg.window:
        frames = cfg.frames or model.config.frames
        return long_video(model, codec, prompts, frames, cfg.window, cfg.given, height=cfg.height, width=cfg.width,
                          **kw), prompts
    return generate(model, codec, prompts, **size, **kw), prompts

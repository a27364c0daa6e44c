"""minisora's DiT beside what a learner would pick instead: diffusers' ``LatteTransformer3DModel``.

Latte (Ma et al. 2024, arXiv 2401.03048) is a factorized spacetime DiT, like minisora's ``attention="factorized"``:
blocks alternate spatial self-attention (with cross-attention to the text) within each frame and temporal
self-attention at each position. diffusers builds it from PixArt-alpha's parts (adaLN-single, a caption
projection, learned-free sin-cos positions). ``LattePeer`` wraps it so that it takes minisora's inputs and
plugs into its sampler, bench and eval:

    tubelets  Latte patches each latent frame (p x p); minisora's (pt, p, p) tubelets are matched by folding pt
              latent frames into channels, (B, C, T, H, W) -> (B, C pt, T / pt, H, W): the same tokens, each
              holding the same values
    text      minisora's own text encoder (the same module as the DiT's); Latte projects its tokens
    time      Latte takes one timestep per clip: rectified-flow time t in [0, 1] goes in as 1000 t

``equal_configs`` gives the two models the same width, depth (Latte counts a spatial + temporal pair as one
layer), heads, tubelets, text encoder and token count. What still differs is each design's own: minisora has
cross-attention in every block and a per-block adaLN projection; Latte has adaLN-single (one projection shared
by all blocks) and cross-attention in spatial blocks only.

Only ``python -m minisora bench peers``, ``train --arch latte`` (the peer trained by minisora's own trainer, for
quality at equal compute: scripts/peers_quality.py) and their tests import this module (``import minisora`` does
not import diffusers).
"""

from __future__ import annotations

import ast
import inspect
import math
import multiprocessing
import sys
import textwrap
from dataclasses import replace

import torch
from einops import rearrange
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm

from .diffusion import RectifiedFlow
from .dit import DiT, DiTConfig, get_preset, parameter_count, tokens_per_clip
from .text import TextEncoder, Tokenizer
from .timing import seconds_per_step

try:
    from diffusers import LatteTransformer3DModel
except ImportError as e:  # a user's own environment without the benchmarks' dependencies
    raise ImportError("minisora.peers needs diffusers (pip install -r requirements.txt)") from e


def equal_configs(preset: str = "tiny") -> DiTConfig:
    """The DiT config both models are built from: the preset, factorized attention, sin-cos positions and no
    convolution (Latte has neither RoPE nor the local conv)."""
    config = get_preset(preset, attention="factorized", rope=False, conv=False, skips=False)
    if config.depth % 2:
        raise ValueError(f"Latte pairs a spatial and a temporal block per layer: depth must be even, got {config.depth}")
    return config


class LattePeer(nn.Module):
    """model(z_t (B, C, T, H, W), time (B,), ids (B, L)) -> prediction (B, C, T, H, W), like ``dit.DiT``."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = config
        pt, ph, pw = config.patch
        if ph != pw:
            raise ValueError(f"Latte's patches are square, got patch {config.patch}")
        t, h, _ = tokens_per_clip(config)  # the patch grid: frames of tubelets, patches per side
        self.tokenizer = Tokenizer(config.max_words)
        self.text = TextEncoder(len(self.tokenizer), config.text_dim, config.text_depth, max_len=config.max_words)
        self.latte = LatteTransformer3DModel(
            num_attention_heads=config.heads, attention_head_dim=config.dim // config.heads,
            in_channels=config.in_channels * pt, out_channels=config.in_channels * pt, num_layers=config.depth // 2,
            cross_attention_dim=config.dim, attention_bias=True, sample_size=h * ph, patch_size=ph,
            activation_fn="gelu-approximate", norm_type="ada_norm_single", norm_elementwise_affine=False,
            norm_eps=1e-6, caption_channels=config.text_dim, video_length=t)

    def null_ids(self, batch: int) -> torch.Tensor:
        return self.tokenizer.null(batch)

    def forward(self, x: torch.Tensor, time: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        if time.ndim != 1:
            raise ValueError(f"Latte takes one time per clip (B,), got {tuple(time.shape)}: no given frames")
        pt = self.config.patch[0]
        text, words, _ = self.text(ids)  # (B, L, Dt), (B, L)
        x = rearrange(x, "b c (t pt) h w -> b (c pt) t h w", pt=pt)  # a tubelet's frames become channels
        mask = words.to(x.dtype).repeat_interleave(x.shape[2], dim=0)  # (B t, L): Latte's spatial blocks see each
        # frame as a clip, and it repeats the text per frame but not its padding mask
        out = self.latte(x, timestep=time * 1000, encoder_hidden_states=text, encoder_attention_mask=mask,
                         return_dict=False)[0]  # (B, C pt, T / pt, H, W)
        return rearrange(out, "b (c pt) t h w -> b c (t pt) h w", pt=pt)


def build_pair(preset: str = "tiny") -> tuple[DiT, LattePeer]:
    """minisora's DiT and the Latte peer at equal shapes, the peer's text encoder a copy of the DiT's."""
    config = equal_configs(preset)
    ours, peer = DiT(config), LattePeer(config)
    peer.text.load_state_dict(ours.text.state_dict())
    return ours, peer


# ---------------------------------------------------------------------------------------------
# The benchmark: python -m minisora bench peers
# ---------------------------------------------------------------------------------------------

def code_lines(model: nn.Module) -> int:
    """Logical lines of code that define a model: every class it is built of (modules and attention processors)
    from minisora or diffusers, and every function or class of those libraries their methods name, recursively
    (base classes such as diffusers' loading machinery are not the model and are left out); docstrings
    and comments left out, one line per statement (``ast.unparse``), so both code styles are counted alike."""
    ours = ("minisora", "diffusers")
    todo = {type(m) for m in model.modules()} | {type(m.processor) for m in model.modules() if hasattr(m, "processor")}
    seen, lines = set(), 0
    while todo:
        obj = todo.pop()
        if obj in seen or not getattr(obj, "__module__", "").startswith(ours):
            continue
        seen.add(obj)
        tree = ast.parse(textwrap.dedent(inspect.getsource(obj)))
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(
                    getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]  # drop the docstring
        lines += len(ast.unparse(tree).splitlines())
        names = sys.modules[obj.__module__].__dict__
        used = [n for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) for n in ast.walk(f)]  # not bases
        todo |= {names[n.id] for n in used if isinstance(n, ast.Name) and n.id in names
                 and (inspect.isfunction(names[n.id]) or inspect.isclass(names[n.id]))}
    return lines


def peak_memory_mb(device: str) -> float | None:
    """Peak memory since the last ``reset_peak(device)``: allocated on CUDA, resident (VmHWM) on Linux CPUs."""
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        status = open("/proc/self/status").read()
    except OSError:
        return None
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 1024


def reset_peak(device: str) -> float | None:
    """Start a new peak-memory window; returns the memory in use now (MB), the baseline of the window."""
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / 2**20
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # Linux: reset the peak resident set size to the current one
    except OSError:
        return None
    return peak_memory_mb(device)


def inputs(config: DiTConfig, tokenizer: Tokenizer, batch: int, device: str):
    """The latents, times and prompts both models get (seeded)."""
    g = torch.Generator().manual_seed(0)
    latent = [n * p for n, p in zip(tokens_per_clip(config), config.patch)]  # (T', H', W')
    z = torch.randn(batch, config.in_channels, *latent, generator=g)
    prompts = (["3 and 7", "a 3 starts at the top left and moves down and right."] * batch)[:batch]
    return z.to(device), torch.rand(batch, generator=g).to(device), tokenizer.batch(prompts).to(device)


def conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                        _output_padding, _groups, output_mask, **kwargs) -> int:
    """FLOPs of a convolution's backward: each gradient asked for (input, weight) costs what the forward does,
    2 x (output elements of a conv, input elements of a transposed one) x (weights each of them meets, w[1:]).
    Torch 2.14's FlopCounterMode counts the weight gradient of a grouped convolution as if it were dense, which
    makes minisora's depthwise 3x3x3 conv (128 groups) 128 times too dear; this formula counts groups."""
    forward = 2 * math.prod(x_shape if transposed else grad_out_shape) * math.prod(w_shape[1:])
    return forward * (int(output_mask[0]) + int(output_mask[1]))


def flop_counter() -> FlopCounterMode:
    """torch's FlopCounterMode (matmuls, convolutions, attention) with grouped convolutions' backward fixed."""
    return FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: conv_backward_flops})


def counted_step_flops(model: nn.Module, batch: int, p_image: float) -> float:
    """Expected FLOPs of one training step, the loss's forward and backward, counted by torch's FlopCounterMode on
    the bench's latents and prompts (``inputs``): a share ``1 - p_image`` of steps trains ``batch`` clips, the
    rest as many stills as the clips' frames of tubelets (a still is one frame of tubelets), as the trainer does.
    One counter for both models, so their training budgets compare."""

    def count(n: int, frames: int) -> float:
        z, time, ids = inputs(replace(model.config, frames=frames), model.tokenizer, n, "cpu")
        with flop_counter() as counter:
            RectifiedFlow().loss(model, z, ids, t=time).backward()
        model.zero_grad(set_to_none=True)
        return counter.get_total_flops()

    clip = count(batch, model.config.frames)
    if not p_image:
        return clip
    stills = batch * tokens_per_clip(model.config)[0]
    return (1 - p_image) * clip + p_image * count(stills, model.config.tubelet_frames)


def training_step(preset: str, which: int, precision: str, batch: int, steps: int, device: str) -> dict:
    """The median training step (forward, backward, AdamW) of model ``which`` (0 minisora, 1 the peer) and the peak
    memory it adds; run in a fresh process by ``bench_peers``, so the allocator of one measurement does not hide
    the next one's memory."""
    torch.manual_seed(0)
    model = build_pair(preset)[which].to(device)
    z, _, ids = inputs(model.config, model.tokenizer, batch, device)
    opt, objective = torch.optim.AdamW(model.parameters(), lr=1e-4), RectifiedFlow()

    def step():
        with torch.autocast(torch.device(device).type, torch.bfloat16, enabled=precision == "bf16"):
            loss = objective.loss(model, z, ids)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    base = reset_peak(device)
    seconds = seconds_per_step(step, steps, device)
    peak = peak_memory_mb(device)
    return {"step_s": round(seconds, 4), "clips_per_s": round(batch / seconds, 2),
            "peak_mb": None if base is None else round(peak - base, 1)}


def bench_peers(preset: str = "tiny", batch: int = 8, steps: int = 5, device: str = "cpu",
                precisions=("fp32", "bf16"), progress: bool = True) -> dict:
    """Both models of ``build_pair`` on the same latents, times and prompts: parameters, forward FLOPs per clip
    (counted by torch's FlopCounterMode), lines of code, and per precision the median training step and the
    peak memory it adds (each measured in a fresh process)."""
    models = build_pair(preset)
    rows = []
    with multiprocessing.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        for which, (name, model) in enumerate(tqdm(list(zip(("minisora", "diffusers Latte"), models)),
                                                   desc="bench peers", disable=not progress)):
            with torch.no_grad(), flop_counter() as counter:
                model(*inputs(model.config, model.tokenizer, batch, "cpu"))
            row = {"model": name, "parameters": parameter_count(model), "code_lines": code_lines(model),
                   "gflop_per_clip": round(counter.get_total_flops() / batch / 1e9, 3)}
            for precision in precisions:
                row[precision] = pool.apply(training_step, (preset, which, precision, batch, steps, device))
            rows.append(row)
    a, b = rows
    ratios = {"parameters": a["parameters"] / b["parameters"], "code_lines": a["code_lines"] / b["code_lines"],
              "gflop_per_clip": a["gflop_per_clip"] / b["gflop_per_clip"],
              **{f"{p}_step_time": a[p]["step_s"] / b[p]["step_s"] for p in precisions},
              **{f"{p}_peak_memory": a[p]["peak_mb"] / b[p]["peak_mb"] for p in precisions
                 if a[p]["peak_mb"] and b[p]["peak_mb"]}}
    return {"preset": preset, "device": device, "threads": torch.get_num_threads(), "batch": batch, "steps": steps,
            "config": {k: getattr(models[0].config, k) for k in ("dim", "depth", "heads", "patch", "attention")},
            "rows": rows, "ratios_minisora_over_peer": {k: round(v, 3) for k, v in ratios.items()}}


def format_peers(result: dict) -> str:
    """The benchmark as a Markdown table: both models and the ratio minisora / peer."""
    c, q = result["config"], result["ratios_minisora_over_peer"]
    precisions = [p for p in ("fp32", "bf16") if p in result["rows"][0]]
    mb = lambda v: "n/a" if v is None else f"{v:.0f}"
    lines = [f"minisora vs diffusers' Latte at equal shapes ({result['preset']}: width {c['dim']}, {c['depth']} blocks, "
             f"{c['heads']} heads, tubelets {tuple(c['patch'])}), batch {result['batch']} on {result['device']} "
             f"({result['threads']} threads), median of {result['steps']} training steps", "",
             "| model | params | lines of code | GFLOP/clip | " + " | ".join(f"{p} step s | {p} peak MB"
                                                                        for p in precisions) + " |",
             "|---|---|---|---|" + "---|---|" * len(precisions)]
    for r in result["rows"]:
        cells = [f"{r['parameters'] / 1e6:.2f}M", str(r["code_lines"]), f"{r['gflop_per_clip']:.3f}"]
        cells += [v for p in precisions for v in (f"{r[p]['step_s']:.3f}", mb(r[p]["peak_mb"]))]
        lines.append(f"| {r['model']} | " + " | ".join(cells) + " |")
    ratio = lambda k: f"{q[k]:.2f}" if k in q else "n/a"
    cells = [ratio("parameters"), ratio("code_lines"), ratio("gflop_per_clip")]
    cells += [v for p in precisions for v in (ratio(f"{p}_step_time"), ratio(f"{p}_peak_memory"))]
    lines.append("| ratio minisora / peer | " + " | ".join(cells) + " |")
    return "\n".join(lines)

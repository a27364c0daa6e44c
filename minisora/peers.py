"""minisora's DiT beside what a learner would pick instead: diffusers' video transformers, Latte and Wan.

Two designs, each wrapped (``Peer``) so that it takes minisora's inputs and plugs into its trainer, sampler, bench
and eval, and each set against the minisora DiT that has the same shape (``equal_configs``):

    LattePeer  ``LatteTransformer3DModel`` (Latte, Ma et al. 2024, arXiv 2401.03048): factorized spacetime
               attention, like minisora's ``attention="factorized"``: blocks alternate spatial self-attention (with
               cross-attention to the text) within each frame and temporal self-attention at each position, built
               from PixArt-alpha's parts (adaLN-single, a caption projection, sin-cos positions). Depth: a spatial
               + temporal pair is one Latte layer. Latte patches each latent frame (p x p); minisora's (pt, p, p)
               tubelets are matched by folding pt latent frames into channels, (B, C, T, H, W) ->
               (B, C pt, T / pt, H, W): the same tokens, each holding the same values.
    WanPeer    ``WanTransformer3DModel`` (Wan 2.1, Wan Team 2025, arXiv 2503.20314): full spacetime attention with
               3D RoPE and QK-norm, cross-attention in every block, adaLN from one shared time projection plus a
               learned table per block, like minisora's ``attention="full", rope=True``; it takes (pt, p, p)
               tubelets itself. Wan's pipeline pads prompts with zero vectors and passes no mask; so does the peer.

Both use minisora's own text encoder (the same module as the DiT's) and take one time per clip: rectified-flow
time t in [0, 1] goes in as 1000 t, so they train and sample text-to-video but not with given frames. What still
differs is each design's own, which is what the comparison measures.

Only ``python -m minisora bench peers``, ``train --arch latte|wan`` (a peer trained by minisora's own trainer, for
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
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count
from tqdm.auto import tqdm

from .diffusion import RectifiedFlow
from .dit import DiT, DiTConfig, get_preset, parameter_count, tokens_per_clip
from .text import TextEncoder, Tokenizer
from .timing import seconds_per_step

try:
    from diffusers import LatteTransformer3DModel, WanTransformer3DModel
except ImportError as e:  # a user's own environment without the benchmarks' dependencies
    raise ImportError("minisora.peers needs diffusers (pip install -r requirements.txt)") from e


class Peer(nn.Module):
    """model(z_t (B, C, T, H, W), time (B,), ids (B, L)) -> prediction (B, C, T, H, W), like ``dit.DiT``: minisora's
    tokenizer and text encoder in front of a diffusers transformer. ``requires``: the settings under which minisora's
    DiT has the peer's shape, and which a run that trains the peer must have (``train --arch`` checks them)."""

    requires = dict(conv=False, skips=False, p_known=0.0, p_predict=0.0, draft_input=False, sizes="fixed",
                    repa=0.0)  # one time per clip (no given frames), one size, no draft

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = config
        self.tokenizer = Tokenizer(config.max_words)
        self.text = TextEncoder(len(self.tokenizer), config.text_dim, config.text_depth, max_len=config.max_words)

    def null_ids(self, batch: int) -> torch.Tensor:
        return self.tokenizer.null(batch)

    def encode(self, time: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(1000 t (B,), text tokens (B, L, Dt), word mask (B, L)), or an error for a time per frame."""
        if time.ndim != 1:
            raise ValueError(f"{type(self).__name__} takes one time per clip (B,), got {tuple(time.shape)}: no given "
                             f"frames")
        text, words, _ = self.text(ids)
        return time * 1000, text, words


class LattePeer(Peer):
    requires = {**Peer.requires, "attention": "factorized", "rope": False}

    def __init__(self, config: DiTConfig):
        super().__init__(config)
        pt, ph, pw = config.patch
        if ph != pw or config.depth % 2:
            raise ValueError(f"Latte's patches are square and it pairs a spatial and a temporal block per layer: "
                             f"got patch {config.patch}, depth {config.depth}")
        t, h, _ = tokens_per_clip(config)  # the patch grid: frames of tubelets, patches per side
        self.latte = LatteTransformer3DModel(
            num_attention_heads=config.heads, attention_head_dim=config.dim // config.heads,
            in_channels=config.in_channels * pt, out_channels=config.in_channels * pt, num_layers=config.depth // 2,
            cross_attention_dim=config.dim, attention_bias=True, sample_size=h * ph, patch_size=ph,
            activation_fn="gelu-approximate", norm_type="ada_norm_single", norm_elementwise_affine=False,
            norm_eps=1e-6, caption_channels=config.text_dim, video_length=t)

    def forward(self, x: torch.Tensor, time: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        time, text, words = self.encode(time, ids)
        pt = self.config.patch[0]
        x = rearrange(x, "b c (t pt) h w -> b (c pt) t h w", pt=pt)  # a tubelet's frames become channels
        mask = words.to(x.dtype).repeat_interleave(x.shape[2], dim=0)  # (B t, L): Latte's spatial blocks see each
        # frame as a clip, and it repeats the text per frame but not its padding mask
        out = self.latte(x, timestep=time, encoder_hidden_states=text, encoder_attention_mask=mask,
                         return_dict=False)[0]  # (B, C pt, T / pt, H, W)
        return rearrange(out, "b (c pt) t h w -> b c (t pt) h w", pt=pt)


class WanPeer(Peer):
    requires = {**Peer.requires, "attention": "full", "rope": True}

    def __init__(self, config: DiTConfig):
        super().__init__(config)
        self.wan = WanTransformer3DModel(
            patch_size=config.patch, num_attention_heads=config.heads, attention_head_dim=config.dim // config.heads,
            in_channels=config.in_channels, out_channels=config.in_channels, text_dim=config.text_dim,
            ffn_dim=round(config.mlp_ratio * config.dim), num_layers=config.depth, cross_attn_norm=True,
            qk_norm="rms_norm_across_heads", eps=1e-6)

    def forward(self, x: torch.Tensor, time: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        time, text, words = self.encode(time, ids)
        text = text * words[..., None].to(text.dtype)  # padding as zero vectors, as Wan's pipeline pads
        return self.wan(x, timestep=time, encoder_hidden_states=text, return_dict=False)[0]


PEERS = {"latte": LattePeer, "wan": WanPeer}
NAMES = {"latte": "diffusers Latte", "wan": "diffusers Wan"}


def equal_configs(preset: str = "tiny", peer: str = "latte") -> DiTConfig:
    """The DiT config minisora's model and the peer are built from: the preset, with the peer's attention and
    positions and without minisora's local convolution (neither peer has it)."""
    shape = {k: v for k, v in PEERS[peer].requires.items() if k in ("attention", "rope", "conv", "skips")}
    return get_preset(preset, **shape)


def build_pair(preset: str = "tiny", peer: str = "latte") -> tuple[DiT, Peer]:
    """minisora's DiT and a peer at equal shapes, the peer's text encoder a copy of the DiT's."""
    config = equal_configs(preset, peer)
    ours, other = DiT(config), PEERS[peer](config)
    other.text.load_state_dict(ours.text.state_dict())
    return ours, other


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


def cpu_attention_flops(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    """FLOPs of attention on the CPU, softmax(q k^T) v: torch 2.14's FlopCounterMode counts the GPU kernels of
    ``scaled_dot_product_attention`` but not the CPU's, which it would count as zero."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def cpu_attention_backward_flops(grad_out_shape, query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def flop_counter() -> FlopCounterMode:
    """torch's FlopCounterMode (matmuls, convolutions, attention), with grouped convolutions' backward and the CPU's
    attention counted."""
    aten = torch.ops.aten
    return FlopCounterMode(display=False, custom_mapping={
        aten.convolution_backward: conv_backward_flops,
        aten._scaled_dot_product_flash_attention_for_cpu: cpu_attention_flops,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: cpu_attention_backward_flops})


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


def training_step(preset: str, peer: str, which: int, precision: str, batch: int, steps: int, device: str) -> dict:
    """The median training step (forward, backward, AdamW) of model ``which`` of ``build_pair(preset, peer)``
    (0 minisora, 1 the peer) and the peak memory it adds; run in a fresh process by ``bench_peers``, so the
    allocator of one measurement does not hide the next one's memory."""
    torch.manual_seed(0)
    model = build_pair(preset, peer)[which].to(device)
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


def bench_pair(pool, preset: str, peer: str, batch: int, steps: int, device: str, precisions, progress: bool) -> dict:
    """minisora's DiT and one peer at equal shapes, on the same latents, times and prompts: parameters, forward FLOPs
    per clip (``flop_counter``), lines of code, and per precision the median training step and the peak memory it
    adds (each measured in a fresh process of ``pool``); the ratios minisora / peer."""
    models, rows = build_pair(preset, peer), []
    for which, (name, model) in enumerate(tqdm(list(zip(("minisora", NAMES[peer]), models)),
                                               desc=f"bench {peer}", disable=not progress)):
        with torch.no_grad(), flop_counter() as counter:
            model(*inputs(model.config, model.tokenizer, batch, "cpu"))
        row = {"model": name, "parameters": parameter_count(model), "code_lines": code_lines(model),
               "gflop_per_clip": round(counter.get_total_flops() / batch / 1e9, 3)}
        for precision in precisions:
            row[precision] = pool.apply(training_step, (preset, peer, which, precision, batch, steps, device))
        rows.append(row)
    a, b = rows
    ratios = {"parameters": a["parameters"] / b["parameters"], "code_lines": a["code_lines"] / b["code_lines"],
              "gflop_per_clip": a["gflop_per_clip"] / b["gflop_per_clip"],
              **{f"{p}_step_time": a[p]["step_s"] / b[p]["step_s"] for p in precisions},
              **{f"{p}_peak_memory": a[p]["peak_mb"] / b[p]["peak_mb"] for p in precisions
                 if a[p]["peak_mb"] and b[p]["peak_mb"]}}
    config = models[0].config
    return {"peer": peer, "config": {k: getattr(config, k) for k in ("dim", "depth", "heads", "patch", "attention",
                                                                     "rope")},
            "rows": rows, "ratios_minisora_over_peer": {k: round(v, 3) for k, v in ratios.items()}}


def bench_peers(preset: str = "tiny", batch: int = 8, steps: int = 5, device: str = "cpu",
                precisions=("fp32", "bf16"), peers=tuple(PEERS), progress: bool = True) -> dict:
    """``bench_pair`` for each peer: python -m minisora bench peers."""
    with multiprocessing.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        pairs = [bench_pair(pool, preset, peer, batch, steps, device, precisions, progress) for peer in peers]
    return {"preset": preset, "device": device, "threads": torch.get_num_threads(), "batch": batch, "steps": steps,
            "pairs": pairs}


def format_peers(result: dict) -> str:
    """The benchmark as a Markdown table: per peer, minisora's model, the peer and the ratio minisora / peer."""
    precisions = [p for p in ("fp32", "bf16") if p in result["pairs"][0]["rows"][0]]
    mb = lambda v: "n/a" if v is None else f"{v:.0f}"
    lines = [f"minisora vs diffusers' video transformers at equal shapes ({result['preset']}), batch {result['batch']} "
             f"on {result['device']} ({result['threads']} threads), median of {result['steps']} training steps", "",
             "| model | attention, positions | params | lines of code | GFLOP/clip | " + " | ".join(
                 f"{p} step s | {p} peak MB" for p in precisions) + " |",
             "|---|---|---|---|---|" + "---|---|" * len(precisions)]
    for pair in result["pairs"]:
        c, q = pair["config"], pair["ratios_minisora_over_peer"]
        shape = f"{c['attention']}, {'RoPE' if c['rope'] else 'sin-cos'}"
        for r in pair["rows"]:
            cells = [shape, f"{r['parameters'] / 1e6:.2f}M", str(r["code_lines"]), f"{r['gflop_per_clip']:.3f}"]
            cells += [v for p in precisions for v in (f"{r[p]['step_s']:.3f}", mb(r[p]["peak_mb"]))]
            lines.append(f"| {r['model']} | " + " | ".join(cells) + " |")
        ratio = lambda k: f"{q[k]:.2f}" if k in q else "n/a"
        cells = ["", ratio("parameters"), ratio("code_lines"), ratio("gflop_per_clip")]
        cells += [v for p in precisions for v in (ratio(f"{p}_step_time"), ratio(f"{p}_peak_memory"))]
        lines.append(f"| **ratio minisora / {pair['peer']}** | " + " | ".join(cells) + " |")
    return "\n".join(lines)

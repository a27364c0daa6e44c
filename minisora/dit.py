"""The spacetime Diffusion Transformer (DiT, Peebles & Xie 2023, arXiv 2212.09748) for video.

    tokens   x = TubeletEmbed(z_t) + PE_3D(t, h, w)              z_t: (B, C, T, H, W) noisy latent video
    cond     c = TimestepEmbedding(time) + pooled text            (B, D), or (B, t, D) with a time per frame
    block    x = x + gate_1 * SelfAttn(modulate(LN(x), shift_1, scale_1))     adaLN-Zero
             x = x + CrossAttn(LN(x), text tokens)                             text conditioning
             x = x + gate_2 * MLP(modulate(LN(x), shift_2, scale_2))
    output   prediction = unpatchify(Linear(modulate(LN(x), shift, scale)))   zero-initialised

Self-attention is ``full`` (every token sees every token of its clip), ``factorized``: blocks
alternate between *spatial* attention (tokens of one frame) and *temporal* attention (tokens at one
position across frames), as in Latte and Open-Sora, or ``hybrid``: spatial blocks alternate with full
ones, so a moving object's tokens can see it in other frames where it is, not only where it was
(factorized blocks see other frames at one position only). A block's weights are the same in every
mode, so a factorized model can be turned hybrid and fine-tuned (``train --init``). Positions are
fixed 3D sin-cos, so the grid can change between training and sampling. Attention never crosses clips: a batch is a batch.

Options for small models (see ``docs/recipe.md`` for what each one measured):
``conv`` adds a depthwise 3x3x3 convolution over the token grid to each block,
x = x + DWConv(LN(x)) (zero-initialised), so every token sees its spacetime neighbours whatever the
attention mode; ``skips`` adds U-ViT's long skips (Bao et al. 2023, arXiv 2209.12152): the second
half's block i takes Linear([x; x_skip]) where x_skip is the output of block depth-1-i. ``rope`` replaces
the added sin-cos positions by 3D rotary positions (RoFormer, Su et al. 2021, arXiv 2104.09864, one slice of
each head per axis, as in Open-Sora and HunyuanVideo) with QK-norm (LayerNorm on queries and keys):
attention scores then depend on the offset between tokens, not on where they are. ``draft_input`` adds a
second tubelet embedding of a regression model's draft of the frames to generate (``train --draft``),
x = TubeletEmbed(z_t) + TubeletEmbed'(z_draft) + PE: channel concatenation at the input, zero-initialised.

The time is one per clip (B,), or one per latent frame (B, T): conditioning frames are given with
time 0 (see ``diffusion.KnownFrames``), and each frame of tubelets is modulated by its own time.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from einops import rearrange, repeat
from torch import nn

from .diffusion import TimestepEmbedding
from .packing import ClipLayout
from .patches import PatchEmbed, axis_dims, grid_coords, sincos_coords, sincos_nd, unpatchify
from .text import TextEncoder, Tokenizer
from .vae import SPACES, latent_space
from .vit import MLP, Attention, attention


# attention: the modes its blocks cycle through (which tokens each block's self-attention mixes)
ATTENTIONS = {"full": ("full",), "factorized": ("spatial", "temporal"), "hybrid": ("spatial", "full")}


@dataclass(frozen=True)
class DiTConfig:
    dim: int = 128
    depth: int = 4
    heads: int = 4
    patch: tuple[int, int, int] = (2, 4, 4)  # (pt, ph, pw) in latent cells
    attention: str = "full"  # a key of ATTENTIONS
    in_channels: int | None = None  # channels of what it denoises; None: the VAE's latent channels (1 for pixels)
    vae: str = "frame"  # a shipped VAE's name (a key of vae.VAE_PATHS) or "none" (pixels): vae.SPACES
    frames: int = 20  # the clip size the model trains on (pixels)
    size: int = 64
    text_dim: int = 128
    text_depth: int = 2
    max_words: int = 96
    mlp_ratio: float = 4.0
    conv: bool = False  # a depthwise 3x3x3 convolution over the token grid in each block
    rope: bool = False  # 3D rotary positions with QK-norm in self-attention, instead of added sin-cos positions
    rope_time_scale: float = 1.0  # rotary time coordinate per step of the token grid (0.5: re-patched, repatch.py)
    skips: bool = False  # U-ViT long skips: block i of the second half also sees block depth-1-i's output
    draft_input: bool = False  # a second tubelet embedding reads a regression model's draft latents (train --draft)

    def __post_init__(self):
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {list(ATTENTIONS)}, got {self.attention!r}")
        if self.vae not in SPACES:
            raise ValueError(f"vae must be one of {list(SPACES)}, got {self.vae!r}")
        if self.dim % self.heads or (self.rope and (self.dim // self.heads) % 2):
            raise ValueError(f"dim={self.dim} must split into {self.heads} heads (of an even size, for rope)")
        if not (math.isfinite(self.rope_time_scale) and self.rope_time_scale > 0) or (
                self.rope_time_scale != 1.0 and not self.rope):
            raise ValueError(f"rope_time_scale must be a finite number > 0, and other than 1 only with rope=True; got "
                             f"{self.rope_time_scale} with rope={self.rope}")
        channels, temporal, spatial = latent_space(self.vae)
        if self.in_channels is None:
            object.__setattr__(self, "in_channels", channels)  # frozen: set once, here
        elif self.in_channels != channels:
            raise ValueError(f"in_channels={self.in_channels}, but the {self.vae} space has {channels} channels")
        pt, ph, pw = self.patch
        for name, size, step in (("frames", self.frames, temporal * pt), ("size", self.size, spatial * ph),
                                 ("size", self.size, spatial * pw)):
            if size < step or size % step:
                raise ValueError(f"{name}={size} must be a positive multiple of {step}: whole tubelets of "
                                 f"{self.patch} latent cells of the {self.vae} space")

    @property
    def tubelet_frames(self) -> int:
        """Pixel frames that share one noise time (one frame of tubelets): the VAE's temporal factor x patch[0]."""
        return latent_space(self.vae)[1] * self.patch[0]

# name: (DiTConfig overrides, what it is for)
PRESETS = {
    "micro": (dict(dim=32, depth=2, heads=2, text_dim=32, text_depth=1, patch=(2, 4, 4)), "unit tests, seconds"),
    "tiny": (dict(dim=128, depth=4, heads=4, text_dim=128, patch=(2, 2, 2)), "CPU, minutes"),
    "small": (dict(dim=256, depth=8, heads=4, text_dim=192, patch=(2, 2, 2)), "CPU hours or GPU minutes"),
    "base": (dict(dim=384, depth=12, heads=6, text_dim=256, patch=(1, 2, 2)), "GPU"),
}


def get_preset(name: str, **overrides) -> DiTConfig:
    """A preset's config, with optional overrides (e.g. ``attention="factorized"``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {list(PRESETS)}")
    return DiTConfig(**{**PRESETS[name][0], **overrides})


def block_modes(config: DiTConfig) -> list[str]:
    """Which tokens each block's self-attention mixes: "full", "spatial" or "temporal", by ATTENTIONS."""
    cycle = ATTENTIONS[config.attention]
    return [cycle[i % len(cycle)] for i in range(config.depth)]


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: LN(x) (1 + scale) + shift; x (B, N, D), shift/scale per clip (B, 1, D) or per token (B, N, D)."""
    return x * (1 + scale) + shift


Layout = tuple[int, int, int] | ClipLayout  # clips of one (t, h, w) grid, or a packed batch of clips of any grids


def per_token(values: torch.Tensor, layout: Layout) -> torch.Tensor:
    """Modulations per clip (B, K) -> (B, 1, K); per frame of tubelets (B, t, K) -> per token (B, t*h*w, K);
    a packed batch's are per token already (R, L, K)."""
    if isinstance(layout, ClipLayout) or values.ndim == 2:
        return values if isinstance(layout, ClipLayout) else values[:, None]
    return repeat(values, "b t k -> b (t hw) k", hw=layout[1] * layout[2])


def coords_angles(coords: torch.Tensor, head_dim: int, time_scale: float = 1.0, base: float = 100.0) -> torch.Tensor:
    """Rotary angles of tokens at (t, h, w) coordinates (..., 3) -> (..., head_dim / 2): axis a gets a slice of the
    head with angles p_a * base^(-2i/d_a), where p_t = time_scale * t. Base 100, not 10,000: grids here are a few
    dozen cells, so low frequencies beyond that would be wasted."""
    scale = (time_scale, 1.0, 1.0)
    parts = [coords[..., a:a + 1].double() * scale[a] * base ** (
        -torch.arange(d // 2, dtype=torch.float64, device=coords.device) / (d // 2))
             for a, d in enumerate(axis_dims(head_dim, 3))]  # (..., d_a / 2) each
    return torch.cat(parts, dim=-1).float()  # (..., head_dim / 2)


@functools.lru_cache(maxsize=16)  # every block of every step asks for the same few grids
def rope_angles(grid: tuple[int, int, int], head_dim: int, time_scale: float = 1.0) -> torch.Tensor:
    """Rotary angles of every token of a (t, h, w) grid, (N, head_dim / 2)."""
    return coords_angles(grid_coords(grid), head_dim, time_scale)


def rotate(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """RoPE: rotate the pairs (x_i, x_{i + d/2}) of x (..., N, d) by angles (N, d/2)."""
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = angles.cos(), angles.sin()
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class RotaryAttention(Attention):
    """Self-attention with QK-norm and rotary positions: softmax(R_i LN(q_i) . R_j LN(k_j) / sqrt(d)) v_j."""

    def __init__(self, dim: int, heads: int):
        super().__init__(dim, heads)
        self.q_norm, self.k_norm = nn.LayerNorm(dim // heads, eps=1e-6), nn.LayerNorm(dim // heads, eps=1e-6)

    def rotary_qkv(self, x: torch.Tensor, angles: torch.Tensor):
        q, k, v = self.qkv_heads(x)  # (B, h, N, d) each
        return rotate(self.q_norm(q), angles), rotate(self.k_norm(k), angles), v

    def forward(self, x: torch.Tensor, angles: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, N, D), angles (N, d/2) of the tokens of each sequence (or (B, 1, N, d/2)), mask as in
        ``Attention`` -> (B, N, D)."""
        out = attention(*self.rotary_qkv(x, angles), mask)  # (B, h, N, d)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))

    def weights(self, x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
        q, k, _ = self.rotary_qkv(x, angles)
        return (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(-1)  # (B, h, N, N)


class CrossAttention(nn.Module):
    """Queries from the video tokens, keys and values from the text tokens; padding words are masked."""

    def __init__(self, dim: int, text_dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q, self.kv, self.proj = nn.Linear(dim, dim), nn.Linear(text_dim, 2 * dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, text: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
        """x (B, N, D), text (B, L, Dt), words: the real words (B, L), or per token (B, N, L) in packed rows."""
        q = rearrange(self.q(x), "b n (h d) -> b h n d", h=self.heads)  # (B, h, N, d)
        k, v = rearrange(self.kv(text), "b l (two h d) -> two b h l d", two=2, h=self.heads)  # (B, h, L, d) each
        mask = words[:, None] if words.ndim == 3 else words[:, None, None, :]  # (B, 1, N | 1, L)
        out = attention(q, k, v, mask)  # (B, h, N, d)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))  # (B, N, D)


class LocalConv(nn.Module):
    """x + DWConv3d(LN(x)): a depthwise 3x3x3 convolution over the (t, h, w) token grid, zero-initialised."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.conv = nn.Conv3d(dim, dim, 3, padding=1, groups=dim)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def conv_grid(self, y: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        t, h, w = grid
        y = rearrange(y, "b (t h w) d -> b d t h w", t=t, h=h, w=w)  # (B, D, t, h, w)
        return rearrange(self.conv(y), "b d t h w -> b (t h w) d")  # (B, N, D)

    def forward(self, x: torch.Tensor, layout: Layout) -> torch.Tensor:
        if isinstance(layout, ClipLayout):  # each clip on its own grid
            return x + layout.per_clip(self.norm(x), self.conv_grid)
        return x + self.conv_grid(self.norm(x), layout)


class DiTBlock(nn.Module):
    """adaLN-Zero block; ``mode`` is which tokens self-attention mixes: "full", "spatial" or "temporal"."""

    def __init__(self, dim: int, heads: int, text_dim: int, mode: str = "full", mlp_ratio: float = 4.0,
                 conv: bool = False, rope: bool = False, rope_time_scale: float = 1.0):
        super().__init__()
        self.mode, self.rope_time_scale = mode, rope_time_scale
        self.local = LocalConv(dim) if conv else None
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = RotaryAttention(dim, heads) if rope else Attention(dim, heads)
        self.norm_cross, self.cross = nn.LayerNorm(dim), CrossAttention(dim, text_dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = MLP(dim, int(dim * mlp_ratio))
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.adaLN[-1].weight)  # adaLN-Zero: every gate starts at 0, so the block is the identity
        nn.init.zeros_(self.adaLN[-1].bias)

    def self_attention(self, x: torch.Tensor, layout: Layout) -> torch.Tensor:
        rope = isinstance(self.attn, RotaryAttention)
        if isinstance(layout, ClipLayout) and layout.backend == "loop":  # each clip alone, as below
            return layout.per_clip(x, self.self_attention)
        if isinstance(layout, ClipLayout):  # packed rows: one mask says which tokens see each other
            head_dim = self.attn.qkv.in_features // self.attn.heads
            rotary = (coords_angles(layout.coords, head_dim, self.rope_time_scale)[:, None],
                      ) if rope else ()  # (R, 1, L, d/2)
            return self.attn(x, *rotary, mask=layout.mask(self.mode))
        grid = layout
        t, h, w = grid
        rotary = ()
        if rope:  # the angles of one sequence: a clip, a frame, or a position
            angles = rope_angles(grid, self.attn.qkv.in_features // self.attn.heads,
                                 self.rope_time_scale).to(x)  # (t*h*w, d/2)
            rotary = ({"full": angles, "spatial": angles[:h * w], "temporal": angles[::h * w]}[self.mode],)
        if self.mode == "full":
            return self.attn(x, *rotary)  # (B, t*h*w, D): all tokens of a clip
        if self.mode == "spatial":
            x = rearrange(x, "b (t hw) d -> (b t) hw d", t=t)  # (B*t, h*w, D): one frame at a time
            return rearrange(self.attn(x, *rotary), "(b t) hw d -> b (t hw) d", t=t)
        x = rearrange(x, "b (t hw) d -> (b hw) t d", t=t)  # (B*h*w, t, D): one position across time
        return rearrange(self.attn(x, *rotary), "(b hw) t d -> b (t hw) d", hw=h * w)

    def forward(self, x, c, text, words, layout: Layout):
        shift1, scale1, gate1, shift2, scale2, gate2 = per_token(self.adaLN(c), layout).chunk(6, dim=-1)  # (B, 1|N, D)
        if self.local is not None:
            x = self.local(x, layout)
        x = x + gate1 * self.self_attention(modulate(self.norm1(x), shift1, scale1), layout)
        x = x + self.cross(self.norm_cross(x), text, words)
        return x + gate2 * self.mlp(modulate(self.norm2(x), shift2, scale2))


class FinalLayer(nn.Module):
    """modulate(LN(x)) -> Linear to a patch of values; zero-initialised so the first prediction is 0."""

    def __init__(self, dim: int, patch_values: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.linear = nn.Linear(dim, patch_values)
        for layer in (self.adaLN[-1], self.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor, layout: Layout) -> torch.Tensor:
        shift, scale = per_token(self.adaLN(c), layout).chunk(2, dim=-1)  # (B, 1|N, D) each
        return self.linear(modulate(self.norm(x), shift, scale))


class DiT(nn.Module):
    """model(z_t (B, C, T, H, W), time (B,), ids (B, L)) -> prediction (B, C, T, H, W)."""

    def __init__(self, config: DiTConfig = DiTConfig()):
        super().__init__()
        self.config = config
        self.tokenizer = Tokenizer(config.max_words)
        self.text = TextEncoder(len(self.tokenizer), config.text_dim, config.text_depth, max_len=config.max_words)
        self.text_pool = nn.Linear(config.text_dim, config.dim)
        self.time = TimestepEmbedding(config.dim)
        self.embed = PatchEmbed(config.in_channels, config.dim, config.patch)
        # the draft's tubelets, added to the tokens: zero-initialised and without a bias, so no draft (zeros) adds nothing
        self.draft_embed = PatchEmbed(config.in_channels, config.dim, config.patch) if config.draft_input else None
        if self.draft_embed is not None:
            nn.init.zeros_(self.draft_embed.proj.weight)
            self.draft_embed.proj.bias = None
        self.blocks = nn.ModuleList(DiTBlock(config.dim, config.heads, config.text_dim, mode, config.mlp_ratio,
                                             config.conv, config.rope, config.rope_time_scale)
                                    for mode in block_modes(config))
        # U-ViT long skips into the second half: Linear([x; x_skip]) (2D -> D)
        self.skips = nn.ModuleList(nn.Linear(2 * config.dim, config.dim)
                                   for _ in range(config.depth // 2)) if config.skips else None
        self.final = FinalLayer(config.dim, config.in_channels * math.prod(config.patch))

    def null_ids(self, batch: int) -> torch.Tensor:
        """The null prompt for classifier-free guidance, (B, L)."""
        return self.tokenizer.null(batch)

    def patch_grid(self, x: torch.Tensor) -> tuple[int, int, int]:
        """The patch grid (t, h, w) of an input, or a clear error."""
        c = self.config
        if x.ndim != 5 or x.shape[1] != c.in_channels:
            raise ValueError(f"expected latent videos (B, {c.in_channels}, T, H, W), got {tuple(x.shape)}")
        for name, size, p in zip("THW", x.shape[2:], c.patch):
            if size % p:
                raise ValueError(f"latent {name}={size} is not divisible by the patch size {p} "
                                 f"(input {tuple(x.shape)}, patch {c.patch})")
        return tuple(s // p for s, p in zip(x.shape[2:], c.patch))

    def condition(self, time: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        """What adaLN modulates with: time embedding + pooled text, per clip (B, D) from time (B,), or per frame of
        tubelets (B, t, D) from time (B, t)."""
        if time.ndim == 2:
            return self.time(time.flatten()).unflatten(0, time.shape) + self.text_pool(pooled)[:, None]  # (B, t, D)
        return self.time(time) + self.text_pool(pooled)  # (B, D)

    def transform(self, tokens: torch.Tensor, c: torch.Tensor, text: torch.Tensor, words: torch.Tensor,
                  layout: Layout) -> torch.Tensor:
        """The blocks (with U-ViT skips if configured) and the final layer: tokens (B, N, D) -> (B, N, patch values)."""
        skips, saved = list(self.skips or ()), []
        first_out = len(self.blocks) - len(skips)  # U-ViT: the last len(skips) blocks take the first ones' outputs
        for i, block in enumerate(self.blocks):
            if i >= first_out:  # last in, first out
                tokens = skips[i - first_out](torch.cat([tokens, saved.pop()], dim=-1))  # (B, N, 2D) -> (B, N, D)
            tokens = block(tokens, c, text, words, layout)
            if i < len(skips):
                saved.append(tokens)
        return self.final(tokens, c, layout)

    def forward(self, x: torch.Tensor, time: torch.Tensor, ids: torch.Tensor,
                draft: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, T, H, W); time (B,) per clip or (B, T) per latent frame (whole tubelets alike); ids (B, L);
        ``draft`` (B, C, T, H, W): a regression model's latents of the frames to generate, zeros elsewhere (a model
        with ``draft_input`` only; None: zeros)."""
        grid = self.patch_grid(x)
        if draft is not None and (self.draft_embed is None or draft.shape != x.shape):
            raise ValueError(f"expected a draft like x {tuple(x.shape)} for a model with draft_input, got "
                             f"{tuple(draft.shape)} with draft_input={self.config.draft_input}")
        text, words, pooled = self.text(ids)  # (B, L, Dt), (B, L), (B, Dt)
        if time.ndim == 2 and time.shape != x.shape[:1] + x.shape[2:3]:
            raise ValueError(f"expected one time per clip (B,) or per frame (B, T) = {tuple(x.shape[:1] + x.shape[2:3])}, "
                             f"got {tuple(time.shape)}")
        c = self.condition(time[:, :: self.config.patch[0]] if time.ndim == 2 else time, pooled)  # (B, [t,] D)
        tokens, _ = self.embed(x)  # (B, t*h*w, D)
        if draft is not None:
            tokens = tokens + self.draft_embed(draft)[0]  # (B, t*h*w, D)
        if not self.config.rope:
            tokens = tokens + sincos_nd(grid, self.config.dim).to(x)
        return unpatchify(self.transform(tokens, c, text, words, grid), grid, self.config.patch)  # (B, C, T, H, W)

    def forward_packed(self, xs: list[torch.Tensor], times: list[torch.Tensor], ids: torch.Tensor,
                       budget: int | None = None, backend: str = "auto", padded: bool = False) -> list[torch.Tensor]:
        """Clips of any shapes in one pass (Patch n' Pack): xs[i] (C, T_i, H_i, W_i); times[i] one time () or one per
        latent frame (T_i,); ids (S, L). Their tokens are packed into rows of ``budget`` tokens (default: the longest
        clip's; ``padded``: one clip a row instead) and self-attention stays inside each clip, by masks (``dense``)
        or clip by clip (``loop``; ``auto``: loop on the CPU, dense on GPU). Returns the predictions, like
        ``forward`` on each clip alone."""
        if not len(xs) == len(times) == len(ids):
            raise ValueError(f"expected one time and one prompt per clip, got {len(xs)} clips, {len(times)} times and "
                             f"{len(ids)} prompts")
        grids = [self.patch_grid(x[None]) for x in xs]
        layout = ClipLayout([self.embed(x[None])[0][0] for x in xs], grids, budget, backend, padded)  # rows (R, L, D)
        text, words, pooled = self.text(ids)  # (S, W, Dt), (S, W), (S, Dt)
        per_frame = [t.reshape(1).expand(g[0]) if t.numel() == 1 else t[:: self.config.patch[0]]
                     for t, g in zip(times, grids)]  # (t_i,): one time per frame of tubelets
        c = layout.per_token([self.condition(t, p.expand(len(t), -1)) for t, p in zip(per_frame, pooled)])  # (R, L, D)
        tokens = layout.packed.tokens
        if not self.config.rope:
            tokens = tokens + sincos_coords(layout.coords.flatten(0, 1), self.config.dim).to(tokens).view_as(tokens)
        row_text, row_words = layout.words(text, words)  # (R, M, Dt), (R, L, M)
        out = self.transform(tokens, c, row_text, row_words, layout)  # (R, L, patch values)
        return [unpatchify(o[None], g, self.config.patch)[0] for o, g in zip(layout.unpack(out), grids)]


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def tokens_per_clip(config: DiTConfig) -> tuple[int, int, int]:
    """The (t, h, w) patch grid of one training clip."""
    _, temporal, spatial = latent_space(config.vae)
    latent = (config.frames // temporal, config.size // spatial, config.size // spatial)
    return tuple(s // p for s, p in zip(latent, config.patch))


def flops_per_clip(config: DiTConfig, training: bool = True, words: int | None = None) -> float:
    """Matmul FLOPs to denoise one clip (x3 for a training step: forward + backward), as in PaLM's MFU.

    Per block and token: 2 * (4 D^2 self-attention projections + 2 D^2 cross q/out + 2 r D^2 MLP);
    attention scores and values 2 * 2 * D * (tokens it sees); cross-attention keys/values per word.
    ``words`` is the prompt length the text encoder sees (the batch's longest; default: the most it takes).
    """
    t, h, w = tokens_per_clip(config)
    n, d, L = t * h * w, config.dim, words or config.max_words
    seen = {"full": n, "spatial": h * w, "temporal": t}
    per_block = [2 * n * (6 * d * d + 2 * config.mlp_ratio * d * d) + 4 * n * d * (seen[m] + L)
                 + 2 * L * config.text_dim * 2 * d for m in block_modes(config)]
    if config.conv:
        per_block = [f + 2 * n * d * 27 for f in per_block]  # depthwise 3x3x3
    skips = 2 * n * 2 * d * d * (config.depth // 2) if config.skips else 0
    patch_io = 2 * n * d * config.in_channels * math.prod(config.patch) * (3 if config.draft_input else 2)
    text = config.text_depth * 2 * L * (12 * config.text_dim**2) + 4 * L * L * config.text_dim * config.text_depth
    forward = sum(per_block) + skips + patch_io + text
    return forward * (3 if training else 1)

"""NaViT's Patch n' Pack (Dehghani et al. 2023): images and videos of any size in one batch.

A fixed-size ViT resizes or crops every input to one shape. NaViT keeps each input's own
resolution, aspect ratio (and, for video, duration): each becomes a token sequence of its own
length, and several sequences are *packed* into rows of a fixed token budget L::

    row 0: [ a a a a a a | b b b b | c c c . ]     . = padding, only at the end of a row
    row 1: [ d d d d d d d d d | e e e e . . ]

Attention must never cross sequences, so each row gets a block-diagonal mask:
token i may attend to token j  <=>  seq(i) == seq(j). Per-token sequence ids and grid coordinates
travel with the tokens, for positions, for the mask and for pooling one output per sequence.

Attention backends, one interface (:class:`PackedAttention`): ``dense`` (SDPA with the boolean
mask, L x L per row), ``loop`` (SDPA on each sequence alone: no mask and no wasted work, but one
kernel call per sequence) and ``flex`` (FlexAttention with a block mask that skips the empty
blocks; the fast path on GPU; on CPU this torch version has no backward pass for it). ``auto``
picks ``flex`` on GPU and ``dense`` on CPU, where ``python -m minisora bench packing`` measured it
faster than ``loop`` (rows of 256 and 640 tokens, 128 sequences a batch: the per-sequence calls
cost more than the masked-out work they save).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .patches import grid_coords, patchify, sincos_coords
from .vit import Block, ViT

BACKENDS = ("auto", "dense", "loop", "flex")


# ---------------------------------------------------------------------------------------------
# Packing
# ---------------------------------------------------------------------------------------------

def greedy_pack(lengths: list[int], budget: int) -> list[list[int]]:
    """First-fit decreasing: place sequences, longest first, in the first row with room for them.

    Returns rows as lists of sequence indices. Raises if a sequence is longer than the budget.
    """
    too_long = [(i, n) for i, n in enumerate(lengths) if n > budget]
    if too_long:
        i, n = too_long[0]
        raise ValueError(f"sequence {i} has {n} tokens, more than the row budget of {budget}; "
                         f"raise the budget to at least {max(n for _, n in too_long)} or drop tokens")
    rows, room = [], []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        r = next((r for r, free in enumerate(room) if free >= lengths[i]), None)
        if r is None:
            rows.append([]), room.append(budget)
            r = len(rows) - 1
        rows[r].append(i)
        room[r] -= lengths[i]
    return rows


@dataclass
class Packed:
    """A packed batch: R rows of L tokens, and where each sequence went."""

    tokens: torch.Tensor  # (R, L, D)
    seq_ids: torch.Tensor  # (R, L) long: the sequence of each token, -1 for padding
    coords: torch.Tensor  # (R, L, A) long: grid coordinates (t, h, w) of each token, 0 for padding
    placement: list[tuple[int, int, int]]  # per sequence: (row, start, length)

    @property
    def utilisation(self) -> float:
        """Real tokens / all slots: 1.0 means no padding at all."""
        return float((self.seq_ids >= 0).float().mean())

    def unpack(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per-sequence slices (N_i, ...) of a packed tensor (R, L, ...)."""
        return [x[row, start:start + n] for row, start, n in self.placement]

    def mask(self) -> torch.Tensor:
        """Block-diagonal attention mask (R, 1, L, L), True where attention is allowed.

        Padding tokens attend only to themselves, so that no softmax row is empty (which would give NaN).
        """
        same = self.seq_ids[:, :, None] == self.seq_ids[:, None, :]  # (R, L, L)
        pad = (self.seq_ids < 0)[:, :, None] & torch.eye(self.seq_ids.shape[1], dtype=torch.bool,
                                                           device=self.seq_ids.device)
        return ((same & (self.seq_ids >= 0)[:, :, None]) | pad)[:, None]  # (R, 1, L, L)

    def pool(self, x: torch.Tensor, how: str = "mean") -> torch.Tensor:
        """One vector per sequence, (R, L, D) -> (S, D): the mean of its tokens, or its first token."""
        if how not in ("mean", "first"):
            raise ValueError(f"how must be 'mean' or 'first', got {how!r}")
        return torch.stack([part.mean(0) if how == "mean" else part[0] for part in self.unpack(x)])


def pack(tokens: list[torch.Tensor], coords: list[torch.Tensor], budget: int | None = None) -> Packed:
    """Pack sequences of tokens (N_i, D) with coordinates (N_i, A) into rows of ``budget`` tokens.

    ``budget=None`` uses the longest sequence's length.
    """
    lengths = _check_sequences(tokens, coords)
    budget = budget or max(lengths)
    return _fill(greedy_pack(lengths, budget), tokens, coords, budget)


def pad_to_longest(tokens: list[torch.Tensor], coords: list[torch.Tensor]) -> Packed:
    """The usual alternative to packing: one sequence per row, padded to the longest."""
    lengths = _check_sequences(tokens, coords)
    return _fill([[i] for i in range(len(tokens))], tokens, coords, max(lengths))


def _check_sequences(tokens: list[torch.Tensor], coords: list[torch.Tensor]) -> list[int]:
    if len(tokens) == 0 or len(tokens) != len(coords):
        raise ValueError(f"expected as many coordinate tensors as token tensors (at least one), "
                         f"got {len(tokens)} and {len(coords)}")
    for i, (t, c) in enumerate(zip(tokens, coords)):
        if t.ndim != 2 or c.ndim != 2 or len(t) != len(c):
            raise ValueError(f"sequence {i}: expected tokens (N, D) and coordinates (N, A) with the same N, "
                             f"got {tuple(t.shape)} and {tuple(c.shape)}")
    return [len(t) for t in tokens]


def _fill(rows: list[list[int]], tokens: list[torch.Tensor], coords: list[torch.Tensor], budget: int) -> Packed:
    """Lay the sequences of each row end to end; the rest of the row is padding."""
    R, D, A, device = len(rows), tokens[0].shape[1], coords[0].shape[1], tokens[0].device
    out = tokens[0].new_zeros(R, budget, D)  # (R, L, D)
    seq_ids = torch.full((R, budget), -1, dtype=torch.long, device=device)  # (R, L)
    out_coords = torch.zeros(R, budget, A, dtype=torch.long, device=device)  # (R, L, A)
    placement: list[tuple[int, int, int]] = [(0, 0, 0)] * len(tokens)
    for r, row in enumerate(rows):
        start = 0
        for i in row:
            n = len(tokens[i])
            out[r, start:start + n] = tokens[i]
            seq_ids[r, start:start + n] = i
            out_coords[r, start:start + n] = coords[i]
            placement[i] = (r, start, n)
            start += n
    return Packed(out, seq_ids, out_coords, placement)


def drop_tokens(tokens: list[torch.Tensor], coords: list[torch.Tensor], rate: float | list[float],
                generator: torch.Generator | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Keep a random (1 - rate) of each sequence's tokens (at least one), in their original order.

    ``rate`` is one number or one per sequence. NaViT drops tokens to train faster: fewer tokens
    per image means more images per batch, and the positions say where the kept ones were.
    """
    rates = [rate] * len(tokens) if isinstance(rate, (int, float)) else list(rate)
    if len(rates) != len(tokens) or not all(0 <= r < 1 for r in rates):
        raise ValueError(f"expected a drop rate in [0, 1) (or one per sequence), got {rate}")
    kept_tokens, kept_coords = [], []
    for t, c, r in zip(tokens, coords, rates):
        keep = max(1, round(len(t) * (1 - r)))
        idx = torch.randperm(len(t), generator=generator)[:keep].sort().values.to(t.device)
        kept_tokens.append(t[idx]), kept_coords.append(c[idx])
    return kept_tokens, kept_coords


# ---------------------------------------------------------------------------------------------
# Clips of any shape in one batch (the packed DiT)
# ---------------------------------------------------------------------------------------------

MODES = ("full", "spatial", "temporal")


class ClipLayout:
    """A packed batch of clips, each with its own (t, h, w) patch grid, and what a DiT needs to read it:
    per-token values gathered from per-clip ones, each row's words, and one attention mask per mode.

    Token i may attend to token j when both belong to one clip and, for ``spatial`` attention, to one frame
    of tubelets (same t), for ``temporal`` attention, to one position (same h, w). Padding attends to itself.
    """

    def __init__(self, tokens: list[torch.Tensor], grids: list[tuple[int, int, int]], budget: int | None = None,
                 backend: str = "auto", padded: bool = False):
        if backend not in ("auto", "dense", "loop"):
            raise ValueError(f"backend must be 'auto', 'dense' or 'loop', got {backend!r}")
        self.grids = [tuple(int(n) for n in g) for g in grids]
        coords = [grid_coords(g).to(tokens[0].device) for g in self.grids]
        self.packed = pad_to_longest(tokens, coords) if padded else pack(tokens, coords, budget)
        self.backend = ("dense" if tokens[0].is_cuda else "loop") if backend == "auto" else backend
        self._masks: dict[str, torch.Tensor] = {}

    @property
    def clip_ids(self) -> torch.Tensor:
        return self.packed.seq_ids  # (R, L), -1 at padding

    @property
    def coords(self) -> torch.Tensor:
        return self.packed.coords  # (R, L, 3): (t, h, w) of each token in its own clip's grid

    def mask(self, mode: str) -> torch.Tensor:
        """(R, 1, L, L) bool, True where attention is allowed (computed once per layout and mode)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode not in self._masks:
            ids, c = self.clip_ids, self.coords
            allowed = (ids[:, :, None] == ids[:, None, :]) & (ids >= 0)[:, :, None]  # (R, L, L): same clip
            if mode == "spatial":
                allowed &= c[:, :, None, 0] == c[:, None, :, 0]  # same frame of tubelets
            if mode == "temporal":
                allowed &= (c[:, :, None, 1:] == c[:, None, :, 1:]).all(-1)  # same position
            pad = (ids < 0)[:, :, None] & torch.eye(ids.shape[1], dtype=torch.bool, device=ids.device)
            self._masks[mode] = (allowed | pad)[:, None]
        return self._masks[mode]

    def per_token(self, values: list[torch.Tensor]) -> torch.Tensor:
        """Values per frame of tubelets of each clip, (t_i, K) each -> the value of each token's frame (R, L, K).
        Padding gets clip 0's first value (it is never read)."""
        ids = self.clip_ids.clamp(min=0)  # (R, L)
        offsets = torch.tensor([0] + [len(v) for v in values], device=ids.device).cumsum(0)[:-1]  # (S,)
        return torch.cat(values)[offsets[ids] + self.coords[..., 0] * (self.clip_ids >= 0)]

    def words(self, text: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each row's words: the text tokens (S, W, Dt) of its clips end to end, (R, M, Dt), and which of them
        each token may attend to, (R, L, M): its own clip's real words (padding tokens: the row's first word)."""
        rows = [[i for i in range(len(self.grids)) if self.packed.placement[i][0] == r]
                for r in range(self.clip_ids.shape[0])]
        W, M = text.shape[1], max(len(row) for row in rows) * text.shape[1]
        row_text = text.new_zeros(len(rows), M, text.shape[2])  # (R, M, Dt)
        owner = torch.full((len(rows), M), -1, dtype=torch.long, device=text.device)  # (R, M): the clip of each word
        real = torch.zeros(len(rows), M, dtype=torch.bool, device=text.device)
        for r, row in enumerate(rows):
            for k, i in enumerate(row):
                row_text[r, k * W:(k + 1) * W], owner[r, k * W:(k + 1) * W] = text[i], i
                real[r, k * W:(k + 1) * W] = valid[i]
        allowed = (self.clip_ids[:, :, None] == owner[:, None, :]) & real[:, None, :]  # (R, L, M)
        allowed[:, :, 0] |= self.clip_ids < 0  # padding tokens read one word: no empty softmax row
        return row_text, allowed

    def unpack(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per-clip token slices (n_i, ...) of a packed tensor (R, L, ...)."""
        return self.packed.unpack(x)

    def per_clip(self, x: torch.Tensor, fn) -> torch.Tensor:
        """``fn(tokens (1, n_i, D), grid)`` on each clip's tokens alone, written back into the rows (padding: 0)."""
        out = torch.zeros_like(x)
        for (row, start, n), grid in zip(self.packed.placement, self.grids):
            out[row, start:start + n] = fn(x[row:row + 1, start:start + n], grid)[0]
        return out


# ---------------------------------------------------------------------------------------------
# Attention over packed rows
# ---------------------------------------------------------------------------------------------

class PackedAttention:
    """Attention that stays inside each sequence of a packed batch; pass it as ``mask`` to ``vit.Attention``.

    Calling it with q, k, v (R, heads, L, d) returns (R, heads, L, d); outputs at padding are 0
    (``loop``) or meaningless (``dense``, ``flex``) and are never read.
    """

    def __init__(self, packed: Packed, backend: str = "auto"):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "auto":
            backend = "flex" if packed.tokens.is_cuda else "dense"
        self.packed, self.backend = packed, backend
        self._mask = packed.mask() if backend == "dense" else None
        self._block_mask = self._flex_block_mask() if backend == "flex" else None

    def _flex_block_mask(self):
        from torch.nn.attention.flex_attention import create_block_mask

        ids = self.packed.seq_ids
        R, L = ids.shape

        def same_sequence(b, h, q_idx, kv_idx):  # padding (-1) attends to padding: no empty rows
            return ids[b, q_idx] == ids[b, kv_idx]

        return create_block_mask(same_sequence, R, None, L, L, device=ids.device)

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.backend == "dense":
            return F.scaled_dot_product_attention(q, k, v, attn_mask=self._mask)
        if self.backend == "flex":
            from torch.nn.attention.flex_attention import flex_attention

            return flex_attention(q, k, v, block_mask=self._block_mask)
        out = torch.zeros_like(q)
        for row, start, n in self.packed.placement:  # each sequence alone: (1, heads, n, d)
            s = slice(start, start + n)
            out[row, :, s] = F.scaled_dot_product_attention(q[row:row + 1, :, s], k[row:row + 1, :, s],
                                                            v[row:row + 1, :, s])[0]
        return out


# ---------------------------------------------------------------------------------------------
# Positions for variable grids
# ---------------------------------------------------------------------------------------------

class FactorizedPositions(nn.Module):
    """NaViT's factorised learned positions: PE(t, h, w) = E_t[t] + E_h[h] + E_w[w].

    One table per axis instead of one per grid shape, so any grid whose sides fit the tables works,
    including shapes never seen in training (trained on 4x7 and 7x4, it has rows for 7x7).
    """

    def __init__(self, max_sizes: tuple[int, ...], dim: int):
        super().__init__()
        self.max_sizes = tuple(max_sizes)
        self.tables = nn.ParameterList(nn.Parameter(torch.randn(n, dim) * 0.02) for n in self.max_sizes)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """Coordinates (..., A) -> embeddings (..., D)."""
        if coords.shape[-1] != len(self.tables):
            raise ValueError(f"expected {len(self.tables)} coordinates per token, got {coords.shape[-1]}")
        for a, n in enumerate(self.max_sizes):
            if int(coords[..., a].max()) >= n:
                raise ValueError(f"grid coordinate {int(coords[..., a].max())} on axis {a} is beyond the "
                                 f"learned table of {n} positions (max_sizes={self.max_sizes})")
        return sum(table[coords[..., a]] for a, table in enumerate(self.tables))


# ---------------------------------------------------------------------------------------------
# NaViT
# ---------------------------------------------------------------------------------------------

class NaViT(nn.Module):
    """A ViT classifier for a *list* of images (C, H, W) or videos (C, T, H, W) of any sizes.

    Each input is patchified at its own size and its tokens get positions from their grid
    coordinates (and, with ``pool="cls"``, a class token in front); the sequences are packed into
    rows of ``budget`` tokens, the transformer blocks (``vit.Block``) attend within sequences only,
    and each sequence is pooled (mean, or its class token) and classified.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, patch_size=(4, 4), dim: int = 64,
                 depth: int = 4, heads: int = 4, mlp_ratio: float = 4.0, positions: str = "learned",
                 max_grid: tuple[int, ...] = (32, 32), pool: str = "mean"):
        super().__init__()
        if positions not in ("learned", "sincos"):
            raise ValueError(f"positions must be 'learned' or 'sincos', got {positions!r}")
        if pool not in ("mean", "cls"):
            raise ValueError(f"pool must be 'mean' or 'cls', got {pool!r}")
        if len(max_grid) != len(patch_size):
            raise ValueError(f"max_grid {max_grid} needs one size per patch axis {patch_size}")
        self.patch_size = tuple(patch_size)
        self.embed = nn.Linear(in_channels * math.prod(self.patch_size), dim)  # == a strided conv (notebook 01)
        self.positions = FactorizedPositions(max_grid, dim) if positions == "learned" else None
        self.cls_token = nn.Parameter(torch.zeros(1, dim)) if pool == "cls" else None
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    @classmethod
    def from_vit(cls, vit: ViT) -> NaViT:
        """The NaViT that computes exactly what ``vit`` computes on its fixed-size images, on any size.

        The conv patch embedding becomes the equal linear map (notebook 01); blocks, norm, head and
        class token are shared weights; positions are the same per-axis sin-cos.
        """
        conv = vit.patch_embed.proj
        first = vit.blocks[0]
        navit = cls(num_classes=vit.head.out_features, in_channels=conv.in_channels, patch_size=conv.kernel_size,
                    dim=conv.out_channels, depth=len(vit.blocks), heads=first.attn.heads,
                    mlp_ratio=first.mlp[0].out_features / conv.out_channels, positions="sincos",
                    max_grid=(1,) * len(conv.kernel_size), pool=vit.pool)
        state = {k: v for k, v in vit.state_dict().items() if not k.startswith(("patch_embed", "cls_token"))}
        state["embed.weight"] = conv.weight.reshape(conv.out_channels, -1)  # (D, C*prod(p))
        state["embed.bias"] = conv.bias
        if vit.cls_token is not None:
            state["cls_token"] = vit.cls_token[0]  # (1, D)
        navit.load_state_dict(state)
        return navit

    def tokenize(self, inputs: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Each input (C, [T,] H, W) -> its patch tokens (N_i, D) and grid coordinates (N_i, A)."""
        tokens, coords = [], []
        for x in inputs:
            if x.ndim != len(self.patch_size) + 1:
                raise ValueError(f"expected inputs of shape (C, {', '.join('THW'[-len(self.patch_size):])}), "
                                 f"got {tuple(x.shape)}")
            grid = [s // p for s, p in zip(x.shape[1:], self.patch_size)]
            tokens.append(self.embed(patchify(x[None], self.patch_size)[0]))  # (N_i, D)
            coords.append(grid_coords(grid).to(x.device))  # (N_i, A)
        return tokens, coords

    def position(self, coords: torch.Tensor) -> torch.Tensor:
        """Position embeddings (N, D) for grid coordinates (N, A)."""
        if self.positions is not None:
            return self.positions(coords)
        return sincos_coords(coords, self.embed.out_features).to(self.embed.weight)

    def forward(self, inputs: list[torch.Tensor], budget: int | None = None, drop_rate: float | list[float] = 0.0,
                backend: str = "auto", generator: torch.Generator | None = None, padded: bool = False) -> torch.Tensor:
        """Logits (S, num_classes) for a list of S inputs of any sizes.

        Sequences are packed into rows of ``budget`` tokens (default: the longest sequence), or,
        with ``padded=True``, put one per row and padded to the longest (the baseline packing beats).
        """
        tokens, coords = self.tokenize(inputs)
        if drop_rate:
            tokens, coords = drop_tokens(tokens, coords, drop_rate, generator)
        tokens = [t + self.position(c) for t, c in zip(tokens, coords)]  # (N_i, D) each
        if self.cls_token is not None:  # [cls; tokens], the class token at grid position 0
            tokens = [torch.cat([self.cls_token, t]) for t in tokens]  # (1 + N_i, D)
            coords = [torch.cat([c.new_zeros(1, c.shape[1]), c]) for c in coords]
        packed = pad_to_longest(tokens, coords) if padded else pack(tokens, coords, budget)
        attention = PackedAttention(packed, backend)
        z = packed.tokens  # (R, L, D)
        for block in self.blocks:
            z = block(z, attention)
        pooled = packed.pool(self.norm(z), "first" if self.cls_token is not None else "mean")  # (S, D)
        return self.head(pooled)  # (S, num_classes)

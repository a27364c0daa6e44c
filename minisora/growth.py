"""Growing a trained DiT deeper without changing what it computes (progressive stacking).

Gong et al. (2019, "Efficient Training of BERT by Progressively Stacking", ICML) train a shallow model, copy its
blocks on top of themselves and train on: the deep model starts from what the shallow one learned. Here each
period of the attention cycle (a spatial and a temporal block when factorized) is followed by copies of itself,
so every copy keeps the attention mode of its original:

    depth 4 -> 8, factorized:   [s0 t1] [s2 t3]   ->   [s0 t1] [s0' t1'] [s2 t3] [s2' t3']

A copy is made the identity the way adaLN-Zero starts a block (DiT, Peebles & Xie 2023): its two gates are zero,
and so are the two paths that have no gate, the local convolution and cross-attention's output projection. The
grown model computes exactly what the shallow one did; training opens the copies.
"""

from __future__ import annotations

import torch

from .dit import ATTENTIONS, DiT, DiTBlock


def source_blocks(depth: int, start_depth: int, period: int) -> list[tuple[int, bool]]:
    """For each block of the grown model: (the start model's block it copies, whether it is a new copy)."""
    if depth % start_depth or start_depth % period:
        raise ValueError(f"growing depth {start_depth} to {depth} needs a whole multiple of it, and a start depth "
                         f"that is whole periods of the attention cycle ({period} blocks)")
    copies = depth // start_depth
    return [((j // period // copies) * period + j % period, j // period % copies != 0) for j in range(depth)]


@torch.no_grad()
def silence(block: DiTBlock) -> None:
    """Make a block the identity: zero gates (adaLN's gate_1 and gate_2 rows), no convolution, no cross-attention."""
    dim = block.norm1.normalized_shape[0]
    modulation = block.adaLN[-1]  # Linear(D, 6D): shift_1, scale_1, gate_1, shift_2, scale_2, gate_2
    for gate in (2, 5):
        modulation.weight[gate * dim:(gate + 1) * dim] = 0
        modulation.bias[gate * dim:(gate + 1) * dim] = 0
    for layer in ([block.local.conv] if block.local is not None else []) + [block.cross.proj]:
        layer.weight.zero_()
        layer.bias.zero_()


def grow(start: DiT, model: DiT) -> None:
    """Load ``start``'s weights into ``model``, the same DiT but deeper; the extra blocks are silenced copies."""
    if not (isinstance(start, DiT) and isinstance(model, DiT)):
        raise ValueError(f"only minisora's DiT can grow, got {type(start).__name__} -> {type(model).__name__}")
    if model.config.skips:
        raise ValueError("growing a DiT with U-ViT skips is not supported: the skips pair blocks by depth")
    sources = source_blocks(model.config.depth, start.config.depth, len(ATTENTIONS[model.config.attention]))
    rest = {k: v for k, v in start.state_dict().items() if not k.startswith("blocks.")}
    missing, unexpected = model.load_state_dict(rest, strict=False)
    if unexpected or any(not k.startswith("blocks.") for k in missing):
        raise ValueError(f"can only grow a DiT of the same shape but depth; keys differ: {missing + unexpected}")
    for block, (source, new) in zip(model.blocks, sources):
        block.load_state_dict(start.blocks[source].state_dict())
        if new:
            silence(block)

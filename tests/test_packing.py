"""Patch n' Pack: budgets, masks, packed == separate, dropping, positions for unseen grids."""

import math
import warnings

import pytest
import torch

from minisora.bench import bench_packing, random_inputs
from minisora.packing import (FactorizedPositions, NaViT, PackedAttention, drop_tokens, greedy_pack, pack,
                              pad_to_longest)
from minisora.vit import Attention, ViT


def sequences(lengths, dim=8, axes=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = [torch.randn(n, dim, generator=g) for n in lengths]
    coords = [torch.randint(0, 5, (n, axes), generator=g) for n in lengths]
    return tokens, coords


@pytest.mark.parametrize("seed", range(5))
def test_packing_respects_the_budget_and_loses_no_token(seed):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 65, (40,), generator=g).tolist()
    tokens, coords = sequences(lengths, seed=seed)
    packed = pack(tokens, coords, budget=64)
    assert packed.tokens.shape[1] == 64
    rows = greedy_pack(lengths, 64)
    assert sorted(i for row in rows for i in row) == list(range(40))
    assert all(sum(lengths[i] for i in row) <= 64 for row in rows)
    for i, (t, c) in enumerate(zip(packed.unpack(packed.tokens), packed.unpack(packed.coords))):
        assert torch.equal(t, tokens[i]) and torch.equal(c, coords[i])
    ids = packed.seq_ids
    assert int((ids >= 0).sum()) == sum(lengths)
    # padding only at the end of rows: once a row has padding, the rest of it is padding
    assert not ((ids[:, :-1] < 0) & (ids[:, 1:] >= 0)).any()


def test_too_long_a_sequence_is_a_clear_error():
    tokens, coords = sequences([10, 70, 5])
    with pytest.raises(ValueError, match="sequence 1 has 70 tokens, more than the row budget of 64"):
        pack(tokens, coords, budget=64)


def test_mask_is_block_diagonal():
    tokens, coords = sequences([3, 2, 4])
    packed = pack(tokens, coords, budget=6)  # rows: [4 | pad pad], [3 2 | pad]
    mask = packed.mask()[:, 0]
    ids = packed.seq_ids
    for r in range(len(ids)):
        for i in range(ids.shape[1]):
            for j in range(ids.shape[1]):
                real = ids[r, i] >= 0 and ids[r, j] >= 0
                expected = bool(ids[r, i] == ids[r, j]) if real else (i == j and ids[r, i] < 0)
                assert bool(mask[r, i, j]) == expected


@pytest.mark.parametrize("backend", ["dense", "loop", "flex"])
def test_attention_never_crosses_sequences(backend):
    torch.manual_seed(0)
    attn = Attention(16, heads=2)
    tokens, coords = sequences([5, 7, 3, 6], dim=16)
    packed = pack(tokens, coords, budget=12)
    perturbed = [t.clone() for t in tokens]
    perturbed[1] += torch.randn_like(perturbed[1])
    with warnings.catch_warnings(), torch.no_grad():  # flex on CPU: forward only, unfused (it warns)
        warnings.simplefilter("ignore")
        out = packed.unpack(attn(packed.tokens, PackedAttention(packed, backend)))
        packed2 = pack(perturbed, coords, budget=12)
        out2 = packed2.unpack(attn(packed2.tokens, PackedAttention(packed2, backend)))
    for i in (0, 2, 3):
        torch.testing.assert_close(out[i], out2[i])
    assert not torch.allclose(out[1], out2[1])


@pytest.mark.parametrize("positions", ["learned", "sincos"])
@pytest.mark.parametrize("kind, patch, grid", [("images", (4, 4), (16, 16)), ("videos", (2, 8, 8), (10, 8, 8))])
def test_packed_forward_equals_each_sequence_alone(positions, kind, patch, grid):
    torch.manual_seed(0)
    model = NaViT(dim=32, depth=2, heads=4, patch_size=patch, max_grid=grid, positions=positions).eval()
    inputs = random_inputs(kind, 7, torch.Generator().manual_seed(1))
    with torch.no_grad():
        alone = torch.cat([model([x]) for x in inputs])
        for backend in ("dense", "loop"):
            torch.testing.assert_close(model(inputs, budget=math.prod(grid), backend=backend), alone,
                                       rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(model(inputs, backend=backend, padded=True), alone, rtol=1e-4, atol=1e-5)


def test_drop_rate_zero_changes_nothing_and_dropping_keeps_order():
    torch.manual_seed(0)
    model = NaViT(dim=32, depth=2, heads=4).eval()
    inputs = random_inputs("images", 5, torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(model(inputs, drop_rate=0.0), model(inputs))
    tokens, coords = sequences([10, 20, 1])
    kept, kept_coords = drop_tokens(tokens, coords, [0.5, 0.25, 0.9], torch.Generator().manual_seed(0))
    assert [len(t) for t in kept] == [5, 15, 1]
    for t, k in zip(tokens, kept):  # kept tokens are a subsequence of the original, in order
        idx = [int((t == row).all(1).nonzero()) for row in k]
        assert idx == sorted(idx)
    with pytest.raises(ValueError, match=r"drop rate in \[0, 1\)"):
        drop_tokens(tokens, coords, 1.0)


def test_positions_for_unseen_grid_sizes():
    pos = FactorizedPositions((8, 8), 16)
    seen = pos(torch.tensor([[2, 3]]))
    torch.testing.assert_close(seen, pos.tables[0][2:3] + pos.tables[1][3:4])
    assert pos(torch.tensor([[7, 7]])).shape == (1, 16)  # a corner no 4x7 or 7x4 grid has
    with pytest.raises(ValueError, match="grid coordinate 9 on axis 1 is beyond the learned table of 8"):
        pos(torch.tensor([[0, 9]]))
    model = NaViT(dim=32, depth=1, heads=4, positions="sincos", max_grid=(4, 4)).eval()
    assert model([torch.rand(1, 96, 20)]).shape == (1, 10)  # 24 x 5 patches, beyond any table


def test_pad_to_longest_and_utilisation():
    tokens, coords = sequences([10, 30, 20])
    padded = pad_to_longest(tokens, coords)
    assert padded.tokens.shape[:2] == (3, 30) and abs(padded.utilisation - 60 / 90) < 1e-6
    assert pack(tokens, coords, budget=30).utilisation == 1.0  # 30 | 10 + 20


def test_bench_runs_and_packing_wastes_less():
    result = bench_packing("images", batch=16, steps=1, batches=5, progress=False)
    assert result["utilisation"]["packed"] > result["utilisation"]["padded"]
    assert set(result["step_seconds"]) == {"packed/loop", "packed/dense", "padded/loop", "padded/dense"}


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_navit_from_vit_computes_exactly_the_vit(pool):
    torch.manual_seed(0)
    vit = ViT(dim=32, depth=2, heads=4, pool=pool).eval()
    navit = NaViT.from_vit(vit).eval()
    x = torch.rand(6, 1, 28, 28)
    with torch.no_grad():
        for backend in ("loop", "dense"):
            torch.testing.assert_close(navit(list(x), budget=120, backend=backend), vit(x), rtol=1e-5, atol=1e-5)
        assert navit([torch.rand(1, 16, 44)]).shape == (1, 10)

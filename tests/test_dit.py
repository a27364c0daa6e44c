"""The spacetime DiT: shapes, adaLN-Zero at init, independence of clips, attention modes, costs, errors, and the
shipped DiTs against their manifests."""

import json

import pytest
import torch

from minisora.digits import DATA_DIR
from minisora.dit import (ATTENTIONS, PRESETS, DiT, DiTBlock, DiTConfig, block_modes, flops_per_clip, get_preset,
                          parameter_count, tokens_per_clip)
from minisora.sample import load_dit


def perturb(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights everywhere (including the zero-initialised layers), so outputs are not trivially 0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


def inputs(model: DiT, batch: int = 3, frames: int = 20, size: int = 16):
    x = torch.randn(batch, model.config.in_channels, frames, size, size)
    ids = model.tokenizer.batch(["3", "1 and 8", "a 5 starts at the top and moves up."][:batch] + ["0"] * (batch - 3))
    return x, torch.tensor([10.0, 500.0, 990.0] * batch)[:batch], ids


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("attention", list(ATTENTIONS))
def test_shapes_for_every_preset_and_attention(preset, attention):
    config = get_preset(preset, attention=attention)
    if preset in ("small", "base"):  # build only: a forward pass is too slow for a unit test
        model = DiT(config)
        assert parameter_count(model) > 1e6 and flops_per_clip(config) > 0
        return
    model = perturb(DiT(config))
    x, t, ids = inputs(model)
    assert model(x, t, ids).shape == x.shape
    other = torch.randn(2, 4, 8, 32, 24)  # another grid: fixed sin-cos positions work for any size
    assert model(other, t[:2], ids[:2]).shape == other.shape


def test_adaln_zero_blocks_are_the_identity_at_init_and_output_is_zero():
    model = DiT(get_preset("micro"))
    x = torch.randn(2, 10, 32)
    c, text = torch.randn(2, 32), torch.randn(2, 5, 32)
    words = torch.ones(2, 5, dtype=torch.bool)
    block = DiTBlock(32, 2, 32)
    out = block(x, c, text, words, (2, 1, 5))
    cross = block.cross(block.norm_cross(x), text, words)
    torch.testing.assert_close(out, x + cross)  # both gated branches are off: only cross-attention is added
    xs, t, ids = inputs(model)
    assert torch.equal(model(xs, t, ids), torch.zeros_like(xs))  # zero-initialised final layer


@pytest.mark.parametrize("attention", list(ATTENTIONS))
def test_clips_in_a_batch_do_not_influence_each_other(attention):
    model = perturb(DiT(get_preset("micro", attention=attention))).eval()
    x, t, ids = inputs(model)
    out = model(x, t, ids)
    x2, ids2 = x.clone(), ids.clone()
    x2[1] = torch.randn_like(x2[1])
    ids2[1] = model.tokenizer.encode("9 and 9")
    out2 = model(x2, t, ids2)
    torch.testing.assert_close(out2[[0, 2]], out[[0, 2]], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out2[1], out[1])


def test_factorized_attention_mixes_only_within_frames_or_positions():
    torch.manual_seed(0)
    for mode, same in (("spatial", lambda a, b: a[0] == b[0]), ("temporal", lambda a, b: a[1:] == b[1:])):
        block = perturb(DiTBlock(16, 2, 16, mode))  # cross-attention and MLP act per token: only self-attention mixes
        grid = (3, 2, 2)
        x = torch.randn(1, 12, 16, requires_grad=True)
        out = block(x, torch.randn(1, 16), torch.randn(1, 2, 16), torch.ones(1, 2, dtype=torch.bool), grid)
        cells = [(t, h, w) for t in range(3) for h in range(2) for w in range(2)]
        out[0, 5].sum().backward()  # token (1, 0, 1)
        touched = {cells[i] for i in range(12) if x.grad[0, i].abs().sum() > 0}
        assert touched == {c for c in cells if same(c, cells[5])}, mode


def test_block_modes_and_costs():
    assert block_modes(get_preset("tiny", attention="factorized")) == ["spatial", "temporal"] * 2
    assert block_modes(get_preset("tiny", attention="hybrid")) == ["spatial", "full"] * 2
    full, fact, hybrid = (get_preset("small", attention=a) for a in ("full", "factorized", "hybrid"))
    assert flops_per_clip(fact) < flops_per_clip(hybrid) < flops_per_clip(full)  # factorized sees fewest tokens
    assert tokens_per_clip(get_preset("tiny")) == (10, 8, 8)
    assert flops_per_clip(full, training=True) == 3 * flops_per_clip(full, training=False)


def test_clear_errors():
    model = DiT(get_preset("micro"))
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        get_preset("huge")
    with pytest.raises(ValueError, match=r"expected latent videos \(B, 4, T, H, W\)"):
        model(torch.randn(1, 1, 20, 16, 16), torch.zeros(1), model.null_ids(1))
    with pytest.raises(ValueError, match="latent H=18 is not divisible by the patch size 4"):
        model(torch.randn(1, 4, 20, 18, 16), torch.zeros(1), model.null_ids(1))
    with pytest.raises(ValueError, match="attention must be"):
        DiT(get_preset("micro", attention="sparse"))
    with pytest.raises(ValueError, match=r"vae must be one of \['frame', 'frame-se', 'frame-eq', 'frame-eqe', 'spacetime', 'none'\], got 'sd'"):
        get_preset("micro", vae="sd")


def test_training_speed_benchmark_runs():
    from minisora.bench import bench_train, format_train

    result = bench_train(("micro",), batch=2, steps=1, progress=False)
    (row,) = result["rows"]
    assert row["preset"] == "micro" and row["steps_per_s"] > 0 and row["tflop_per_s"] > 0
    assert "micro" in format_train(result)


def test_a_time_per_frame_modulates_each_frame_of_tubelets():
    torch.manual_seed(0)
    model = DiT(get_preset("micro")).eval()
    for p in model.parameters():  # leave adaLN-Zero's zeros: every path must carry signal
        torch.nn.init.normal_(p, std=0.1)
    x, ids = torch.randn(2, 4, 8, 16, 16), model.null_ids(2)
    time = torch.tensor([300.0, 700.0])
    same = model(x, time[:, None].expand(2, 8), ids)
    torch.testing.assert_close(same, model(x, time, ids))  # one time per frame, all equal == one per clip
    per_frame = time[:, None].expand(2, 8).clone()
    per_frame[:, :2] = 0  # the first frame of tubelets (2 latent frames) is given
    out = model(x, per_frame, ids)
    assert not torch.allclose(out, same)
    with pytest.raises(ValueError, match=r"one time per clip \(B,\) or per frame \(B, T\) = \(2, 8\)"):
        model(x, torch.zeros(2, 5), ids)


@pytest.mark.parametrize("option", ["conv", "skips"])
def test_small_model_options_keep_clips_apart_and_cost_flops(option):
    config = get_preset("micro", **{option: True})
    model = perturb(DiT(config)).eval()
    x, t, ids = inputs(model)
    out = model(x, t, ids)
    assert out.shape == x.shape
    x2 = x.clone()
    x2[1] = torch.randn_like(x2[1])
    torch.testing.assert_close(model(x2, t, ids)[[0, 2]], out[[0, 2]], atol=1e-5, rtol=1e-5)
    assert flops_per_clip(config) > flops_per_clip(get_preset("micro"))


def test_local_conv_mixes_exactly_the_3x3x3_neighbourhood():
    from minisora.dit import LocalConv

    local = perturb(LocalConv(8))
    grid = (3, 4, 4)
    cells = [(t, h, w) for t in range(3) for h in range(4) for w in range(4)]
    x = torch.randn(1, len(cells), 8, requires_grad=True)
    i = cells.index((1, 0, 2))
    local(x, grid)[0, i].sum().backward()
    touched = {cells[j] for j in range(len(cells)) if x.grad[0, j].abs().sum() > 0}
    assert touched == {c for c in cells if all(abs(a - b) <= 1 for a, b in zip(c, cells[i]))}


def test_conv_block_starts_as_the_block_without_it():
    torch.manual_seed(0)
    plain, conv = DiTBlock(16, 2, 16), DiTBlock(16, 2, 16, conv=True)
    conv.load_state_dict(plain.state_dict(), strict=False)  # the conv branch keeps its zero init
    args = (torch.randn(2, 12, 16), torch.randn(2, 16), torch.randn(2, 3, 16), torch.ones(2, 3, dtype=torch.bool),
            (3, 2, 2))
    torch.testing.assert_close(conv(*args), plain(*args))


def test_rotary_attention_depends_on_offsets_only():
    from minisora.dit import RotaryAttention, rope_angles

    torch.manual_seed(0)
    attn = perturb(RotaryAttention(32, 2))
    grid = (4, 3, 3)
    x = torch.randn(1, 4 * 3 * 3, 32)
    angles = rope_angles(grid, 16)
    shifted = rope_angles((6, 5, 5), 16).reshape(6, 5, 5, 8)[2:, 1:4, 2:5].reshape(-1, 8)  # the same grid, moved
    torch.testing.assert_close(attn(x, angles), attn(x, shifted), atol=1e-5, rtol=1e-4)
    assert not torch.allclose(attn(x, angles), attn(x, angles.flip(0)), atol=1e-3)


@pytest.mark.parametrize("attention", list(ATTENTIONS))
def test_rope_model_keeps_clips_apart_and_any_grid(attention):
    model = perturb(DiT(get_preset("micro", attention=attention, rope=True))).eval()
    x, t, ids = inputs(model)
    out = model(x, t, ids)
    x2 = x.clone()
    x2[1] = torch.randn_like(x2[1])
    torch.testing.assert_close(model(x2, t, ids)[[0, 2]], out[[0, 2]], atol=1e-5, rtol=1e-5)
    other = torch.randn(2, 4, 8, 32, 24)
    assert model(other, t[:2], ids[:2]).shape == other.shape


@pytest.mark.parametrize("manifest", sorted(DATA_DIR.glob("dit_*.json")), ids=lambda p: p.stem)
def test_each_shipped_dit_is_the_model_its_manifest_describes(manifest):
    m = json.loads(manifest.read_text())
    weights = manifest.with_suffix(".pt")
    assert weights.stat().st_size == m["weights_bytes"], "the weights are not the ones the manifest measured"
    model, train = load_dit(weights)
    described = {k: tuple(v) if isinstance(v, list) else v for k, v in m["config"].items()}
    assert model.config == DiTConfig(**described)  # fields newer than the manifest at their defaults
    assert train["vae"] == m["settings"]["vae"] and train["steps"] == m["settings"]["steps"]
    assert m["command"].startswith("python -m minisora train") and m["code_version"] and m["device"]

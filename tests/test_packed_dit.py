"""The DiT on packed rows: clips of any shapes in one pass, each as if it were alone."""

import pytest
import torch

from minisora.dit import DiT, get_preset
from minisora.packing import ClipLayout

SHAPES = [(4, 16, 16), (2, 16, 32), (8, 32, 16), (2, 16, 16), (6, 24, 8)]  # latent (T, H, W): square, wide, tall...


def clips(channels: int, generator: torch.Generator) -> list[torch.Tensor]:
    return [torch.randn(channels, *shape, generator=generator) for shape in SHAPES]


@pytest.mark.parametrize("backend", ["dense", "loop"])
@pytest.mark.parametrize("options", [dict(attention="full"), dict(attention="factorized"),
                                     dict(attention="factorized", conv=True, rope=True),
                                     dict(attention="hybrid", conv=True, rope=True),
                                     dict(attention="full", rope=True, skips=True, depth=4)])
def test_packed_equals_each_clip_alone(options, backend):
    torch.manual_seed(0)
    model = DiT(get_preset("micro", **options)).eval()
    for p in model.parameters():  # adaLN-Zero starts as the identity: wake every layer up to make the test mean something
        torch.nn.init.normal_(p, std=0.05)
    g = torch.Generator().manual_seed(1)
    xs = clips(model.config.in_channels, g)
    times = [torch.rand((), generator=g) for _ in xs]
    times[1] = torch.rand(SHAPES[1][0], generator=g)  # one clip with a time per latent frame (conditioning frames)
    ids = model.tokenizer.batch(["3", "a 7 starts at the top left and moves right.", "1 and 8", "5", "0 and 9"])
    with torch.no_grad():
        packed = model.forward_packed(xs, times, ids, budget=160, backend=backend)
        alone = [model(x[None], t[None], ids[i:i + 1])[0] for i, (x, t) in enumerate(zip(xs, times))]
    for p, a in zip(packed, alone):
        assert p.shape == a.shape
        torch.testing.assert_close(p, a, atol=2e-5, rtol=1e-4)


def test_layout_masks_keep_clips_frames_and_positions_apart():
    layout = ClipLayout([torch.zeros(8, 1), torch.zeros(4, 1)], [(2, 2, 2), (1, 2, 2)], budget=12)
    full, spatial, temporal = (layout.mask(m)[0, 0] for m in ("full", "spatial", "temporal"))
    assert full[:8, :8].all() and not full[:8, 8:].any() and full[8:, 8:].all()
    assert spatial[0, :4].all() and not spatial[0, 4:].any()  # clip 0, frame 0 sees frame 0 only
    assert temporal[0].nonzero().flatten().tolist() == [0, 4]  # the same cell in both frames
    with pytest.raises(ValueError, match="mode must be one of"):
        layout.mask("diagonal")


def test_packed_batch_checks_its_inputs():
    model = DiT(get_preset("micro"))
    g = torch.Generator().manual_seed(0)
    xs = clips(model.config.in_channels, g)[:2]
    with pytest.raises(ValueError, match="one time and one prompt per clip"):
        model.forward_packed(xs, [torch.tensor(0.5)], model.tokenizer.batch(["3", "4"]))
    with pytest.raises(ValueError, match="not divisible by the patch size"):
        model.forward_packed([torch.randn(4, 3, 16, 16)], [torch.tensor(0.5)], model.tokenizer.batch(["3"]))


def test_packed_loss_equals_the_loss_of_each_clip_alone():
    from minisora.diffusion import RectifiedFlow

    torch.manual_seed(0)
    model = DiT(get_preset("micro", attention="factorized", conv=True, rope=True))
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    obj, g = RectifiedFlow(shift=3.0), torch.Generator().manual_seed(2)
    xs = clips(model.config.in_channels, g)
    t = obj.sample_t(len(xs), "cpu", g)
    noises = [torch.randn(x.shape, generator=g) for x in xs]
    known = [torch.tensor([True, True, False, False]), None, None, None, torch.tensor([False, False, False, False, True, True])]
    ids = model.tokenizer.batch(["3", "4", "5", "6", "7"])
    for lam in (0.0, 1.0):  # with and without the frame-difference term
        packed = obj.packed_loss(model, xs, ids, t, noises, known, lam, budget=160)
        alone = torch.stack([obj.loss(model, x[None], ids[i:i + 1], t=t[i:i + 1], noise=n[None],
                                      known=None if k is None else k[None], frame_difference=lam)
                             for i, (x, n, k) in enumerate(zip(xs, noises, known))]).mean()
        torch.testing.assert_close(packed, alone, atol=1e-6, rtol=1e-5)
    packed.backward()  # and it trains
    assert model.final.linear.weight.grad.abs().sum() > 0


def test_mixed_shapes_fill_the_budget_and_never_use_the_held_out_side():
    import math

    import numpy as np

    from minisora.sizes import HELD_OUT, draw_shapes, patch_grid

    config = get_preset("tiny")
    tokens_of = lambda shape: math.prod(patch_grid(shape, config))
    assert tokens_of((20, 64, 64)) == 640 and tokens_of((1, 64, 128)) == 128  # a still: one frame of tubelets
    steps = [draw_shapes(np.random.default_rng([0, 11, step]), config, 2560) for step in range(200)]
    shapes = [s for step in steps for s in step]
    assert all(2560 - 16 < sum(map(tokens_of, step)) <= 2560 for step in steps)  # filled to within a 32x32 still
    assert not any(side in HELD_OUT for s in shapes for side in s[1:])
    assert any(h > w for _, h, w in shapes) and any(h < w for _, h, w in shapes) and any(f == 1 for f, _, _ in shapes)
    assert max(f for f, _, _ in shapes) == 40


def test_mixed_size_training_resumes_exactly(tmp_path):
    from dataclasses import replace

    from minisora.train import TrainConfig, train

    cfg = TrainConfig(preset="micro", sizes="mixed", p_image=0.0, tokens=400, steps=4, sample_every=0, log_every=1,
                      out=str(tmp_path / "straight"))
    train(cfg, progress=False)
    train(replace(cfg, out=str(tmp_path / "split"), stop_at=2), progress=False)
    train(replace(cfg, out=str(tmp_path / "split")), resume=True, progress=False)
    a, b = (torch.load(tmp_path / run / "ckpt.pt", weights_only=True)["ema"] for run in ("straight", "split"))
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=0, rtol=0)
    with pytest.raises(ValueError, match="use --p-image 0"):
        replace(cfg, p_image=0.25)


def test_bench_sizes_measures_packed_padded_and_buckets():
    from minisora.bench import bench_sizes, format_sizes

    result = bench_sizes("micro", clips=6, budget=640, steps=1, backends=("loop",), progress=False)
    u = result["utilisation"]
    assert 0 < u["padded"] <= u["packed"] <= 1 and u["buckets"] == 1
    assert set(result["step_seconds"]) == {"packed/loop", "padded/loop", "buckets"}
    assert "token utilisation" in format_sizes(result)


def test_square_crop_cuts_the_long_side_and_resizes():
    from minisora.sizes import square_crop

    video = torch.zeros(1, 3, 32, 128)  # (C, T, H, W): a wide clip
    video[..., 8:24, 2:18] = 1.0  # a square of ink near the left end: outside the centred 32x32 square
    video[..., 8:24, 56:72] = 0.5  # one in the middle: kept
    out = square_crop(video)
    assert out.shape == (1, 3, 64, 64)
    assert out.max() == pytest.approx(0.5)  # the left square is gone, the middle one enlarged 2x
    assert (out > 0.25).float().mean() == pytest.approx((32 / 64) ** 2, abs=0.02)
    torch.testing.assert_close(square_crop(torch.ones(1, 1, 128, 128)), torch.ones(1, 1, 64, 64))


def test_cropped_clips_are_squares_with_short_captions():
    from minisora.train import TrainingClips

    data = TrainingClips(0, (1, 2), p_descriptive=1.0, num_clips=8, cropped=True)
    videos, captions = data.batch(range(8))
    assert videos.shape == (8, 1, 20, 64, 64)
    assert all(len(c.split()) <= 3 for c in captions)  # "3" or "3 and 7", never a description of the lost canvas

"""Visualisation helpers: conversions, GIF round trips, deterministic inline animations."""

import io

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from minisora.viz import animate, frame_strip, gif_bytes, save_gif, tile, to_uint8

matplotlib.use("Agg")


def random_video(T=5, H=12, W=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (T, H, W), dtype=np.uint8)


def test_to_uint8_accepts_model_layouts():
    v = random_video()
    np.testing.assert_array_equal(to_uint8(v), v)
    as_float = torch.from_numpy(v).float().div(255).unsqueeze(0)  # (1, T, H, W) in [0, 1]
    np.testing.assert_array_equal(to_uint8(as_float), v)
    with pytest.raises(ValueError, match=r"shape \(T, H, W\) or \(1, T, H, W\), got \(2, 5, 12, 16\)"):
        to_uint8(np.zeros((2, 5, 12, 16)))
    with pytest.raises(ValueError, match="dtype int64"):
        to_uint8(np.zeros((5, 12, 16), np.int64))


def test_gif_round_trip_is_lossless():
    v = random_video()
    frames = [np.asarray(f.convert("L")) for f in ImageSequence.Iterator(Image.open(io.BytesIO(gif_bytes(v))))]
    np.testing.assert_array_equal(np.stack(frames), v)


def test_tile_and_save(tmp_path):
    out = tile([random_video(), random_video(seed=1), random_video(seed=2)], ncols=2, pad=2)
    assert out.shape == (5, 2 * (12 + 2) + 2, 2 * (16 + 2) + 2)
    np.testing.assert_array_equal(out[:, 2:14, 20:36], random_video(seed=1))
    with pytest.raises(ValueError, match="same number of frames"):
        tile([random_video(T=5), random_video(T=6)])
    gif = Image.open(save_gif([random_video(), random_video(seed=1)], tmp_path / "a.gif", scale=3))
    assert gif.size == (3 * (2 * 16 + 6), 3 * (12 + 4)) and gif.n_frames == 5


def test_animation_html_is_deterministic():
    a = animate([random_video(), random_video(seed=1)], titles=["x < y", "b"])
    html = a._repr_html_()
    assert html == animate([random_video(), random_video(seed=1)], titles=["x < y", "b"])._repr_html_()
    assert html.count("data:image/gif;base64,") == 2 and "x &lt; y" in html
    assert "2 video(s)" in repr(a)
    with pytest.raises(ValueError, match="got 1 titles for 2 videos"):
        animate([random_video(), random_video()], titles=["one"])


def test_frame_strip_draws_every_frame():
    fig = frame_strip([random_video(T=6), random_video(T=6)], titles=["a", "b"], every=2)
    assert len(fig.axes) == 2 * 3
    assert [ax.get_title() for ax in fig.axes[:3]] == ["0", "2", "4"]

"""Moving MNIST: geometry of both protocols, determinism, digit splits, export, errors."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from minisora.data import (PRESETS, MovingMNIST, MovingMNISTConfig, export, get_config, make_clip, render,
                           sample_motion, standard_test_set)
from minisora.digits import load_digits

STANDARD, STOCHASTIC = PRESETS["standard"], PRESETS["stochastic"]


@pytest.fixture(scope="module")
def train_digits():
    return load_digits("train", "mnist5k")


def motions(config, n=200, seed=0):
    rng = np.random.default_rng(seed)
    return [sample_motion(rng, config) for _ in range(n)]


# --- standard protocol ------------------------------------------------------------------------

def openstl_corners(rng, seq_length=20, image_size=64, digit_size=28, step_length=0.1):
    """OpenSTL's get_random_trajectory, in its own normalised units, fed the same random draws."""
    canvas_size = image_size - digit_size
    y, x = rng.random(), rng.random()
    theta = rng.random() * 2 * np.pi
    v_y, v_x = np.sin(theta), np.cos(theta)
    ys, xs = np.zeros(seq_length), np.zeros(seq_length)
    for i in range(seq_length):
        y += v_y * step_length
        x += v_x * step_length
        if x <= 0:
            x, v_x = 0, -v_x
        if x >= 1.0:
            x, v_x = 1.0, -v_x
        if y <= 0:
            y, v_y = 0, -v_y
        if y >= 1.0:
            y, v_y = 1.0, -v_y
        ys[i], xs[i] = y, x
    return np.stack([(canvas_size * ys).astype(np.int32), (canvas_size * xs).astype(np.int32)], -1)


def test_standard_matches_openstl_reference():
    config = get_config("standard", num_digits=1)
    for seed in range(300):
        ours = np.floor(sample_motion(np.random.default_rng(seed), config).positions[:, 0])  # (T, 2)
        ref = openstl_corners(np.random.default_rng(seed))
        np.testing.assert_array_equal(ours, ref, err_msg=f"seed {seed}")


def test_standard_speed_between_bounces_is_3_6_px():
    for m in motions(STANDARD):
        step = np.diff(m.positions, axis=0)  # (T-1, K, 2)
        free_flight = ~m.bounces[1:].any(-1)  # (T-1, K): no clamp at the frame stepped to
        speeds = np.linalg.norm(step, axis=-1)[free_flight]
        np.testing.assert_allclose(speeds, 3.6, atol=1e-4)
        np.testing.assert_allclose(np.linalg.norm(m.velocities, axis=-1), 3.6, atol=1e-5)


def test_standard_bounce_clamps_and_flips():
    free = np.array(STANDARD.free, np.float32)
    n_bounces = 0
    for m in motions(STANDARD):
        assert (m.positions >= 0).all() and (m.positions <= free).all()  # digits stay in the canvas
        T = len(m.positions)
        for t, k, axis in zip(*np.nonzero(m.bounces)):
            n_bounces += 1
            side = m.bounces[t, k, axis]
            assert m.positions[t, k, axis] == (0 if side < 0 else free[axis])  # clamped to the wall
            assert np.sign(m.velocities[t, k, axis]) == -side  # now moving away from it
            if t > 0:
                assert m.velocities[t, k, axis] == -m.velocities[t - 1, k, axis]  # flipped
        for t in range(1, T):  # without a bounce, a velocity component never changes
            still = m.bounces[t] == 0
            np.testing.assert_array_equal(m.velocities[t][still], m.velocities[t - 1][still])
    assert n_bounces > 100  # the loop above really exercised bounces


def test_start_is_uniform_on_the_free_area():
    config = get_config("standard", num_digits=1, num_frames=1, step=1e-3)
    starts = np.concatenate([m.positions[0] for m in motions(config, n=4000)])  # (N, 2)
    assert starts.min() >= 0 and starts.max() <= 36
    np.testing.assert_allclose(starts.mean(0), 18, atol=0.6)  # U[0, 36]: mean 18, sd 10.4
    np.testing.assert_allclose(starts.std(0), 36 / math.sqrt(12), atol=0.5)


def test_render_pixelwise_max_for_standard():
    a = np.full((28, 28), 100, np.uint8)
    b = np.zeros((28, 28), np.uint8)
    b[10:20, 10:20] = 200
    pos = np.array([[[0, 0], [5, 5]]], np.float32)  # (T=1, K=2, 2), overlapping boxes
    video = render(np.stack([a, b]), pos, STANDARD)
    expected = np.zeros((64, 64), np.uint8)
    expected[0:28, 0:28] = 100
    expected[5:33, 5:33] = np.maximum(expected[5:33, 5:33], b)
    np.testing.assert_array_equal(video[0], expected)


def test_video_shows_each_digit_at_its_position(train_digits):
    config = get_config("standard", num_digits=1)
    clip = make_clip(np.random.default_rng(3), train_digits, config)
    sprite = train_digits.images[clip.digit_ids[0]]
    for t in range(config.num_frames):
        y, x = np.floor(clip.motion.positions[t, 0]).astype(int)
        np.testing.assert_array_equal(clip.video[t, y:y + 28, x:x + 28], sprite)
        outside = clip.video[t].copy()
        outside[y:y + 28, x:x + 28] = 0
        assert not outside.any()


# --- stochastic variant -----------------------------------------------------------------------

def test_stochastic_bounce_redraws_velocity_away_from_wall():
    hi = np.array(STOCHASTIC.free) - 1
    n_bounces = 0
    for m in motions(STOCHASTIC):
        v = m.velocities
        assert (v == np.round(v)).all() and (np.abs(v) <= 4).all()  # integers in [-4, 4]
        assert (m.positions >= 0).all() and (m.positions <= hi).all()
        for t, k, axis in zip(*np.nonzero(m.bounces)):
            n_bounces += 1
            side = m.bounces[t, k, axis]
            assert m.positions[t, k, axis] == (0 if side < 0 else hi[axis])
            corner_y = axis == 0 and m.bounces[t, k, 1] != 0  # SVG: the x bounce then redraws v_y too
            if not corner_y:
                assert 1 <= -side * v[t, k, axis] <= 4  # redrawn, pointing away from the wall
        for t in range(1, len(m.positions)):  # free flight: p_t = p_{t-1} + v_{t-1}
            free = ~m.bounces[t].any(-1)
            np.testing.assert_array_equal(m.positions[t][free], (m.positions[t - 1] + v[t - 1])[free])
            np.testing.assert_array_equal(v[t][free], v[t - 1][free])
    assert n_bounces > 100


def test_stochastic_sums_then_clips(train_digits):
    a = np.full((32, 32), 200, np.uint8)
    b = np.full((32, 32), 100, np.uint8)
    video = render(np.stack([a, b]), np.array([[[0, 0], [16, 16]]], np.float32), STOCHASTIC)
    assert video[0, 0, 0] == 200 and video[0, 40, 40] == 100
    assert video[0, 20, 20] == 255  # 200 + 100 clipped
    clip = make_clip(np.random.default_rng(0), train_digits, STOCHASTIC)
    assert clip.video.shape == (20, 64, 64)


# --- generalised clips ------------------------------------------------------------------------

@pytest.mark.parametrize("overrides", [dict(height=48, width=96), dict(num_digits=3, num_frames=7),
                                       dict(num_digits=1, digit_size=20, height=40, width=30)])
@pytest.mark.parametrize("preset", ["standard", "stochastic"])
def test_any_canvas_length_and_digit_count(train_digits, preset, overrides):
    config = get_config(preset, **overrides)
    clip = make_clip(np.random.default_rng(1), train_digits, config)
    T, K = config.num_frames, config.num_digits
    assert clip.video.shape == (T, config.height, config.width) and clip.video.dtype == np.uint8
    assert clip.labels.shape == (K,) and clip.motion.positions.shape == (T, K, 2)
    assert (clip.motion.positions <= np.array(config.free)).all()
    assert clip.video.any()


def test_forced_labels(train_digits):
    clip = make_clip(np.random.default_rng(0), train_digits, STANDARD, labels=[3, 7])
    assert clip.labels.tolist() == [3, 7] and clip.caption == "3 and 7"


# --- datasets ---------------------------------------------------------------------------------

def test_clip_i_is_always_the_same():
    a = MovingMNIST("train", 50, seed=5, digits="mnist5k")
    b = MovingMNIST("train", 50, seed=5, digits="mnist5k")
    for i in [7, 0, 49, 7]:  # any order
        x, y = a[i], b[i]
        assert torch.equal(x["video"], y["video"]) and x["description"] == y["description"]
    assert not torch.equal(a[0]["video"], a[1]["video"])
    assert not torch.equal(a[0]["video"], MovingMNIST("train", 50, seed=6, digits="mnist5k")[0]["video"])


def test_item_layout():
    item = MovingMNIST("test", 3, digits="mnist5k")[2]
    assert item["video"].shape == (1, 20, 64, 64) and item["video"].dtype == torch.float32
    assert 0 <= item["video"].min() and item["video"].max() <= 1
    assert item["positions"].shape == (20, 2, 2) and item["bounces"].shape == (20, 2, 2)
    assert item["caption"] == " and ".join(str(int(x)) for x in item["labels"])


def test_dataloader_with_workers_gives_the_same_clips():
    ds = MovingMNIST("train", 8, seed=1, digits="mnist5k")
    batches = list(DataLoader(ds, batch_size=4, num_workers=2))
    assert batches[0]["video"].shape == (4, 1, 20, 64, 64) and len(batches[0]["caption"]) == 4
    for b, batch in enumerate(batches):
        for j in range(4):
            assert torch.equal(batch["video"][j], ds[4 * b + j]["video"])


def test_train_and_test_digits_are_disjoint_and_stratified():
    train, test = load_digits("train", "mnist5k"), load_digits("test", "mnist5k")
    assert np.bincount(train.labels).tolist() == [400] * 10
    assert np.bincount(test.labels).tolist() == [100] * 10
    train_set = {img.tobytes() for img in train.images}
    assert not any(img.tobytes() in train_set for img in test.images)


def test_test_clips_use_test_digits_only():
    test = load_digits("test", "mnist5k")
    train_set = {img.tobytes() for img in load_digits("train", "mnist5k").images}
    ds = MovingMNIST("test", 30, digits="mnist5k")
    for i in range(30):
        clip = ds.clip(i)
        for k, idx in enumerate(clip.digit_ids):
            assert test.images[idx].tobytes() not in train_set
            assert clip.labels[k] == test.labels[idx]


def test_train_and_test_motions_differ_for_the_same_seed():
    a, b = MovingMNIST("train", 1, digits="mnist5k"), MovingMNIST("test", 1, digits="mnist5k")
    assert not np.array_equal(a.clip(0).motion.positions, b.clip(0).motion.positions)


def test_standard_test_set():
    ds = standard_test_set("mnist5k")
    assert len(ds) == 10_000 and ds.split == "test" and ds.config == STANDARD


# --- export -----------------------------------------------------------------------------------

def test_export_layout(tmp_path):
    ds = MovingMNIST("test", 6, seed=2, config="standard", digits="mnist5k", height=48, width=80)
    summary = export(ds, tmp_path, "clips", preview=4, progress=False)
    videos = np.load(tmp_path / "clips.npy")
    assert videos.shape == (20, 6, 48, 80) and videos.dtype == np.uint8  # (T, N, H, W)
    for i in range(6):
        np.testing.assert_array_equal(videos[:, i], ds.clip(i).video)
    meta = np.load(tmp_path / "clips_meta.npz")
    assert meta["positions"].shape == (6, 20, 2, 2) and meta["labels"].shape == (6, 2)
    np.testing.assert_array_equal(meta["bounces"][3], ds.clip(3).motion.bounces)
    captions = json.loads((tmp_path / "clips_captions.json").read_text())
    assert captions["config"]["width"] == 80 and len(captions["captions"]) == 6
    assert captions["captions"][1]["description"] == ds.clip(1).description
    gif = Image.open(tmp_path / "clips_preview.gif")
    assert gif.n_frames == 20
    assert not list(tmp_path.glob("*tmp*"))
    assert summary["num_clips"] == 6


# --- bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(height=20), "canvas must be larger than a digit"),
    (dict(width=28), "canvas must be larger than a digit"),
    (dict(num_digits=0), "num_digits must be a positive integer, got 0"),
    (dict(num_frames=2.5), "num_frames must be a positive integer, got 2.5"),
    (dict(dynamics="brownian"), "dynamics must be one of"),
    (dict(step=-1.0), "step must be a positive speed"),
])
def test_bad_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MovingMNISTConfig(**kwargs)


def test_bad_dataset_arguments(train_digits):
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        get_config("huge")
    with pytest.raises(ValueError, match=r"unknown config field\(s\) \['frames'\]"):
        get_config("standard", frames=10)
    with pytest.raises(ValueError, match="split must be one of"):
        MovingMNIST("val")
    with pytest.raises(ValueError, match="num_clips must be a positive integer"):
        MovingMNIST("train", 0)
    with pytest.raises(ValueError, match="source must be one of"):
        load_digits("train", "emnist")
    with pytest.raises(IndexError, match="out of range"):
        MovingMNIST("train", 5, digits="mnist5k").clip(5)
    with pytest.raises(ValueError, match="expected 2 labels"):
        make_clip(np.random.default_rng(0), train_digits, STANDARD, labels=[3])
    with pytest.raises(ValueError, match="labels must be digits 0-9"):
        make_clip(np.random.default_rng(0), train_digits, STANDARD, labels=[3, 12])


def test_full_mnist_is_never_downloaded_silently(tmp_path):
    with pytest.raises(FileNotFoundError, match="pass download=True"):
        load_digits("train", "mnist", root=tmp_path)
    assert load_digits("train", "auto", root=tmp_path).source == "mnist5k"
    assert not any(tmp_path.iterdir())

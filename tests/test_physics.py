"""The physics probe: the tracker follows real digits, real clips obey the physics, broken clips do not."""

import numpy as np
import pytest

from minisora.data import MovingMNIST
from minisora.physics import SPEED, probe, probe_track, summarize, track


def clips(n, num_digits):
    data = MovingMNIST("test", n, seed=3, digits="mnist5k", num_digits=num_digits)
    return [data.clip(i) for i in range(n)]


@pytest.fixture(scope="module")
def one_digit():
    return clips(60, 1)


def broken(videos, kind, seed=0):
    rng = np.random.default_rng(seed)
    if kind == "frozen":
        return np.repeat(videos[:, :1], videos.shape[1], axis=1)
    if kind == "shuffled":
        return np.stack([v[rng.permutation(len(v))] for v in videos])
    return rng.random(videos.shape).astype(np.float32)  # noise


def test_the_centroid_moves_exactly_like_the_digit(one_digit):
    for clip in one_digit[:20]:
        steps = np.diff(track(clip.video.astype(np.float32) / 255, 1)[:, 0], axis=0)  # (T-1, 2)
        true = np.diff(np.floor(clip.motion.positions[:, 0]), axis=0)  # the renderer draws at whole pixels
        np.testing.assert_allclose(steps, true, atol=1e-3)


def test_real_one_digit_clips_obey_the_physics(one_digit):
    s = summarize(probe(np.stack([c.video for c in one_digit]).astype(np.float32) / 255, 1))
    assert s["median_speed_error_px"] < 0.15
    assert s["direction_persistence"] > 0.95
    assert s["speed_jitter_px"] < 0.8  # whole-pixel positions: steps of 3.6 px drawn as (3, 2), (2, 3), (3, 3), ...
    assert s["bounces_at_walls"] > 0.95
    # the bounces a tracker can see: not on the first or last frame, on a component moving >= 1 px/frame
    seen = [(c.motion.bounces[1:-1] != 0) & (np.abs(c.motion.velocities[1:-1]) >= 1) for c in one_digit]
    assert abs(s["reversals_per_clip"] - sum(int(b.sum()) for b in seen) / len(one_digit)) < 0.2


@pytest.mark.parametrize("kind", ["frozen", "shuffled", "noise"])
def test_broken_clips_fail_the_physics(one_digit, kind):
    videos = broken(np.stack([c.video for c in one_digit]).astype(np.float32) / 255, kind)
    s = summarize(probe(videos, 1))
    assert s["median_speed_error_px"] > 2.0
    assert s["direction_persistence"] < 0.5
    assert not s["bounces_at_walls"] > 0.5  # nan (no reversal at all) or mostly away from the walls


def test_two_digit_tracks_follow_the_digits_while_apart():
    close = total = 0
    for clip in clips(30, 2):
        centres = track(clip.video.astype(np.float32) / 255, 2)  # (T, 2, 2)
        true = np.floor(clip.motion.positions) + 13.5  # box centres
        apart = (np.abs(true[:, 0] - true[:, 1]) >= 28).any(-1)
        for t in np.flatnonzero(apart):
            error = min(np.abs(centres[t] - true[t]).max(), np.abs(centres[t, ::-1] - true[t]).max())
            close += error < 3
            total += 1
    assert close / total > 0.9


def test_two_digit_probe_tells_real_from_broken():
    videos = np.stack([c.video for c in clips(40, 2)]).astype(np.float32) / 255
    real = summarize(probe(videos, 2))
    assert real["median_speed_error_px"] < 0.6 and real["bounces_at_walls"] > 0.9
    for kind in ("frozen", "shuffled"):
        assert summarize(probe(broken(videos, kind), 2))["median_speed_error_px"] > 2.0


def test_a_drawn_bounce_is_found_at_the_wall():
    # a box centre moving down-right at SPEED, clamped at the bottom wall (centre 64 - 1 - 13.5) and back
    y, vy, x, path = 30.0, SPEED * 0.8, 20.0, []
    for _ in range(12):
        y += vy
        if y >= 49.5:
            y, vy = 49.5, -vy
        x += SPEED * 0.6
        path.append((y, x))
    p = probe_track(np.array(path)[:, None], 64, 64)
    assert p.reversals == p.reversals_at_wall == 1
    assert abs(p.speed - SPEED) < 1e-6 and p.persistence > 0.999


def test_a_stutter_has_the_right_mean_speed_and_direction_but_not_the_jitter():
    # short and long steps in turn along one line, away from the walls: the mean speed is right, the jitter is not
    steps = np.where(np.arange(8) % 2 == 0, SPEED - 0.6, SPEED + 0.6)
    path = np.stack([20 + 0.6 * np.cumsum(steps), 20 + 0.8 * np.cumsum(steps)], axis=-1)  # (8, 2): one direction
    p = probe_track(path[:, None], 64, 64)
    assert abs(p.speed - SPEED) < 0.1 and p.persistence > 0.999
    assert abs(p.jitter - 1.2) < 1e-6
    smooth = probe_track((20 + np.outer(np.arange(8) * SPEED, [0.6, 0.8]))[:, None], 64, 64)
    assert smooth.jitter < 1e-6


def test_clear_errors():
    with pytest.raises(ValueError, match=r"\(T, H, W\)"):
        track(np.zeros((2, 20, 64, 64)), 1)
    with pytest.raises(ValueError, match=r"\(N, T, H, W\)"):
        probe(np.zeros((20, 64, 64)), 1)
    with pytest.raises(ValueError, match="T >= 3"):
        probe_track(np.zeros((2, 1, 2)), 64, 64)

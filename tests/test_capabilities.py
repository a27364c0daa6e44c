"""Capabilities by masks: SDEdit's start time, what the network sees in given frames, image-to-video, extension
both ways, connecting, loops, long videos, clip files and the sample command's errors."""

import numpy as np
import pytest
import torch

from minisora.capabilities import (SampleConfig, connect, extend, image_to_video, load_clips, long_video, loop,
                                   save_clips)
from minisora.diffusion import KnownFrames, RectifiedFlow
from minisora.dit import DiT, get_preset
from minisora.sample import VideoCodec, generate
from minisora.viz import save_gif


@pytest.fixture(scope="module")
def pixels():
    """An untrained micro DiT on pixels (no VAE), so given frames come back exactly."""
    torch.manual_seed(0)
    return DiT(get_preset("micro", vae="none", frames=8, size=16)).eval(), VideoCodec("none")


def clips(n=2, frames=8, size=16, seed=0):
    return torch.rand(n, 1, frames, size, size, generator=torch.Generator().manual_seed(seed))


def test_flow_sampling_from_a_start_time_lands_on_the_data():
    """For data that is one point x0, v(x_t, t) = (x_t - x0) / t exactly, so Euler from x_s at any s ends on x0,
    taking only the grid's times below s."""
    x0, eps, calls = torch.randn(1, 3), torch.randn(1, 3), []

    def model(x, time, cond):
        calls.append(float(time[0]))
        return (x - x0) / (time[:, None] / 1000)

    flow, s = RectifiedFlow(shift=3.0), 0.5
    out = flow.sample(model, (1, 3), torch.zeros(1, 1, dtype=torch.long), steps=10, noise=(1 - s) * x0 + s * eps,
                      start=s)
    torch.testing.assert_close(out, x0)
    grid = flow.timesteps(10)
    assert len(calls) == int((grid < s).sum()) and calls[0] == pytest.approx(1000 * s)
    with pytest.raises(ValueError, match="needs noise"):
        flow.sample(model, (1, 3), torch.zeros(1, 1, dtype=torch.long), steps=10, start=0.5)


def test_known_frames_show_a_noised_copy_at_its_time_and_fill_the_clean_one():
    seen = {}

    def model(x, time, cond):
        seen.update(x=x, time=time)
        return torch.zeros_like(x)

    x0, shown = torch.zeros(1, 1, 4, 2, 2), torch.ones(1, 1, 4, 2, 2)
    known = torch.tensor([[True, True, False, False]])
    net = KnownFrames(model, known, x0, shown, time=100.0)
    net(torch.full((1, 1, 4, 2, 2), 5.0), torch.tensor([700.0]), None)
    assert seen["time"].tolist() == [[100.0, 100.0, 700.0, 700.0]]
    assert seen["x"][0, 0, :, 0, 0].tolist() == [1.0, 1.0, 5.0, 5.0]
    assert net.fill(torch.full((1, 1, 4, 2, 2), 5.0))[0, 0, :, 0, 0].tolist() == [0.0, 0.0, 5.0, 5.0]


def test_frame_guidance_extrapolates_from_the_model_told_nothing_of_the_frames():
    """out = out_hidden + w (out_given - out_hidden): the hidden pass sees the frames noised to the clip's time and
    that time everywhere; the given pass sees them clean at time 0."""
    calls = []

    def model(x, time, cond):
        calls.append((x[0, 0, :, 0, 0].tolist(), time.tolist()))
        return x + (time if time.ndim == 2 else time[:, None]).mean(1)[:, None, None, None, None] / 100

    x0, known = torch.zeros(1, 1, 4, 1, 1), torch.tensor([[True, False, False, False]])
    hidden = lambda time: torch.full((len(time), 1, 4, 1, 1), 9.0)  # stands for x0 noised to that time
    net = KnownFrames(model, known, x0, guidance=3.0, hidden=hidden)
    x = torch.full((1, 1, 4, 1, 1), 5.0)
    out = net(x, torch.tensor([400.0]), None)
    assert calls == [([0.0, 5.0, 5.0, 5.0], [[0.0, 400.0, 400.0, 400.0]]), ([9.0, 5.0, 5.0, 5.0], [400.0])]
    # given: x + mean time / 100 = [0, 5, 5, 5] + 3; hidden: [9, 5, 5, 5] + 4; hidden + 3 (given - hidden):
    assert out[0, 0, :, 0, 0].tolist() == [13 + 3 * (3 - 13), 9 + 3 * (8 - 9), 6.0, 6.0]
    with pytest.raises(ValueError, match="needs hidden"):
        KnownFrames(model, known, x0, guidance=2.0)


def test_frame_guidance_one_changes_nothing_and_other_values_act_only_on_given_frames(pixels):
    model, codec = pixels
    images = torch.rand(2, 16, 16)
    plain = image_to_video(model, codec, images, ["3", "7"], steps=3, seed=1)
    assert torch.equal(image_to_video(model, codec, images, ["3", "7"], steps=3, seed=1, frame_guidance=1.0), plain)
    guided = image_to_video(model, codec, images, ["3", "7"], steps=3, seed=1, frame_guidance=3.0)
    assert not torch.allclose(guided, plain)
    torch.testing.assert_close(guided[:, :, :2], plain[:, :, :2])  # the given tubelet is put back either way
    with pytest.raises(ValueError, match="frame_guidance must be a finite number"):
        image_to_video(model, codec, images, ["3", "7"], steps=3, frame_guidance=float("nan"))


def test_edit_at_strength_one_is_text_to_video_and_a_light_edit_stays_close(pixels):
    model, codec = pixels
    video = clips()
    plain = generate(model, codec, ["3", "7"], steps=4, seed=1)
    assert torch.equal(generate(model, codec, ["3", "7"], steps=4, seed=1, init=video, strength=1.0), plain)
    light = generate(model, codec, ["3", "7"], steps=20, seed=1, init=video, strength=0.02)
    assert (light - video).abs().mean() < 0.5 * (plain - video).abs().mean()
    with pytest.raises(ValueError, match="strength"):
        generate(model, codec, ["3", "7"], steps=4, init=video, strength=0.0)


def test_image_to_video_holds_the_image_for_one_tubelet(pixels):
    model, codec = pixels
    images = torch.rand(2, 16, 16)
    out = image_to_video(model, codec, images, ["3", "7"], frames=8, steps=2)
    group = model.config.tubelet_frames
    assert out.shape == (2, 1, 8, 16, 16) and group == 2
    torch.testing.assert_close(out[:, 0, :group], images[:, None].expand(-1, group, -1, -1))
    assert not torch.allclose(out[:, 0, group], images)  # the rest is generated
    with pytest.raises(ValueError, match="expected images"):
        image_to_video(model, codec, images[0], ["3"], steps=2)


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_extension_keeps_the_given_frames_at_its_end(pixels, direction):
    model, codec = pixels
    given = clips(frames=4)
    out = extend(model, codec, given, ["3", "7"], 8, direction, steps=2)
    assert out.shape == (2, 1, 8, 16, 16)
    kept, new = (out[:, :, :4], out[:, :, 4:]) if direction == "forward" else (out[:, :, 4:], out[:, :, :4])
    torch.testing.assert_close(kept, given)
    assert not torch.allclose(new, given)
    with pytest.raises(ValueError, match="frames > 4"):
        extend(model, codec, given, ["3", "7"], 4, direction, steps=2)
    with pytest.raises(ValueError, match="whole groups of 2"):
        extend(model, codec, clips(frames=3), ["3", "7"], 8, direction, steps=2)


def test_connect_and_loop_keep_both_ends(pixels):
    model, codec = pixels
    a, b = clips(frames=2, seed=1), clips(frames=2, seed=2)
    out = connect(model, codec, a, b, ["3", "7"], gap=4, steps=2)
    assert out.shape == (2, 1, 8, 16, 16)
    torch.testing.assert_close(out[:, :, :2], a)
    torch.testing.assert_close(out[:, :, -2:], b)
    video = clips(frames=8, seed=3)
    looped = loop(model, codec, video, ["3", "7"], gap=4, given=2, steps=2)
    assert looped.shape == (2, 1, 12, 16, 16) and torch.equal(looped[:, :, :8], video)


def test_long_video_windows_continue_each_other(pixels):
    model, codec = pixels
    out = long_video(model, codec, ["3"], frames=20, window=8, given=4, steps=2, seed=5)
    assert out.shape == (1, 1, 20, 16, 16)
    first = generate(model, codec, ["3"], steps=2, seed=5, frames=8)
    torch.testing.assert_close(out[:, :, :8], first)  # the first window is plain text-to-video
    second = extend(model, codec, first[:, :, -4:], ["3"], 8, steps=2, seed=6)
    torch.testing.assert_close(out[:, :, 8:12], second[:, :, 4:])  # the next is that window extended
    with pytest.raises(ValueError, match="fewer frames than it holds"):
        long_video(model, codec, ["3"], frames=20, window=8, given=8, steps=2)


def test_clip_files_round_trip(tmp_path):
    video = torch.rand(3, 6, 16, 24)
    path = save_clips(video, tmp_path / "c.npy")
    assert np.load(path).shape == (6, 3, 16, 24)  # (T, N, H, W) like mnist_test_seq.npy
    torch.testing.assert_close(load_clips(path), video, atol=1 / 255, rtol=0)
    save_gif([video[0]], tmp_path / "c.gif", scale=1, ncols=1)
    assert load_clips(tmp_path / "c.gif").shape[:2] == (1, 6)
    np.save(tmp_path / "bad.npy", np.zeros((4, 4)))
    with pytest.raises(ValueError, match=r"expected clips \(T, H, W\)"):
        load_clips(tmp_path / "bad.npy")
    with pytest.raises(FileNotFoundError, match="no clip file"):
        load_clips(tmp_path / "missing.npy")
    (tmp_path / "c.txt").write_text("frames")
    with pytest.raises(ValueError, match="expected a .npy, .gif or .png"):
        load_clips(tmp_path / "c.txt")


@pytest.mark.parametrize("settings, message", [
    (dict(extend="forward"), "--extend needs the clip"),
    (dict(loop=True, edit="a.npy"), "choose one of"),
    (dict(input="a.npy"), "--input is the clip of"),
    (dict(edit="a.npy", strength=1.5), "strength must be in"),
    (dict(out="x.mp4"), "out must end in .gif or .npy"),
    (dict(gap=0), "gap must be a whole number"),
    (dict(frame_guidance=2.0), "--frame-guidance 2.0 acts on given frames"),
    (dict(edit="a.npy", frame_guidance=2.0), "--frame-guidance 2.0 acts on given frames"),
    (dict(guidance_ramp=8.0), "--guidance-ramp 8.0 acts on given frames"),
    (dict(image="a.png", guidance_ramp=-1.0), "guidance_ramp must be a number of frames >= 0"),
    (dict(image="a.png", guidance_ramp=float("inf")), "guidance_ramp must be a number of frames >= 0"),
    (dict(image="a.png", frame_guidance=-1.0), "frame_guidance must be a finite number >= 0"),
    (dict(guidance_interval=(0.7, 0.2)), r"guidance_interval must be two noise levels lo < hi in \[0, 1\]"),
    (dict(guidance_rescale=2.0), r"guidance_rescale must be a weight in \[0, 1\]"),
])
def test_sample_settings_errors(settings, message):
    with pytest.raises(ValueError, match=message):
        SampleConfig(**settings)


def test_seam_measure_sees_a_jump_that_real_clips_do_not_have():
    from minisora.capability_eval import seam, seam_errors
    from minisora.evaluator import real_clips

    real, _ = real_clips(12, 1, seed=3)
    smooth = seam(*seam_errors(real, 10))
    jumped = real.clone()
    jumped[:, 10:] = torch.roll(real[:, 10:], shifts=8, dims=-1)  # the digit skips 8 px sideways at frame 10
    broken = seam(*seam_errors(jumped, 10))
    assert smooth["seam_speed_error_px"] < 1.0 and broken["seam_speed_error_px"] > 3.0
    assert broken["seam_direction_cos"] < smooth["seam_direction_cos"]


def test_ink_is_about_a_hundred_for_a_real_digit_and_follows_boldness():
    from minisora.capability_eval import ink
    from minisora.evaluator import real_clips

    real, _ = real_clips(12, 1, seed=3)
    bold = (real * 1.5).clamp(max=1)  # strokes drawn brighter, saturating where they were already white
    assert 70 < ink(real) < 130
    assert ink(real) < ink(bold) < 1.5 * ink(real)
    assert ink(real[:, :10]) == pytest.approx(ink(real)) and ink(torch.zeros_like(real)) == 0  # a mean per frame


def test_eval_capabilities_setting_is_checked():
    from minisora.evaluate import EvalConfig

    with pytest.raises(ValueError, match="capabilities must be 0"):
        EvalConfig(capabilities=1)
    with pytest.raises(ValueError, match="capability_parts must be some of"):
        EvalConfig(capabilities=2, capability_parts=("image_to_video", "teleport"))
    with pytest.raises(ValueError, match="guidance_interval must be two noise levels"):
        EvalConfig(guidance_interval=(0.5, 1.5))
    with pytest.raises(ValueError, match="guidance_rescale must be a weight"):
        EvalConfig(guidance_rescale=-0.5)
    with pytest.raises(ValueError, match="guidance_ramp must be a number of frames"):
        EvalConfig(guidance_ramp=float("nan"))


def test_eval_measures_only_the_capabilities_asked_for(tmp_path):
    import json

    from minisora.cli import main

    main(["eval", "--quiet", "--clips", "0", "--prediction-clips", "0", "--capabilities", "2", "--capability-parts",
          "image_to_video", "--steps", "1", "--out", str(tmp_path / "e.json")])
    result = json.loads((tmp_path / "e.json").read_text())
    measured = result["capabilities"]
    assert list(measured) == ["image_to_video"] and "guidance_interval" not in result["settings"]  # the default
    assert set(measured["image_to_video"]) == {"generated", "real"}


def test_the_sample_command_guides_only_inside_the_guidance_interval(tmp_path):
    from minisora.cli import main

    def sample(*flags):
        out = tmp_path / f"{len(list(tmp_path.iterdir()))}.npy"
        main(["sample", "--quiet", "--steps", "2", "--frames", "4", "--prompt", "3", *flags, "--out", str(out)])
        return load_clips(out)

    unguided, guided = sample("--guidance", "1"), sample("--guidance", "6")
    assert not torch.equal(unguided, guided)
    # 2 Euler steps take the velocity at levels 1 and 0.5 (before the model's time shift): neither lies in
    # [0.001, 0.002], so no step is guided
    torch.testing.assert_close(sample("--guidance", "6", "--guidance-interval", "0.001", "0.002"), unguided)
    torch.testing.assert_close(sample("--guidance", "6", "--guidance-interval", "0", "1"), guided)
    rescaled = sample("--guidance", "6", "--guidance-rescale", "0.7")
    assert not torch.equal(rescaled, guided)  # the flag reaches the sampler ...
    torch.testing.assert_close(sample("--guidance", "1", "--guidance-rescale", "0.7"), unguided)  # ... and only guidance


def test_the_sample_command_ramps_text_guidance_only_where_it_guides(tmp_path):
    from minisora.cli import main

    save_clips(torch.rand(1, 4, 64, 64, generator=torch.Generator().manual_seed(0)), tmp_path / "a.npy")

    def extended(*flags):
        out = tmp_path / f"{len(list(tmp_path.iterdir()))}.npy"
        main(["sample", "--quiet", "--steps", "2", "--prompt", "3", "--extend", "forward", "--input",
              str(tmp_path / "a.npy"), "--given", "2", "--frames", "6", *flags, "--out", str(out)])
        return load_clips(out)

    plain, ramped = extended("--guidance", "6"), extended("--guidance", "6", "--guidance-ramp", "8")
    assert plain.shape == (1, 8, 64, 64) and not torch.equal(plain[:, 4:], ramped[:, 4:])  # new frames differ
    torch.testing.assert_close(ramped[:, :4], plain[:, :4])  # the input is kept whole either way
    torch.testing.assert_close(extended("--guidance", "1", "--guidance-ramp", "8"), extended("--guidance", "1"))


def test_sample_command_extends_and_connects_whole_input_clips(tmp_path):
    from minisora.cli import main

    a, b = torch.rand(1, 20, 64, 64), torch.rand(1, 20, 64, 64)
    save_clips(a, tmp_path / "a.npy"), save_clips(b, tmp_path / "b.npy")
    main(["sample", "--quiet", "--steps", "1", "--prompt", "3", "--extend", "backward", "--input",
          str(tmp_path / "a.npy"), "--given", "4", "--frames", "10", "--out", str(tmp_path / "back.npy")])
    back = load_clips(tmp_path / "back.npy")
    assert back.shape == (1, 26, 64, 64)  # 6 new frames, then the whole input
    torch.testing.assert_close(back[:, 6:], load_clips(tmp_path / "a.npy"))
    main(["sample", "--quiet", "--steps", "1", "--prompt", "3", "--connect", str(tmp_path / "a.npy"),
          str(tmp_path / "b.npy"), "--given", "4", "--gap", "6", "--out", str(tmp_path / "c.npy")])
    joined = load_clips(tmp_path / "c.npy")
    assert joined.shape == (1, 46, 64, 64)  # all of A, 6 new frames, all of B
    torch.testing.assert_close(joined[:, :20], load_clips(tmp_path / "a.npy"))
    torch.testing.assert_close(joined[:, 26:], load_clips(tmp_path / "b.npy"))


def test_excess_interval_holds_zero_for_alike_clips_and_not_for_a_longer_seam():
    from minisora.capability_eval import excess_interval, seam_errors
    from minisora.evaluator import real_clips

    real, _ = real_clips(40, 1, seed=4)
    other, _ = real_clips(40, 1, seed=5)
    lo, hi = excess_interval(seam_errors(other, 10)[0], seam_errors(real, 10)[0])
    assert lo <= 0 <= hi  # two sets of real clips: no excess
    jumped = real.clone()
    jumped[:, 10:] = torch.roll(real[:, 10:], shifts=4, dims=-1)  # every seam step 4 px off sideways
    lo, hi = excess_interval(seam_errors(jumped, 10)[0], seam_errors(real, 10)[0])
    assert lo > 0.3
    lo, hi = excess_interval(seam_errors(real, 10)[1], seam_errors(jumped, 10)[1], np.mean)
    assert lo > 0.05  # the jump turns the seam step: real turns are straighter
    lo, hi = excess_interval(seam_errors(real, 10)[1], seam_errors(other, 10)[1], np.mean)
    assert lo <= 0 <= hi
    errors = np.abs(np.random.default_rng(1).normal(0, 0.5, (40, 19)))  # a loop whose seam is like its other steps
    lo, hi = excess_interval(errors[:, 9], np.delete(errors, 9, axis=1))
    assert lo <= 0 <= hi

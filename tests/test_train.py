"""Training the DiT: exact resume, train-then-sample end to end, data parallel = one process, clear errors."""

import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from minisora.cli import main
from minisora.digits import DATA_DIR
from minisora.capabilities import SampleConfig, sample_from_checkpoint
from minisora.sample import VideoCodec, generate, latent_known, latent_shape, load_dit
from minisora.sample import objective_of
from minisora.train import (TrainConfig, TrainingClips, build, draw_batch, draw_known, draw_packed_batch, step_clips,
                            train)

QUICK = TrainConfig(preset="micro", steps=6, batch_size=4, log_every=1, ckpt_every=100, sample_every=0, sample_steps=2)


def weights(path):
    return torch.load(path, weights_only=True)


def assert_same_state(a: dict, b: dict, atol: float = 0.0):
    for key in ("model", "ema"):
        for name in a[key]:
            torch.testing.assert_close(a[key][name], b[key][name], atol=atol, rtol=0, msg=f"{key}.{name}")


def test_resume_is_exact(tmp_path):
    torch.set_num_threads(1)
    train(replace(QUICK, out=str(tmp_path / "straight")), progress=False)
    train(replace(QUICK, out=str(tmp_path / "split"), stop_at=3), progress=False)
    assert weights(tmp_path / "split" / "ckpt.pt")["step"] == 3
    train(replace(QUICK, out=str(tmp_path / "split")), resume=True, progress=False)
    a, b = weights(tmp_path / "straight" / "ckpt.pt"), weights(tmp_path / "split" / "ckpt.pt")
    assert a["step"] == b["step"] == 6
    assert_same_state(a, b)  # bit for bit
    log = (tmp_path / "split" / "log.jsonl").read_text().splitlines()
    assert len(log) == 6  # one line per step, none lost or repeated


def test_resume_refuses_different_settings(tmp_path):
    train(replace(QUICK, out=str(tmp_path), stop_at=2), progress=False)
    with pytest.raises(ValueError, match="settings differ"):
        train(replace(QUICK, out=str(tmp_path), lr=1.0), resume=True, progress=False)


def test_train_then_sample_end_to_end(tmp_path, capsys):
    run = tmp_path / "run"
    main(["train", "--preset", "micro", "--steps", "4", "--batch-size", "2", "--out", str(run), "--quiet",
          "--sample-every", "4", "--sample-steps", "2", "--export", str(tmp_path / "w.pt")])
    for name in ("ckpt.pt", "log.jsonl", "loss.png", "samples_000004.gif"):
        assert (run / name).exists(), name
    assert (tmp_path / "w.json").exists()
    main(["sample", "--ckpt", str(tmp_path / "w.pt"), "--prompt", "3", "1 and 8", "--steps", "2", "--frames", "8",
          "--out", str(tmp_path / "s.gif"), "--quiet"])
    assert (tmp_path / "s.gif").exists()
    assert "wrote 2 clip(s) of 8 frames at 64x64" in capsys.readouterr().out
    # the run's own checkpoint samples the same as the exported weights
    a, _ = sample_from_checkpoint(SampleConfig(ckpt=str(run / "ckpt.pt"), steps=2, frames=4), progress=False)
    b, _ = sample_from_checkpoint(SampleConfig(ckpt=str(tmp_path / "w.pt"), steps=2, frames=4), progress=False)
    assert a.shape == (1, 1, 4, 64, 64) and torch.equal(a, b)


def test_sampling_errors(tmp_path):
    train(replace(QUICK, out=str(tmp_path), steps=1), progress=False)
    model, _ = load_dit(tmp_path / "ckpt.pt")
    with pytest.raises(ValueError, match="unknown word"):
        generate(model, VideoCodec("frame"), ["a 3 jumps"], steps=1)
    with pytest.raises(ValueError, match="height=60 is not supported by this model: it must be a positive multiple of 16"):
        latent_shape(model.config, 20, 60, 64)
    with pytest.raises(ValueError, match="frames=5 is not supported"):
        latent_shape(model.config, 5, 64, 64)


def test_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dit(tmp_path / "missing.pt")
    train(replace(QUICK, out=str(tmp_path), steps=1), progress=False)
    data = (tmp_path / "ckpt.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="could not be read"):
        load_dit(tmp_path / "truncated.pt")
    with pytest.raises(ValueError, match="not a DiT checkpoint"):
        load_dit(DATA_DIR / "vae_frame.pt")


def test_two_processes_train_like_one(tmp_path):
    """torchrun with 2 CPU processes (gloo) and the same global batch gives the same weights as 1 process."""
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    flags = ["--preset", "micro", "--steps", "3", "--batch-size", "4", "--quiet", "--sample-every", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", "29531", "-m", "minisora", "train", *flags,
                    "--out", str(tmp_path / "ddp")], check=True, env=env, capture_output=True)
    main(["train", *flags, "--out", str(tmp_path / "one")])
    assert_same_state(weights(tmp_path / "ddp" / "ckpt.pt"), weights(tmp_path / "one" / "ckpt.pt"), atol=1e-5)


def test_bad_preset_and_batch(tmp_path):
    with pytest.raises(SystemExit):
        main(["train", "--preset", "huge", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="steps must be a whole number >= 1, got 0"):
        train(replace(QUICK, out=str(tmp_path), steps=0), progress=False)


def test_the_ddpm_objective_trains_and_samples_too(tmp_path):
    train(replace(QUICK, out=str(tmp_path), steps=2, objective="ddpm"), progress=False)
    videos, _ = sample_from_checkpoint(SampleConfig(("3 and 7",), str(tmp_path / "ckpt.pt"), steps=2, frames=4),
                                       progress=False)
    assert videos.shape == (1, 1, 4, 64, 64) and torch.isfinite(videos).all()


def test_conditioning_masks_come_in_whole_tubelets_and_all_kinds():
    g = torch.Generator().manual_seed(0)
    known = draw_known(4000, 10, 2, 0.25, g)  # (4000, 20)
    assert known.shape == (4000, 20) and torch.equal(known[:, ::2], known[:, 1::2])  # whole tubelets
    used = known.any(1)
    assert abs(used.float().mean().item() - 0.25) < 0.03
    assert not known.all(1).any()  # something is always left to generate
    first, last = known[used, 0], known[used, -1]
    assert (first & ~last).any() and (~first & last).any() and (first & last).any()  # prefix, suffix, both ends
    assert not draw_known(10, 10, 2, 0.0, g).any()


def test_clips_given_frames_lose_their_caption_at_the_share_asked_and_nothing_else_changes():
    """--p-known-uncond drops the caption of clips that have given frames only, after every other draw."""
    cfg = replace(QUICK, batch_size=64, p_uncond=0.0, p_known=0.5, p_image=0.0)
    model, device = build(cfg, torch.device("cpu")).model, torch.device("cpu")
    obj, codec = objective_of(cfg.__dict__), VideoCodec(cfg.vae, device)
    data = TrainingClips(cfg.seed, cfg.num_digits, cfg.p_descriptive, num_clips=10**4)
    null = model.null_ids(1)[0]
    for p in (0.0, 1.0):
        b = draw_batch(0, replace(cfg, p_known_uncond=p), step_clips(0, cfg, data, model.config), model, obj, codec,
                       torch.Generator().manual_seed(0))
        dropped = (b.ids == null).all(1)
        assert torch.equal(dropped, b.known.any(1) if p else torch.zeros_like(dropped))
        assert 10 < int(b.known.any(1).sum()) < 54
        reference = reference if p else b  # the same times, noise and frames with or without it
        assert torch.equal(b.t, reference.t) and torch.equal(b.noise, reference.noise)
    packed = replace(cfg, sizes="mixed", tokens=400, p_known=1.0, p_known_uncond=1.0)
    b = draw_packed_batch(0, packed, data, model, obj, codec, torch.Generator().manual_seed(0))
    given = torch.tensor([k is not None and bool(k.any()) for k in b.known])
    assert given.any() and torch.equal((b.ids == null).all(1), given)


def test_prediction_clips_get_the_first_half_and_no_caption_and_the_rest_keep_their_draws():
    """--p-predict turns a share of clips into the 10 -> 10 task; the others keep --p-known's given frames."""
    cfg = replace(QUICK, batch_size=64, p_uncond=0.0, p_known=0.5, p_image=0.0)
    model, obj = build(cfg, torch.device("cpu")).model, objective_of(cfg.__dict__)
    codec = VideoCodec(cfg.vae, torch.device("cpu"))
    data = TrainingClips(cfg.seed, cfg.num_digits, cfg.p_descriptive, num_clips=10**4)
    draw = lambda c: draw_batch(0, c, step_clips(0, c, data, model.config), model, obj, codec,
                                torch.Generator().manual_seed(0))
    before, after = draw(cfg), draw(replace(cfg, p_predict=0.5))
    frames = after.known.shape[1]
    task = (after.ids == model.null_ids(1)[0]).all(1)  # p_uncond 0: only the prediction task drops captions
    assert 10 < int(task.sum()) < 54 and (after.known[task] == (torch.arange(frames) < frames // 2)).all()
    assert torch.equal(after.known[~task], before.known[~task])  # the rest: --p-known's own draws
    assert torch.equal(after.t, before.t) and torch.equal(after.noise, before.noise)
    alone = draw(replace(cfg, p_known=0.0, p_predict=0.5))  # without --p-known: the task or no given frames
    task = (alone.ids == model.null_ids(1)[0]).all(1)
    assert task.any() and (alone.known[task] == (torch.arange(frames) < frames // 2)).all()
    assert not alone.known[~task].any()


def test_init_starts_from_given_weights(tmp_path):
    train(replace(QUICK, out=str(tmp_path / "a"), steps=2), progress=False)
    start = weights(tmp_path / "a" / "ckpt.pt")["ema"]
    model = build(replace(QUICK, init=str(tmp_path / "a" / "ckpt.pt")), torch.device("cpu")).model
    assert all(torch.equal(model.state_dict()[k], v) for k, v in start.items())
    # exported weights carry their manifest; a run started from them records where it came from
    main(["train", "--preset", "micro", "--steps", "1", "--batch-size", "2", "--out", str(tmp_path / "b"), "--quiet",
          "--sample-every", "0", "--export", str(tmp_path / "b.pt")])
    summary = train(replace(QUICK, out=str(tmp_path / "c"), steps=1, init=str(tmp_path / "b.pt")), progress=False)
    assert summary["init"]["weights"] == str(tmp_path / "b.pt") and summary["init"]["command"].endswith("b.pt")
    with pytest.raises(ValueError, match="holds a different model"):
        build(replace(QUICK, preset="tiny", init=str(tmp_path / "a" / "ckpt.pt")), torch.device("cpu"))


def test_init_turns_a_factorized_model_hybrid_with_the_same_weights(tmp_path):
    train(replace(QUICK, out=str(tmp_path / "a"), steps=2, attention="factorized"), progress=False)
    start, _ = load_dit(tmp_path / "a" / "ckpt.pt")
    model = build(replace(QUICK, attention="hybrid", init=str(tmp_path / "a" / "ckpt.pt")), torch.device("cpu")).model
    assert model.config.attention == "hybrid" and [b.mode for b in model.blocks] == ["spatial", "full"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in start.state_dict().items())


def test_init_moves_a_model_to_a_fine_tuned_vae_of_the_same_shape_only(tmp_path):
    train(replace(QUICK, out=str(tmp_path / "a"), steps=1), progress=False)  # on the frame VAE's latents
    start, _ = load_dit(tmp_path / "a" / "ckpt.pt")
    model = build(replace(QUICK, vae="frame-se", init=str(tmp_path / "a" / "ckpt.pt")), torch.device("cpu")).model
    assert model.config.vae == "frame-se"
    assert all(torch.equal(model.state_dict()[k], v) for k, v in start.state_dict().items())
    with pytest.raises(ValueError, match="holds a different model"):  # pixels: another shape of input
        build(replace(QUICK, vae="none", init=str(tmp_path / "a" / "ckpt.pt")), torch.device("cpu"))


def test_given_frames_must_be_whole_tubelets_and_are_kept(tmp_path):
    train(replace(QUICK, out=str(tmp_path), steps=1), progress=False)
    model, _ = load_dit(tmp_path / "ckpt.pt")
    with pytest.raises(ValueError, match="whole groups of 2 frames"):
        latent_known(model.config, (torch.arange(8) < 3)[None])
    assert latent_known(model.config, (torch.arange(8) < 4)[None]).tolist() == [[True] * 4 + [False] * 4]
    codec = VideoCodec("frame")
    context = torch.rand(2, 1, 8, 64, 64)
    out = generate(model, codec, [None, "3"], steps=2, context=context, known=torch.arange(8) < 4)
    kept = codec.decode(codec.encode(context))  # given frames come back through the VAE
    torch.testing.assert_close(out[:, :, :4], kept[:, :, :4])


def test_training_clips_one_clip_one_class_and_stills():
    from minisora.train import TrainingClips

    data = TrainingClips(0, (1,), 0.0, 100, classes=(3,), clips=1)
    videos, captions = data.batch(range(4))
    assert captions == ["3"] * 4  # one clip, over and over
    assert all(torch.equal(v, videos[0]) for v in videos)
    many = TrainingClips(0, (1, 2), 0.0, 100, classes=(4, 7))
    _, captions = many.batch(range(20))
    assert {w for c in captions for w in c.split(" and ")} <= {"4", "7"}
    stills, captions = many.images(range(6), frames=2)
    assert stills.shape == (6, 1, 2, 64, 64) and torch.equal(stills[:, :, 0], stills[:, :, 1])  # a frame held still
    assert all(w in ("4", "7") for c in captions for w in c.split(" and "))


def test_joint_image_training_and_model_options_train_and_resume(tmp_path):
    torch.set_num_threads(1)
    cfg = replace(QUICK, p_image=0.5, conv=True, skips=True, repa=0.5, out=str(tmp_path / "straight"))
    train(cfg, progress=False)
    train(replace(cfg, out=str(tmp_path / "split"), stop_at=3), progress=False)
    train(replace(cfg, out=str(tmp_path / "split")), resume=True, progress=False)
    a, b = weights(tmp_path / "straight" / "ckpt.pt"), weights(tmp_path / "split" / "ckpt.pt")
    assert_same_state(a, b)
    for name in a["projector"]:  # REPA's MLP is trained and resumed too
        torch.testing.assert_close(a["projector"][name], b["projector"][name], atol=0, rtol=0)
    assert "align" in (tmp_path / "split" / "log.jsonl").read_text()


def test_workers_drawing_clips_ahead_train_exactly_like_the_loop(tmp_path):
    """Clips (and stills) drawn by 2 worker processes, and a resume with them, give the weights of the plain loop."""
    torch.set_num_threads(1)
    cfg = replace(QUICK, p_image=0.5, out=str(tmp_path / "loop"))
    train(cfg, progress=False)
    train(replace(cfg, workers=2, out=str(tmp_path / "workers"), stop_at=3), progress=False)
    train(replace(cfg, workers=2, out=str(tmp_path / "workers")), resume=True, progress=False)
    assert_same_state(weights(tmp_path / "loop" / "ckpt.pt"), weights(tmp_path / "workers" / "ckpt.pt"))


def test_stills_and_mixed_sizes_count_as_clips_by_their_tokens(tmp_path):
    """A step of stills (an image per frame of tubelets) or of packed mixed sizes is logged at its clip-equivalents."""
    train(replace(QUICK, p_image=1.0, out=str(tmp_path / "stills")), progress=False)
    train(replace(QUICK, sizes="mixed", p_image=0.0, tokens=96, out=str(tmp_path / "mixed")), progress=False)
    per_step = lambda name: [(r := json.loads(line))["clips_per_s"] / r["steps_per_s"]
                             for line in (tmp_path / name / "log.jsonl").read_text().splitlines()]
    assert per_step("stills") == pytest.approx([QUICK.batch_size] * 6, rel=0.02)  # not 40 stills
    assert all(0.3 < n <= 96 / (10 * 4 * 4) * 1.02 for n in per_step("mixed"))  # a clip: 10 x 4 x 4 tubelets


def test_a_non_finite_step_is_skipped_and_a_run_of_them_stops_training(tmp_path, monkeypatch):
    import minisora.train as train_module

    real = train_module.objective_of
    def poisoned(settings, **kw):  # the loss turns NaN from the 3rd step on
        obj, calls = real(settings, **kw), iter(range(10**6))
        loss = obj.loss
        obj.loss = lambda *a, **k: loss(*a, **k) * (float("nan") if next(calls) >= 2 else 1.0)
        return obj
    monkeypatch.setattr(train_module, "objective_of", poisoned)
    cfg = replace(QUICK, steps=40, ckpt_every=2, out=str(tmp_path))
    with pytest.raises(FloatingPointError, match="not finite 20 times in a row"):
        train(cfg, progress=False)
    state = weights(tmp_path / "ckpt.pt")  # saved every 2 steps, through the skipped ones: finite, and as at step 2
    assert state["step"] == 20 and all(torch.isfinite(v).all() for v in state["model"].values())
    monkeypatch.setattr(train_module, "objective_of", real)
    train(replace(cfg, steps=40, stop_at=2, out=str(tmp_path / "two")), progress=False)
    two = weights(tmp_path / "two" / "ckpt.pt")["model"]
    assert all(torch.equal(two[name], state["model"][name]) for name in two)  # the skipped steps changed nothing
    assert json.loads((tmp_path / "log.jsonl").read_text().splitlines()[-1])["skipped"] == 1


def test_resume_accepts_a_checkpoint_from_before_a_setting_existed(tmp_path):
    train(replace(QUICK, out=str(tmp_path), stop_at=2), progress=False)
    state = weights(tmp_path / "ckpt.pt")
    del state["train"]["p_image"]  # as written by a version without joint image training
    torch.save(state, tmp_path / "ckpt.pt")
    summary = train(replace(QUICK, out=str(tmp_path)), resume=True, progress=False)
    assert summary["steps_done"] == 6


def test_cli_flags_are_made_from_the_config(tmp_path):
    from minisora.cli import build_parser, config_from

    args = build_parser().parse_args(["train", "--patch", "2", "2", "2", "--conv", "--num-digits", "1",
                                      "--classes", "3", "5", "--precision", "bf16"])
    cfg = config_from(args, TrainConfig)
    assert (cfg.patch, cfg.conv, cfg.num_digits, cfg.classes, cfg.precision) == ((2, 2, 2), True, (1,), (3, 5), "bf16")
    assert cfg.out == "runs/tiny" and cfg == replace(TrainConfig(), patch=(2, 2, 2), conv=True, num_digits=(1,),
                                                   classes=(3, 5), precision="bf16")


@pytest.mark.parametrize("bad, message", [(dict(p_image=1.5), "p_image is a probability"),
                                          (dict(p_known_uncond=2.0), "p_known_uncond is a probability"),
                                          (dict(p_predict=0.5, sizes="mixed", p_image=0.0), "fixed-size prediction"),
                                          (dict(classes=(3, 12)), "classes must be digits 0-9"),
                                          (dict(clips=0), "clips must be a whole number >= 1"),
                                          (dict(repa=-1.0), "repa must be a finite number >= 0"),
                                          (dict(repa=float("nan")), "repa must be a finite number >= 0"),
                                          (dict(arch="unet"), "unknown arch 'unet'"),
                                          (dict(workers=-1), "workers must be >= 0"),
                                          (dict(workers=2, sizes="mixed", p_image=0.0), "0 with mixed sizes")])
def test_bad_settings_are_refused_where_they_enter(bad, message):
    with pytest.raises(ValueError, match=message):
        replace(QUICK, **bad)


def test_a_sampling_shift_is_refused_for_ddpm():
    from minisora.sample import objective_of

    assert objective_of({"objective": "flow", "shift": 3.0}, shift=1.5).shift == 1.5
    with pytest.raises(ValueError, match="shift is a setting of rectified flow"):
        objective_of({"objective": "ddpm"}, shift=1.5)

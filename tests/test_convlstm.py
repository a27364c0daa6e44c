"""The ConvLSTM regression model and the draft it gives the DiT (--draft): causality, shapes, loading, errors,
and that the draft moves the start of the flow of the prediction clips' future and nothing else."""

import subprocess
import sys
from dataclasses import asdict, fields, replace
from pathlib import Path

import pytest
import torch
from einops import rearrange

from minisora.checkpoint import save_checkpoint
from minisora.convlstm import ConvLSTM, ConvLSTMConfig, draft_clips, load_convlstm, predict, prediction_teacher
from minisora.data import CONTEXT
from minisora.dit import DiT, get_preset
from minisora.sample import VideoCodec, generate
from minisora.train import TrainConfig, TrainingClips, build, draw_batch, step_clips
from minisora.sample import objective_of

SMALL = ConvLSTMConfig(hidden=(4, 4), kernel=3, patch=4)
DNA = replace(SMALL, dna=3)
COORDS = replace(DNA, coords=True)
CELLS = replace(COORDS, dna_cells=True)


def clips(n=2, frames=20, seed=0):
    return torch.rand(n, frames, 16, 16, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("config", [SMALL, DNA, COORDS, CELLS], ids=["paint", "dna", "coords", "cells"])
def test_each_prediction_sees_only_the_frames_before_it(config):
    torch.manual_seed(0)
    model, video = ConvLSTM(config), clips()
    teacher = torch.ones(2, 19, dtype=torch.bool)  # every input the true frame
    out = model(video, teacher)
    assert out.shape == (2, 19, 16, 16)
    changed = video.clone()
    changed[:, 12] += 1.0  # frame 12 is the input that predicts frames 13..
    after = model(changed, teacher)
    torch.testing.assert_close(after[:, :12], out[:, :12], rtol=0, atol=0)  # frames 1..12
    assert not torch.allclose(after[:, 12:], out[:, 12:])


@pytest.mark.parametrize("config", [SMALL, DNA, COORDS, CELLS], ids=["paint", "dna", "coords", "cells"])
def test_prediction_reads_the_given_frames_only_and_stays_in_range(config):
    torch.manual_seed(0)
    model, video = ConvLSTM(config), clips()
    future = predict(model, video)
    assert future.shape == (2, 20 - CONTEXT, 16, 16) and 0 <= future.min() and future.max() <= 1
    changed = video.clone()
    changed[:, CONTEXT:] = 0.0  # the true future is not an input at test time
    torch.testing.assert_close(predict(model, changed), future, rtol=0, atol=0)
    assert not torch.allclose(predict(model, video.flip(1)), future)
    assert prediction_teacher(3, 20).sum(1).tolist() == [CONTEXT - 1] * 3


def test_coords_tell_every_cell_where_it_is():
    torch.manual_seed(0)
    blank, teacher = torch.zeros(1, 2, 64, 64), torch.ones(1, 1, dtype=torch.bool)  # 16 x 16 cells of 4 x 4 pixels
    for config, differs in ((SMALL, False), (replace(SMALL, coords=True), True)):
        out = ConvLSTM(config)(blank, teacher)[0, 0]  # (64, 64): one step
        inner = rearrange(out[16:48, 16:48], "(h p) (w q) -> p q h w", p=4, q=4)  # cells two 3x3 layers keep out
        # of the zero padding's reach, by pixel within the cell
        assert torch.allclose(inner, inner[..., :1, :1].expand_as(inner), atol=1e-6) != differs


def shifted(image, dx):
    """image moved right by an integer 0 <= dx pixels, zero where it came in."""
    out = torch.zeros_like(image)
    out[..., dx:] = image[..., :max(image.shape[-1] - dx, 0)]
    return out


def dna_head(model, logits):
    """Make the head of a DNA model read ``logits`` (k^2 + 1, H, W) at every step, for every clip."""
    p = model.config.patch
    model.head.forward = lambda h: rearrange(  # read when called, so a later change to logits counts
        logits, "c (h p) (w q) -> (c p q) h w", p=p, q=p).expand(len(h), -1, -1, -1)


@pytest.mark.parametrize("given", [CONTEXT, 5])
def test_dna_moves_each_pixel_from_where_its_weights_point(given):
    """All weight on the pixel one to the left: the k-th frame after the given ones is the last given frame moved k
    pixels right; all weight on black: black."""
    model, video = ConvLSTM(DNA), clips()
    logits = torch.zeros(DNA.dna ** 2 + 1, 16, 16)
    logits[DNA.dna * (DNA.dna // 2)] = 50.0  # delta = (0, -1): the row through the centre, its first pixel
    dna_head(model, logits)
    future = predict(model, video, given)
    for k in range(20 - given):
        torch.testing.assert_close(future[:, k], shifted(video[:, given - 1], k + 1), atol=1e-6, rtol=0)
    logits.zero_()[-1] = 50.0
    assert predict(model, video, given).abs().max() < 1e-6


def test_dna_cells_move_each_cell_as_one():
    """With dna_cells the head reads one kernel for each p x p cell, and all its pixels move by it: cells in the top
    half all weight on black, those below on the pixel one to the left, so the top rows go black and the rest move
    right, cell by cell."""
    model, video = ConvLSTM(CELLS), clips()
    assert model.head.out_channels == CELLS.dna ** 2 + 1  # a DNA head reads (k^2 + 1) p^2 a cell
    logits = torch.zeros(CELLS.dna ** 2 + 1, 4, 4)  # (k^2 + 1, H/p, W/p)
    logits[-1, :2] = 50.0  # black above
    logits[CELLS.dna * (CELLS.dna // 2), 2:] = 50.0  # delta = (0, -1) below
    model.head.forward = lambda h: logits.expand(len(h), -1, -1, -1)
    future = predict(model, video)
    assert future[..., :8, :].abs().max() < 1e-6
    for k in range(20 - CONTEXT):
        torch.testing.assert_close(future[:, k, 8:], shifted(video[:, CONTEXT - 1], k + 1)[:, 8:], atol=1e-6, rtol=0)


@pytest.mark.parametrize("mirrors", [1, 2, 4])
def test_mirrors_make_the_prediction_of_a_mirrored_clip_the_mirrored_prediction(mirrors):
    """The mean over m mirror images is unchanged by those mirrors (a group average); one model alone is not."""
    torch.manual_seed(0)
    model, video = ConvLSTM(replace(DNA, mirrors=mirrors)), clips()
    future = predict(model, video)
    for axes, covered in (((-1,), mirrors >= 2), ((-2,), mirrors == 4), ((-2, -1), mirrors == 4)):
        assert torch.allclose(predict(model, video.flip(axes)), future.flip(axes), atol=1e-6) == covered, axes
    base = ConvLSTM(DNA)
    base.load_state_dict(model.state_dict())
    expected = torch.stack([predict(base, video.flip(a)).flip(a) for a in [(), (-1,), (-2,), (-2, -1)][:mirrors]])
    torch.testing.assert_close(future, expected.mean(0), atol=1e-6, rtol=0)


def test_draft_clips_keep_the_given_frames_and_draw_the_rest():
    torch.manual_seed(0)
    model, video = ConvLSTM(SMALL), clips()[:, None]
    drafted = draft_clips(model, video)
    assert drafted.shape == video.shape
    assert torch.equal(drafted[:, :, :CONTEXT], video[:, :, :CONTEXT])
    torch.testing.assert_close(drafted[:, 0, CONTEXT:], predict(model, video[:, 0]), rtol=0, atol=0)


def test_bad_settings_and_shapes_are_refused():
    with pytest.raises(ValueError, match="odd kernel"):
        ConvLSTMConfig(kernel=4)
    with pytest.raises(ValueError, match="hidden channels"):
        ConvLSTMConfig(hidden=())
    with pytest.raises(ValueError, match="dna 0 or odd.*dna=4"):
        ConvLSTMConfig(dna=4)
    with pytest.raises(ValueError, match="mirrors 1, 2 or 4.*mirrors=3"):
        ConvLSTMConfig(mirrors=3)
    with pytest.raises(ValueError, match="dna_cells only with dna.*dna=0.*dna_cells=True"):
        ConvLSTMConfig(dna_cells=True)
    with pytest.raises(ValueError, match=r"multiples of the patch 4, got \(2, 20, 18, 16\)"):
        ConvLSTM(SMALL)(torch.rand(2, 20, 18, 16), torch.ones(2, 19, dtype=torch.bool))


@pytest.mark.parametrize("config", [SMALL, DNA], ids=["paint", "dna"])
def test_exported_weights_load_and_other_files_are_refused(tmp_path, config):
    torch.manual_seed(0)
    model = ConvLSTM(config)
    save_checkpoint({"config": asdict(config), "model": model.state_dict()}, tmp_path / "c.pt")
    loaded = load_convlstm(tmp_path / "c.pt")
    assert loaded.config == config and not loaded.training
    torch.testing.assert_close(predict(loaded, clips()), predict(model, clips()), rtol=0, atol=0)
    dit = DiT(get_preset("micro"))
    save_checkpoint({"config": asdict(dit.config), "model": dit.state_dict()}, tmp_path / "d.pt")
    with pytest.raises(ValueError, match="not a ConvLSTM checkpoint"):
        load_convlstm(tmp_path / "d.pt")
    with pytest.raises(FileNotFoundError):
        load_convlstm(tmp_path / "none.pt")


@pytest.fixture
def draft_file(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "draft.pt"
    save_checkpoint({"config": asdict(ConvLSTMConfig(hidden=(4,), kernel=3)), "model":
                     ConvLSTM(ConvLSTMConfig(hidden=(4,), kernel=3)).state_dict()}, path)
    return str(path)


def test_draft_needs_the_prediction_task_and_the_flow():
    with pytest.raises(ValueError, match="needs p_predict > 0"):
        TrainConfig(preset="micro", draft="data/convlstm_predict.pt")
    with pytest.raises(ValueError, match="needs draft, got draft_noise=0.5"):
        TrainConfig(preset="micro", draft_noise=0.5)
    with pytest.raises(ValueError, match="objective='ddpm'"):
        TrainConfig(preset="micro", draft="data/convlstm_predict.pt", p_predict=1.0, objective="ddpm")


def test_draft_moves_the_start_of_the_prediction_clips_future_only(draft_file):
    """noise = eps + z_draft on the future frames of prediction clips; the given frames, the other clips, the times
    and eps itself are the draws of a run without a draft."""
    cfg = TrainConfig(preset="micro", batch_size=32, p_uncond=0.0, p_image=0.0, p_predict=0.5, draft=draft_file)
    t = build(cfg, torch.device("cpu"))
    obj, codec = objective_of(cfg.__dict__), VideoCodec(cfg.vae)
    data = TrainingClips(cfg.seed, cfg.num_digits, cfg.p_descriptive, num_clips=10**4)
    batch = step_clips(0, cfg, data, t.model.config)
    plain = draw_batch(0, cfg, batch, t.model, obj, codec, torch.Generator().manual_seed(0))
    drafted = draw_batch(0, cfg, batch, t.model, obj, codec, torch.Generator().manual_seed(0), draft=t.draft)
    assert torch.equal(plain.t, drafted.t) and torch.equal(plain.known, drafted.known)
    task = (plain.ids == t.model.null_ids(1)[0]).all(1)  # p_uncond 0: only prediction clips drop their caption
    moved = (drafted.noise != plain.noise).flatten(3).any(-1).any(1)  # (B, T') latent frames whose start moved
    assert 4 < int(task.sum()) < 28
    assert torch.equal(moved, task[:, None] & ~plain.known)
    z_draft = codec.encode(draft_clips(t.draft, batch[0]))
    future = task[:, None, None, None, None] & ~plain.known[:, None, :, None, None]
    torch.testing.assert_close(drafted.noise - plain.noise, z_draft * future)


def test_sampling_starts_the_future_at_the_draft():
    """A fresh DiT predicts velocity 0 (its last layer starts at zero), so a sample is where its flow starts:
    eps for no draft, eps + z_draft with one (pixels here: z = 2 x - 1, so a grey draft is z = 0)."""
    torch.manual_seed(0)
    model = DiT(get_preset("micro", vae="none", frames=4, size=16))
    codec, context = VideoCodec("none"), torch.rand(2, 1, 4, 16, 16)
    known = torch.arange(4) < 2
    sample = lambda draft: generate(model, codec, [None, None], "flow", guidance=1.0, steps=2, seed=3,
                                    context=context, known=known, draft=draft)
    plain, grey, white = sample(None), sample(torch.full_like(context, 0.5)), sample(torch.ones_like(context))
    torch.testing.assert_close(grey, plain, rtol=0, atol=0)
    assert torch.equal(white[:, :, :2], plain[:, :, :2])  # the given frames
    assert (white[:, :, 2:] >= plain[:, :, 2:]).all() and white[:, :, 2:].mean() > plain[:, :, 2:].mean() + 0.2
    with pytest.raises(ValueError, match="need context and known frames"):
        generate(model, codec, [None, None], "flow", steps=2, draft=context)


def test_a_run_with_a_draft_keeps_it_and_extends_forward_from_it(tmp_path, draft_file):
    """train --draft end to end: the run keeps its draft, and `sample --extend forward` starts from it."""
    from minisora.capabilities import SampleConfig, extend, load_clips, sample_from_checkpoint, save_clips
    from minisora.sample import load_dit
    from minisora.train import train

    cfg = TrainConfig(preset="micro", steps=2, batch_size=2, p_image=0.0, p_predict=1.0, draft=draft_file,
                      sample_every=0, out=str(tmp_path / "run"))
    summary = train(cfg, progress=False)
    assert summary["draft_gflop_per_clip"] > 0.3  # encoding the drafted future alone is about 0.34 GFLOP (counted)
    model, settings = load_dit(tmp_path / "run" / "ckpt.pt")
    assert settings["draft"] == draft_file
    clip = torch.rand(1, 10, 64, 64, generator=torch.Generator().manual_seed(0))
    save_clips(clip, tmp_path / "given.npy")
    videos, _ = sample_from_checkpoint(SampleConfig(prompt=["3"], ckpt=str(tmp_path / "run" / "ckpt.pt"), steps=2,
                                                    extend="forward", input=str(tmp_path / "given.npy")),
                                       progress=False)
    assert videos.shape == (1, 1, 20, 64, 64)
    clip = load_clips(tmp_path / "given.npy")  # as the command read it
    kw = dict(objective=objective_of(settings), steps=2, seed=0)
    with_draft = extend(model, VideoCodec(model.config.vae), clip[:, None], ["3"], 20, "forward",
                        load_convlstm(draft_file), **kw)
    without = extend(model, VideoCodec(model.config.vae), clip[:, None], ["3"], 20, "forward", **kw)
    torch.testing.assert_close(videos[:, :, 10:], with_draft[:, :, 10:])
    assert not torch.allclose(with_draft[:, :, 10:], without[:, :, 10:])
    closer = extend(model, VideoCodec(model.config.vae), clip[:, None], ["3"], 20, "forward",
                    load_convlstm(draft_file), draft_noise=0.5, **kw)  # what --draft-noise 0.5 must give
    videos, _ = sample_from_checkpoint(SampleConfig(prompt=["3"], ckpt=str(tmp_path / "run" / "ckpt.pt"), steps=2,
                                                    extend="forward", input=str(tmp_path / "given.npy"),
                                                    draft_noise=0.5), progress=False)
    torch.testing.assert_close(videos[:, :, 10:], closer[:, :, 10:])
    assert not torch.allclose(closer[:, :, 10:], with_draft[:, :, 10:])


def test_draft_noise_needs_a_forward_extension_of_a_drafted_run(tmp_path, draft_file):
    from minisora.capabilities import SampleConfig
    from minisora.convlstm import draft_of

    with pytest.raises(ValueError, match="use it with --extend forward"):
        SampleConfig(draft_noise=0.5, extend="backward", input="clip.npy")
    with pytest.raises(ValueError, match="draft_noise must be a finite number > 0"):
        SampleConfig(draft_noise=-1.0, extend="forward", input="clip.npy")
    assert draft_of({"draft": draft_file, "draft_noise": 1.0}, noise=0.5)[1] == 0.5
    assert draft_of({"draft": draft_file, "draft_noise": 0.7})[1] == 0.7
    with pytest.raises(ValueError, match="trained without a draft"):
        draft_of({"draft": None}, noise=0.5)


def test_eval_can_draft_with_another_regression_model(tmp_path, draft_file):
    """eval --draft swaps the regression model a run trained with for another, and --draft-noise its sigma; a run
    without a draft refuses both."""
    from minisora.evaluate import EvalConfig, evaluate
    from minisora.train import train

    runs = {}
    for name, draft in (("drafted", draft_file), ("plain", None)):
        runs[name] = tmp_path / name / "ckpt.pt"
        train(TrainConfig(preset="micro", steps=2, batch_size=2, p_image=0.0, p_predict=1.0, draft=draft,
                          sample_every=0, out=str(runs[name].parent)), progress=False)
    torch.manual_seed(1)
    other = tmp_path / "other.pt"
    save_checkpoint({"config": asdict(SMALL), "model": ConvLSTM(SMALL).state_dict()}, other)
    score = lambda ckpt, **kw: evaluate(EvalConfig(ckpt=str(ckpt), clips=0, prediction_clips=2, prediction_steps=1,
                                                   batch=2, **kw), progress=False)["prediction"]["model"]["mse"]
    own = score(runs["drafted"])
    assert score(runs["drafted"], draft=draft_file) == own
    assert score(runs["drafted"], draft=str(other)) != own
    assert score(runs["drafted"], draft_noise=1.0) == own
    assert score(runs["drafted"], draft_noise=0.5) != own
    for swap in (dict(draft=str(other)), dict(draft_noise=0.5)):
        with pytest.raises(ValueError, match="trained without a draft"):
            score(runs["plain"], **swap)
    with pytest.raises(ValueError, match="draft_noise must be a finite number > 0"):
        EvalConfig(draft_noise=0.0)


def test_draft_input_starts_as_its_init_and_reads_only_the_draft(tmp_path, draft_file):
    """--draft-input: an --init without the draft embedding loads into one that starts as it (zero-initialised);
    once trained, it changes the output only through the draft, and no draft (zeros) adds nothing."""
    cfg = TrainConfig(preset="micro", p_image=0.0, p_predict=1.0, draft=draft_file)
    cpu = torch.device("cpu")

    def save(model, path):  # exported weights, as `train --export` writes them
        save_checkpoint({"config": asdict(model.config), "ema": model.state_dict(), "train": asdict(cfg)}, path)
        return str(path)

    start = build(cfg, cpu).model.eval()
    torch.nn.init.normal_(start.final.linear.weight)  # a fresh DiT's output is zero: make it read its tokens
    model = build(replace(cfg, draft_input=True, init=save(start, tmp_path / "start.pt")), cpu).model.eval()
    x = torch.randn(2, *latent_of(model.config))
    time, ids, draft = torch.rand(2), model.null_ids(2), torch.randn(2, *latent_of(model.config))
    with torch.no_grad():
        before = start(x, time, ids)
        torch.testing.assert_close(model(x, time, ids, draft=draft), before, rtol=0, atol=0)
        torch.nn.init.normal_(model.draft_embed.proj.weight)
        torch.testing.assert_close(model(x, time, ids), before, rtol=0, atol=0)
        torch.testing.assert_close(model(x, time, ids, draft=torch.zeros_like(x)), before, rtol=0, atol=0)
        assert not torch.allclose(model(x, time, ids, draft=draft), before)
    with pytest.raises(ValueError, match="holds a different model"):  # the embedding is not dropped silently
        build(replace(cfg, init=save(model, tmp_path / "drafted.pt")), cpu)
    with pytest.raises(ValueError, match="draft_input=False"):
        start(x, time, ids, draft=draft)
    with pytest.raises(ValueError, match="expected a draft like x"):
        model(x, time, ids, draft=draft[:, :, :1])
    with pytest.raises(ValueError, match="needs draft, got draft_input"):
        TrainConfig(preset="micro", draft_input=True)


def latent_of(config):
    """The latent shape (C, T', H', W') of a training clip."""
    from minisora.sample import latent_shape
    return latent_shape(config, config.frames, config.size, config.size)


def test_draft_input_batches_carry_the_draft_of_the_frames_to_generate(draft_file):
    """The batch's draft is z_draft on the prediction clips' future and zero elsewhere; the flow's start is as
    without --draft-input."""
    cfg = TrainConfig(preset="micro", batch_size=16, p_uncond=0.0, p_image=0.0, p_predict=0.5, draft=draft_file)
    t = build(cfg, torch.device("cpu"))
    obj, codec = objective_of(cfg.__dict__), VideoCodec(cfg.vae)
    batch = step_clips(0, cfg, TrainingClips(cfg.seed, cfg.num_digits, cfg.p_descriptive, num_clips=10**4),
                       t.model.config)
    draw = lambda c: draw_batch(0, c, batch, t.model, obj, codec, torch.Generator().manual_seed(0), draft=t.draft)
    plain, read = draw(cfg), draw(replace(cfg, draft_input=True))
    assert plain.draft is None and torch.equal(read.noise, plain.noise)
    task = (plain.ids == t.model.null_ids(1)[0]).all(1)  # p_uncond 0: only prediction clips drop their caption
    future = task[:, None, None, None, None] & ~plain.known[:, None, :, None, None]
    assert 2 < int(task.sum()) < 14
    torch.testing.assert_close(read.draft, codec.encode(draft_clips(t.draft, batch[0])) * future, rtol=0, atol=0)


def test_sampling_gives_a_draft_input_model_the_draft_at_every_step():
    """generate passes z_draft of the frames to generate (zeros on the given ones) to every call of the network,
    repeated for classifier-free guidance's two halves."""
    torch.manual_seed(0)
    model = DiT(get_preset("micro", vae="none", frames=4, size=16, draft_input=True))
    codec, context = VideoCodec("none"), torch.rand(2, 1, 4, 16, 16)
    drafted = torch.rand(2, 1, 4, 16, 16)
    seen = []
    model.register_forward_pre_hook(lambda module, args, kwargs: seen.append((args[0], kwargs["draft"])),
                                    with_kwargs=True)
    generate(model, codec, ["3", "4"], "flow", guidance=2.0, steps=3, seed=3, context=context,
             known=torch.arange(4) < 2, draft=drafted)
    assert len(seen) == 3
    expected = torch.cat([codec.encode(drafted)] * 2)  # (2B, C, T, H, W): the guided and the unguided half
    expected[:, :, :2] = 0  # the given frames have no draft
    for x, draft in seen:
        assert x.shape == draft.shape
        torch.testing.assert_close(draft, expected, rtol=0, atol=0)


@pytest.mark.parametrize("space", ["frame-eqe", "spacetime"])
def test_encoding_the_drafted_frames_alone_gives_their_latents(space):
    """A draft's given frames are the context's, so only the frames to generate are encoded: the latents of a whole
    clip there and zeros elsewhere. A per-frame VAE pays for those frames alone; a spacetime one needs the clip."""
    from minisora.peers import flop_counter
    codec, video = VideoCodec(space), torch.rand(2, 1, 8, 64, 64, generator=torch.Generator().manual_seed(0))
    whole = codec.encode(video)  # (B, C, T', H', W')
    keep = torch.arange(whole.shape[2]) >= whole.shape[2] // 2
    with flop_counter() as counter:
        part = codec.encode_frames(video, keep)
    torch.testing.assert_close(part, whole * keep[:, None, None], rtol=1e-5, atol=1e-5)
    with flop_counter() as full:
        codec.encode(video)
    assert (counter.get_total_flops() < 0.6 * full.get_total_flops()) == (space == "frame-eqe")


def test_the_shipped_draft_is_the_model_its_manifest_describes():
    import json

    from minisora.digits import DATA_DIR

    m = json.loads((DATA_DIR / "convlstm_predict.json").read_text())
    model = load_convlstm(DATA_DIR / "convlstm_predict.pt")
    args = m["args"]
    assert model.config == ConvLSTMConfig(**{f.name: args[f.name] for f in fields(ConvLSTMConfig) if f.name in args})
    assert sum(w.numel() for w in model.parameters()) == m["parameters"]
    assert m["command"].startswith("python scripts/convlstm_peer.py")
    assert "--export data/convlstm_predict.pt" in m["command"]


@pytest.mark.parametrize("flags, message", [
    (["--kernel", "4"], "an odd kernel"),  # ConvLSTMConfig's own check, reached through the flags made from it
    (["--patch", "5"], "divides the 64-pixel frames"),
    (["--mirrors", "3"], "invalid choice"),
    (["--budget-tflop", "0"], "budget_tflop must be a finite number > 0"),
    (["--evals", "0", "0.5"], "shares in (0, 1]"),
])
def test_the_peer_script_rejects_bad_settings_in_one_line(tmp_path, flags, message):
    script = Path(__file__).parents[1] / "scripts" / "convlstm_peer.py"
    out = subprocess.run([sys.executable, str(script), "--out", str(tmp_path / "run"), *flags],
                         capture_output=True, text=True)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "run").exists()  # nothing trained

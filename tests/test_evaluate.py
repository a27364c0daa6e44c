"""The evaluation: every score is checked on real clips first, then on broken ones, then end to end."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from minisora.cli import main
from minisora.data import standard_test_set
from minisora.evaluate import EvalConfig, format_table, real_clips, video_prediction
from minisora.evaluator import clip_scores, digit_scores, prompts_for, read_clips
from minisora.evaluator import load_evaluator
from minisora.metrics import frechet_distance, mse_per_frame
from minisora.sample import VideoCodec, generate, load_dit, objective_of
from minisora.train import TrainConfig, train


@pytest.fixture(scope="module")
def evaluator():
    return load_evaluator()


@pytest.fixture(scope="module")
def one_digit():
    return real_clips(60, 1, seed=5)


def scores(evaluator, videos, labels) -> dict:
    return digit_scores(read_clips(evaluator, videos, labels), labels)


def features(evaluator, videos) -> torch.Tensor:
    return clip_scores(evaluator, videos, [[0]] * len(videos))[1]


def test_prompts_cycle_the_digits_and_name_pairs():
    prompts, labels = prompts_for(20, 1)
    assert prompts[:11] == [str(i) for i in range(10)] + ["0"] and labels[3] == [3]
    prompts, labels = prompts_for(5, 2, seed=1)
    assert all(p == f"{a} and {b}" for p, (a, b) in zip(prompts, labels))


def test_real_clips_score_as_real_and_wrong_prompts_do_not(evaluator, one_digit):
    videos, labels = one_digit
    real = scores(evaluator, videos, labels)
    assert real["readable"] == 1.0 and real["alignment"] >= 0.95 and real["identity"] >= 0.95
    wrong = scores(evaluator, videos, [[(d + 1) % 10] for (d,) in labels])
    assert wrong["alignment"] <= 0.1 and wrong["identity"] >= 0.95  # same clips: still one digit throughout
    noise = torch.rand(videos.shape, generator=torch.Generator().manual_seed(0))
    assert scores(evaluator, noise, labels)["alignment"] <= 0.3


def test_two_digit_clips_are_read_where_the_digits_are_apart(evaluator):
    videos, labels = real_clips(40, 2, seed=5)
    s = scores(evaluator, videos, labels)
    assert s["readable"] >= 0.4 and s["alignment"] >= 0.9
    assert scores(evaluator, videos, [[(a + 1) % 10, b] for a, b in labels])["alignment"] <= 0.2


def test_frechet_distance_on_evaluator_features(evaluator, one_digit):
    videos, _ = one_digit
    other, _ = real_clips(60, 1, seed=6)
    real = features(evaluator, videos)
    assert real.shape == (60, 96)
    same = frechet_distance(features(evaluator, other), real)
    blurred = torch.nn.functional.avg_pool2d(videos, 5, stride=1, padding=2)  # digits smeared into blobs
    noise = torch.rand(videos.shape, generator=torch.Generator().manual_seed(0))
    assert frechet_distance(features(evaluator, blurred), real) > 2 * same
    assert frechet_distance(features(evaluator, noise), real) > 3 * same


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("micro")
    train(replace(TrainConfig(preset="micro", steps=2, batch_size=2, sample_every=0), out=str(run)), progress=False)
    return run / "ckpt.pt"


def test_prediction_scores_average_over_clips_and_copy_the_last_frame(micro_run):
    model, settings = load_dit(micro_run)
    result = video_prediction(model, VideoCodec("frame"), objective_of(settings), num_clips=5, steps=1, batch=3,
                              seed=0, progress=False)
    truth = torch.stack([standard_test_set()[i]["video"][0] for i in range(5)])  # (5, 20, 64, 64)
    copy = truth[:, 9:10].expand(-1, 10, -1, -1)
    assert result["clips"] == 5
    assert result["copy_last_frame"]["mse"] == pytest.approx(float(mse_per_frame(copy, truth[:, 10:])), rel=1e-5)
    assert set(result["model"]) == {"mse", "mae", "ssim", "psnr", "mse_per_frame"}
    assert np.mean(result["model"]["mse_per_frame"]) == pytest.approx(result["model"]["mse"], rel=1e-3)
    blank = float(mse_per_frame(torch.zeros_like(truth[:, 10:]), truth[:, 10:]))  # the ink of the future frames
    assert result["blank"]["mse"] == pytest.approx(blank, rel=1e-5) and result["blank"]["ssim"] < 1


def test_prediction_mean_of_samples_scores_their_average(micro_run):
    model, settings = load_dit(micro_run)
    args = dict(num_clips=3, steps=1, batch=3, seed=0, progress=False)
    two = video_prediction(model, VideoCodec("frame"), objective_of(settings), samples=2, **args)
    one = video_prediction(model, VideoCodec("frame"), objective_of(settings), **args)
    assert two["model"] == one["model"] and "mean_of_2_samples" not in one  # the first sample is the same draw
    truth = torch.stack([standard_test_set()[i]["video"] for i in range(3)])
    known = torch.arange(20) < 10
    draws = [generate(model, VideoCodec("frame"), [None] * 3, objective_of(settings), guidance=1.0, steps=1,
                      seed=3 * k, context=truth, known=known)[:, 0, 10:] for k in range(2)]
    mean = (draws[0] + draws[1]) / 2
    assert two["mean_of_2_samples"]["mse"] == pytest.approx(float(mse_per_frame(mean, truth[:, 0, 10:])), rel=1e-4)


def test_prediction_mirrors_draw_each_sample_from_a_mirror_image_mirrored_back(micro_run):
    model, settings = load_dit(micro_run)
    args = dict(num_clips=3, steps=1, batch=3, seed=0, progress=False, samples=4)
    mirrored = video_prediction(model, VideoCodec("frame"), objective_of(settings), mirrors=True, **args)
    plain = video_prediction(model, VideoCodec("frame"), objective_of(settings), **args)
    assert mirrored["model"] == plain["model"]  # the first sample is of the clip itself
    truth = torch.stack([standard_test_set()[i]["video"] for i in range(3)])  # (3, 1, 20, H, W)
    draws = [generate(model, VideoCodec("frame"), [None] * 3, objective_of(settings), guidance=1.0, steps=1,
                      seed=3 * k, context=truth.flip(axes), known=torch.arange(20) < 10)[:, 0, 10:].flip(axes)
             for k, axes in enumerate([(), (-1,), (-2,), (-2, -1)])]
    mean = torch.stack(draws).mean(0)
    assert mirrored["mean_of_4_samples"]["mse"] == pytest.approx(float(mse_per_frame(mean, truth[:, 0, 10:])),
                                                                 rel=1e-4)
    assert mirrored["mean_of_4_samples"]["mse"] != pytest.approx(plain["mean_of_4_samples"]["mse"], rel=1e-4)
    with pytest.raises(ValueError, match="needs prediction_samples >= 2, got 1"):
        EvalConfig(prediction_mirrors=True)


def test_prediction_reads_the_digits_of_the_sampled_and_the_true_future(micro_run):
    model, settings = load_dit(micro_run)
    result = video_prediction(model, VideoCodec("frame"), objective_of(settings), num_clips=6, steps=1, batch=3,
                              seed=0, progress=False, evaluator=load_evaluator())
    read = result["future_digits"]
    assert read["true_future"]["readable"] > 0 and read["true_future"]["alignment"] == 1.0  # truth shows its digits
    assert not read["model"]["alignment"] > 0.5  # two steps of training draw no digits (nan: none readable)
    truth = torch.stack([standard_test_set()[i]["video"] for i in range(6)])
    draws = torch.cat([generate(model, VideoCodec("frame"), [None] * 3, objective_of(settings), guidance=1.0, steps=1,
                                seed=i, context=truth[i:i + 3], known=torch.arange(20) < 10)[:, 0, 10:]
                       for i in (0, 3)])
    assert read["ink_vs_real"] == pytest.approx(float(draws.sum() / truth[:, 0, 10:].sum()), rel=1e-4)


def test_prediction_with_frame_guidance_scores_the_guided_samples(micro_run):
    model, settings = load_dit(micro_run)
    args = dict(num_clips=3, steps=2, batch=3, seed=0, progress=False)
    guided = video_prediction(model, VideoCodec("frame"), objective_of(settings), frame_guidance=3.0, **args)
    truth = torch.stack([standard_test_set()[i]["video"] for i in range(3)])
    draw = generate(model, VideoCodec("frame"), [None] * 3, objective_of(settings), guidance=1.0, steps=2, seed=0,
                    context=truth, known=torch.arange(20) < 10, frame_guidance=3.0)[:, 0, 10:]
    assert guided["model"]["mse"] == pytest.approx(float(mse_per_frame(draw, truth[:, 0, 10:])), rel=1e-4)
    plain = video_prediction(model, VideoCodec("frame"), objective_of(settings), **args)
    assert guided["model"]["mse"] != pytest.approx(plain["model"]["mse"], rel=1e-4)  # the guidance acts


def test_eval_command_prints_the_table_and_writes_json(micro_run, tmp_path, capsys):
    out = tmp_path / "eval.json"
    main(["eval", "--ckpt", str(micro_run), "--clips", "3", "--prediction-clips", "2", "--steps", "1",
          "--prediction-steps", "1", "--batch", "2", "--out", str(out), "--quiet"])
    printed = capsys.readouterr().out
    assert "| text alignment" in printed and "| model |" in printed and "copy last frame" in printed
    result = json.loads(out.read_text())
    assert {"one_digit", "two_digits", "frechet", "prediction", "settings", "command"} <= set(result)
    assert result["one_digit"]["real"]["alignment"] == 1.0  # 3 real test clips: read right
    assert np.isfinite(result["frechet"]["generated_vs_real"])
    assert "| speed jitter" in printed
    for kind in ("one_digit", "two_digits"):  # an evaluation from before the jitter was measured: no empty row
        for who in ("generated", "real"):
            del result[kind][who]["speed_jitter_px"]
    assert "| speed jitter" not in format_table(result) and "| direction persistence" in format_table(result)
    with pytest.raises(SystemExit):
        main(["eval", "--ckpt", str(tmp_path / "missing.pt")])


def test_eval_records_its_table_in_the_manifest(tmp_path):
    from minisora.evaluate import record_in_manifest

    (tmp_path / "w.json").write_text(json.dumps({"steps": 3}))
    record_in_manifest({"one_digit": {"generated": {"alignment": 0.5}}}, tmp_path / "w.pt")
    manifest = json.loads((tmp_path / "w.json").read_text())
    assert manifest == {"steps": 3, "eval": {"one_digit": {"generated": {"alignment": 0.5}}}}
    with pytest.raises(FileNotFoundError, match="no manifest"):
        record_in_manifest({}, tmp_path / "other.pt")


def test_framing_is_zero_on_real_clips_and_counts_digits_cut_by_the_edge():
    from minisora.size_eval import framing

    videos, _ = real_clips(20, 1, seed=3)
    assert framing(videos) == 0.0  # a Moving MNIST digit never leaves the canvas
    cut = torch.roll(videos, shifts=40, dims=-1)  # the canvas wraps: digits split across the left and right edges
    assert framing(cut) > 0.2


def test_eval_at_other_sizes(micro_run, tmp_path, capsys):
    from minisora.size_eval import SIZES

    out = tmp_path / "sizes.json"
    main(["eval", "--ckpt", str(micro_run), "--clips", "0", "--sizes", "2", "--prediction-clips", "0", "--steps", "1",
          "--out", str(out), "--quiet"])
    result = json.loads(out.read_text())
    assert set(result["sizes"]) == set(SIZES) and "one_digit" not in result
    still = result["sizes"]["64x64 image"]
    assert still["shape"] == [1, 64, 64] and "median_speed_error_px" not in still["real"]
    assert result["sizes"]["128x64, tall"]["real"]["alignment"] == 1.0 and result["sizes"]["64x128, wide"]["real"]["framing"] == 0
    assert "| 96x96, never trained |" in capsys.readouterr().out


def test_permanence_passes_real_crossings_and_fails_frozen_or_mirrored_ones():
    from minisora.permanence import AFTER, CROSS, crossing_clips, permanence_scores
    from minisora.geometry import separated

    real, labels, corners = crossing_clips(12, seed=4)
    gaps = np.abs(corners[:, :, 0] - corners[:, :, 1]).max(-1)  # (N, T)
    assert (gaps[:, 10:-AFTER] < CROSS).any(1).all() and separated(corners[:, -1]).all()
    _, _, apart = crossing_clips(12, seed=4, crossing=False)
    assert all(separated(c[10:]).all() for c in apart)
    assert all(a != b for a, b in labels)
    evaluator = load_evaluator()
    truth = permanence_scores(evaluator, real, labels, corners)
    frozen = real.clone()
    frozen[:, 10:] = real[:, 9:10]  # the digits stop before they cross
    mirrored = torch.flip(real, [-1])  # right digits, wrong places
    assert truth["in_place"] >= 0.75 and truth["ink_vs_real"] == 1.0
    for broken in (frozen, mirrored):
        assert permanence_scores(evaluator, broken, labels, corners, real)["in_place"] <= 0.25


def test_eval_command_measures_permanence(micro_run, tmp_path, capsys):
    main(["eval", "--ckpt", str(micro_run), "--clips", "0", "--prediction-clips", "0", "--permanence", "2",
          "--steps", "1", "--quiet", "--out", str(tmp_path / "p.json")])
    result = json.loads((tmp_path / "p.json").read_text())["permanence"]
    assert result["clips"] == 2 and set(result["crossing"]["generated"]) == {"kept", "in_place", "ink_vs_real"}
    assert set(result["apart"]["real"]) == {"kept", "in_place", "ink_vs_real"}
    assert "digits that stay apart (control)" in capsys.readouterr().out


def test_following_passes_real_clips_and_fails_reversed_mirrored_or_frozen_ones():
    from minisora.following import described_clips, following_scores

    videos, labels, prompts, motions = described_clips(60, seed=3)
    assert prompts[0].startswith(f"{'an' if labels[0][0] == 8 else 'a'} {labels[0][0]} starts")
    real = following_scores(videos, motions)
    assert real["direction"] == 1.0 and real["start"] >= 0.9 and real["bounce"] >= 0.9 and real["all_three"] >= 0.85
    for broken in (torch.flip(videos, [1]), torch.flip(videos, [-1]), videos[:, :1].expand_as(videos)):
        assert following_scores(broken, motions)["all_three"] <= 0.25


def test_chance_level_holds_real_clips_to_other_clips_captions():
    from minisora.following import chance_scores, described_clips, following_scores

    videos, _, _, motions = described_clips(60, seed=3)
    real, chance = following_scores(videos, motions), chance_scores(videos, motions)
    assert 0.05 <= chance["start"] <= 0.4 and 0.1 <= chance["direction"] <= 0.4  # 9 regions (not equally likely), 8 headings
    assert all(chance[k] < real[k] - 0.3 for k in ("start", "direction", "all_three"))
    assert chance_scores(videos[:2], motions[:2]) == following_scores(videos[:2], [motions[1], motions[0]])
    with pytest.raises(ValueError, match="at least 2 clips, got 1"):
        chance_scores(videos[:1], motions[:1])


def test_follows_names_the_failed_check():
    from minisora.following import described_clips, follows
    from minisora.physics import track

    videos, _, _, motions = described_clips(1, seed=3)
    centres = track(videos[0].numpy())[:, 0]
    assert follows(centres, motions[0], 64, 64) == {"start": True, "direction": True, "bounce": True}
    backwards = centres[0] - (centres - centres[0])  # the same start, every step the other way
    assert not follows(backwards, motions[0], 64, 64)["direction"]


def test_eval_command_measures_descriptive_prompts_and_expands(micro_run, tmp_path, capsys, monkeypatch):
    import minisora.evaluate

    asked = []
    real_generate = minisora.evaluate.generate
    monkeypatch.setattr(minisora.evaluate, "generate", lambda m, c, prompts, *a, **k: asked.extend(prompts) or
                        real_generate(m, c, prompts, *a, **k))
    main(["eval", "--ckpt", str(micro_run), "--clips", "2", "--expand", "--prediction-clips", "0", "--descriptive",
          "2", "--steps", "1", "--quiet", "--out", str(tmp_path / "d.json")])
    result = json.loads((tmp_path / "d.json").read_text())
    assert result["settings"]["expand"] is True and result["descriptive"]["clips"] == 2
    assert len(asked) == 4 and all(" starts " in p for p in asked)  # "0", "1", "a and b" x 2, each expanded
    assert {"start", "direction", "bounce", "all_three", "alignment"} <= set(result["descriptive"]["generated"])
    checks = {"start", "direction", "bounce", "all_three"}
    assert set(result["descriptive"]["generated_chance"]) == set(result["descriptive"]["chance"]) == checks
    assert "Descriptive prompts, 2 one-digit clips" in capsys.readouterr().out

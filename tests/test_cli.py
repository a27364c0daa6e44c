"""The command line: every flag is documented, exports work, bad input exits with a clear error."""

import argparse
import subprocess
import sys

from pathlib import Path

import numpy as np
import pytest
import torch

from minisora.cli import build_parser, main
from minisora.sample import DIT_PATH
from minisora.vae import VAE_PATHS


def subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_every_flag_of_every_command_has_help():
    parsers = subcommands()
    assert {"data", "train-evaluator"} <= set(parsers)
    for name, parser in parsers.items():
        for action in parser._actions:
            assert action.help, f"{name}: flag {action.option_strings} has no help text"


def test_help_runs_as_a_module():
    out = subprocess.run([sys.executable, "-m", "minisora", "data", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for flag in ("--preset", "--split", "--num-clips", "--seed", "--digits", "--download", "--out"):
        assert flag in out.stdout


def test_data_command_exports(tmp_path, capsys):
    main(["data", "--num-clips", "3", "--frames", "6", "--width", "80", "--digits", "mnist5k",
          "--out", str(tmp_path), "--name", "tiny", "--quiet", "--preset", "stochastic"])
    assert np.load(tmp_path / "tiny.npy").shape == (6, 3, 64, 80)
    assert (tmp_path / "tiny_preview.gif").exists()
    assert "wrote 3 clips (stochastic, test digits from mnist5k, seed 0)" in capsys.readouterr().out


def test_bad_arguments_exit_with_a_message(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["data", "--height", "10", "--out", str(tmp_path), "--quiet", "--digits", "mnist5k"])
    assert e.value.code == 2
    assert "canvas must be larger than a digit" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data", "--preset", "huge"])
    assert "invalid choice: 'huge'" in capsys.readouterr().err


# One case per class of bad input; each must give one line naming what was expected and what was given.
BAD_SETTINGS = [
    # sizes and counts positive
    (["train", "--batch-size", "0"], "batch_size must be a whole number >= 1, got 0"),
    (["eval", "--clips", "1"], "clips must be 0 (skip) or at least 2 and prediction_clips in 0..10000, got 1"),
    (["data", "--num-clips", "0"], "num_clips must be a whole number >= 1, got 0"),
    (["train-vae", "--steps", "-3"], "steps must be a whole number >= 1, got -3"),
    # sizes compatible with the model: frames whole tubelets, canvas whole patches
    (["train", "--patch", "3", "2", "2"], "frames=20 must be a positive multiple of 3"),
    (["train", "--dim", "100", "--heads", "3"], "dim=100 must split into 3 heads"),
    (["sample", "--height", "60"], "height=60 is not supported by this model: it must be a positive multiple of 8"),
    # probabilities in [0, 1]
    (["train", "--p-uncond", "1.5"], "p_uncond is a probability: expected a value in [0, 1], got 1.5"),
    (["train-denoiser", "--p-uncond", "-0.1"], "p_uncond and ema_decay must be in [0, 1), got -0.1"),
    # finite numbers
    (["sample", "--guidance", "nan"], "guidance must be a finite number >= 0.0, got nan"),
    (["train", "--lr", "inf"], "lr must be a finite number > 0.0, got inf"),
    (["eval", "--shift", "0"], "shift must be a finite number > 0.0, got 0.0"),
    # sampler steps >= 1
    (["sample", "--steps", "0"], "steps must be a whole number >= 1, got 0"),
    (["eval", "--prediction-steps", "0"], "prediction_steps must be a whole number >= 1, got 0"),
    # digits that fit on the canvas
    (["data", "--num-digits", "9"], "9 digits of 28 px do not fit on a 64x64 canvas: at most 5"),
    (["data", "--height", "10"], "the canvas must be larger than a digit"),
    (["train", "--num-digits", "1", "6"], "6 digits of 28 px do not fit on a 64x64 canvas"),
    # a device that exists
    (["sample", "--device", "foo"], "unknown device 'foo'"),
    (["sample", "--device", "cuda:7"], "device 'cuda:7' was asked for, but this machine has"),
    (["train", "--device", "cuda:7"], "device 'cuda:7' was asked for"),
    # words the model knows
    (["sample", "--prompt", "a purple 3", "--steps", "1"], "purple"),
]


@pytest.mark.parametrize("argv, message", BAD_SETTINGS)
def test_bad_settings_get_one_line_and_no_traceback(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        main([*argv, "--out", str(tmp_path / "out.gif")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.gif").exists()  # refused before anything was written


def bad_checkpoints(tmp_path: Path) -> dict[str, Path]:
    """The shipped DiT spoiled in each way a checkpoint can be wrong."""
    ckpt = torch.load(DIT_PATH, weights_only=True)
    paths = {name: tmp_path / f"{name}.pt" for name in ("truncated", "newer", "missing_weights", "no_train")}
    paths["truncated"].write_bytes(DIT_PATH.read_bytes()[:100_000])
    torch.save({**ckpt, "config": {**ckpt["config"], "hyper_depth": 3}}, paths["newer"])
    torch.save({**ckpt, "ema": {k: v for k, v in ckpt["ema"].items() if "final" not in k}}, paths["missing_weights"])
    torch.save({k: v for k, v in ckpt.items() if k != "train"}, paths["no_train"])
    return {**paths, "missing": tmp_path / "missing.pt", "other_kind": VAE_PATHS["frame"]}


@pytest.mark.parametrize("case, message", [
    ("missing", "missing.pt does not exist"),
    ("truncated", "could not be read as a weights-only torch checkpoint (corrupt, truncated or not a checkpoint?)"),
    ("other_kind", "vae_frame.pt is not a DiT checkpoint: expected keys ['config', 'ema', 'train'], got "
                   "['config', 'model']"),
    ("newer", "newer.pt is not a DiT checkpoint of this version of minisora: its config has fields"),
    ("missing_weights", "missing_weights.pt: its weights do not fit the DiT its config describes: Error(s) in "
                        "loading state_dict for DiT: Missing key(s)"),
    ("no_train", "no_train.pt is not a DiT checkpoint: expected keys"),
])
def test_bad_checkpoints_get_one_line_and_no_traceback(tmp_path, capsys, case, message):
    path = bad_checkpoints(tmp_path)[case]
    for argv in (["sample", "--ckpt", str(path), "--out", str(tmp_path / "s.gif")],
                 ["eval", "--ckpt", str(path), "--out", str(tmp_path / "e.json")]):
        with pytest.raises(SystemExit) as e:
            main([*argv, "--quiet"])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_python_callers_get_the_same_errors_as_the_cli():
    from minisora.evaluate import EvalConfig
    from minisora.capabilities import SampleConfig
    from minisora.train import TrainConfig

    for make, kwargs, message in [(TrainConfig, dict(p_uncond=1.5), "p_uncond is a probability"),
                                  (SampleConfig, dict(guidance=float("nan")), "guidance must be a finite number"),
                                  (EvalConfig, dict(steps=0), "steps must be a whole number >= 1")]:
        with pytest.raises(ValueError, match=message):
            make(**kwargs)

"""The command line: every flag is documented, exports work, bad input exits with a clear error."""

import argparse
import subprocess
import sys

import numpy as np
import pytest

from minisora.cli import build_parser, main


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


@pytest.mark.parametrize("argv, message", [
    (["sample", "--steps", "0"], "steps must be a whole number of sampler steps >= 1, got 0"),
    (["sample", "--guidance", "nan"], "guidance must be a finite number"),
    (["sample", "--device", "foo"], "unknown device 'foo'"),
    (["sample", "--device", "cuda:7"], "device 'cuda:7' was asked for, but this machine has"),
    (["train", "--lr", "nan", "--steps", "1"], "lr must be a finite learning rate > 0, got nan"),
    (["train", "--device", "cuda:7", "--steps", "1"], "device 'cuda:7' was asked for"),
])
def test_bad_settings_get_one_line_and_no_traceback(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        main([*argv, "--out", str(tmp_path / "out")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1

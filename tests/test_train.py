"""Training the DiT: exact resume, train-then-sample end to end, data parallel = one process, clear errors."""

import os
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from minisora.cli import main
from minisora.digits import DATA_DIR
from minisora.sample import VideoCodec, generate, latent_shape, load_dit, sample_from_checkpoint
from minisora.train import TrainConfig, train

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
    a, _ = sample_from_checkpoint(run / "ckpt.pt", ["3"], steps=2, frames=4)
    b, _ = sample_from_checkpoint(tmp_path / "w.pt", ["3"], steps=2, frames=4)
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
    with pytest.raises(ValueError, match="must be positive"):
        train(replace(QUICK, out=str(tmp_path), steps=0), progress=False)


def test_the_ddpm_objective_trains_and_samples_too(tmp_path):
    train(replace(QUICK, out=str(tmp_path), steps=2, objective="ddpm"), progress=False)
    videos, _ = sample_from_checkpoint(tmp_path / "ckpt.pt", ["3 and 7"], steps=2, frames=4)
    assert videos.shape == (1, 1, 4, 64, 64) and torch.isfinite(videos).all()

"""Re-patching a DiT to one token per latent frame: what carries over exactly, the rotary time, and the trainer."""

from dataclasses import replace

import pytest
import torch

from minisora.dit import DiT, get_preset, rope_angles
from minisora.repatch import repatch, repatched_config
from minisora.sample import load_dit
from minisora.train import TrainConfig, build, train


def test_a_still_clip_gets_the_mean_of_the_two_frames_the_old_token_drew(trained_looking):
    # factorized attention: a frame's tokens share one time, and a position's tokens over time hold one value, so
    # neither the rotary time nor the number of tokens changes what attention returns (full attention mixes both)
    start = trained_looking(get_preset("micro", attention="factorized", rope=True))
    model = DiT(repatched_config(start.config, (1, 4, 4)))
    repatch(start, model)
    still = torch.randn(2, start.config.in_channels, 1, 16, 16).expand(-1, -1, 4, -1, -1)  # one frame, held
    time, ids = torch.tensor([100.0, 900.0]), start.tokenizer.batch(["3", "1 and 8"])
    with torch.no_grad():
        old, new = start(still, time, ids), model(still, time, ids)
    assert (old[:, :, 0] - old[:, :, 1]).abs().mean() > 0.1  # the old token draws its two frames apart
    # every token of a held frame sees the same tokens, so the new model's frame is the mean of the old pair
    torch.testing.assert_close(new, old.reshape(*old.shape[:2], 2, 2, 16, 16).mean(3, keepdim=True).expand(
        -1, -1, -1, 2, -1, -1).reshape(old.shape), rtol=0, atol=1e-5)


def test_the_rotary_time_of_a_frame_is_kept():
    assert repatched_config(get_preset("micro", rope=True), (1, 4, 4)).rope_time_scale == 0.5
    half, whole = rope_angles((8, 2, 2), 16, 0.5), rope_angles((4, 2, 2), 16)
    torch.testing.assert_close(half[::4][::2], whole[::4])  # token 2k of the new grid sits at token k of the old


@pytest.mark.parametrize("patch, message", [((1, 2, 4), "temporal patch only"), ((3, 4, 4), "temporal patch only"),
                                            ((2, 4, 4), "temporal patch only")])
def test_repatch_errors(patch, message):
    with pytest.raises(ValueError, match=message):
        repatched_config(get_preset("micro", rope=True), patch)
    with pytest.raises(ValueError, match="rotary positions"):
        repatched_config(get_preset("micro"), (1, 4, 4))
    with pytest.raises(ValueError, match="rope_time_scale must be"):
        get_preset("micro", rope_time_scale=0.5)  # without rope
    start = DiT(get_preset("micro", rope=True))
    with pytest.raises(ValueError, match="can only re-patch into"):
        repatch(start, DiT(replace(start.config, patch=(1, 4, 4))))  # time not rescaled


def test_init_repatches_a_run_and_a_later_run_keeps_its_time(tmp_path):
    quick = TrainConfig(preset="micro", steps=2, batch_size=2, log_every=1, ckpt_every=100, sample_every=0,
                        attention="factorized", rope=True, lr=1e-2)
    train(replace(quick, out=str(tmp_path / "a")), progress=False)
    again = replace(quick, patch=(1, 4, 4), init=str(tmp_path / "a" / "ckpt.pt"), out=str(tmp_path / "b"))
    model = build(again, torch.device("cpu")).model
    assert model.config.patch == (1, 4, 4) and model.config.rope_time_scale == 0.5
    train(again, progress=False)
    after, _ = load_dit(tmp_path / "b" / "ckpt.pt")
    assert after.config.rope_time_scale == 0.5 and after.config.tubelet_frames == 1
    on = replace(again, init=str(tmp_path / "b" / "ckpt.pt"), out=str(tmp_path / "c"))  # same patch: same time
    assert build(on, torch.device("cpu")).model.config.rope_time_scale == 0.5
    with pytest.raises(ValueError, match="temporal patch only"):
        build(replace(again, patch=(4, 4, 4)), torch.device("cpu"))  # longer, not shorter
    with pytest.raises(ValueError, match="holds a different model"):  # a new spatial patch is another model
        build(replace(again, patch=(1, 2, 2)), torch.device("cpu"))

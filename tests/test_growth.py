"""Growing a DiT deeper: the grown model computes what the shallow one did, its copies keep their attention mode,
and training reaches them."""

from dataclasses import replace

import pytest
import torch

from minisora.dit import ATTENTIONS, DiT, get_preset
from minisora.growth import grow, source_blocks
from minisora.sample import load_dit
from minisora.train import TrainConfig, build, train


@pytest.mark.parametrize("attention,depth", [("factorized", 4), ("factorized", 6), ("full", 6), ("hybrid", 4)])
def test_a_grown_model_computes_what_the_shallow_one_did(attention, depth, trained_looking):
    start = trained_looking(get_preset("micro", attention=attention, conv=True, rope=True))
    model = DiT(replace(start.config, depth=depth))
    grow(start, model)
    x, time = torch.randn(2, start.config.in_channels, 4, 16, 16), torch.tensor([100.0, 900.0])
    ids = start.tokenizer.batch(["3", "1 and 8"])
    with torch.no_grad():
        expected, out = start(x, time, ids), model(x, time, ids)
    assert expected.abs().mean() > 0.1  # the start's blocks do something, so silencing a copy shows
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    # the modes still cycle, and every copy's weights but the silenced ones are its original's
    assert [b.mode for b in model.blocks] == [b.mode for b in DiT(model.config).blocks]
    period = len(ATTENTIONS[attention])
    for block, (source, new) in zip(model.blocks, source_blocks(depth, start.config.depth, period)):
        assert block.mode == start.blocks[source].mode
        torch.testing.assert_close(block.attn.qkv.weight, start.blocks[source].attn.qkv.weight, rtol=0, atol=0)
        assert (block.cross.proj.weight.abs().sum() == 0) == new


def test_source_blocks_copy_whole_periods_and_refuse_other_depths():
    assert source_blocks(8, 4, 2) == [(0, False), (1, False), (0, True), (1, True),
                                      (2, False), (3, False), (2, True), (3, True)]
    assert source_blocks(4, 2, 1) == [(0, False), (0, True), (1, False), (1, True)]
    with pytest.raises(ValueError, match="whole multiple"):
        source_blocks(6, 4, 2)
    with pytest.raises(ValueError, match="whole periods"):
        source_blocks(6, 3, 2)


def test_init_grows_a_run_and_training_opens_the_copies(tmp_path):
    quick = TrainConfig(preset="micro", steps=2, batch_size=2, log_every=1, ckpt_every=100, sample_every=0,
                        attention="factorized", lr=1e-2)
    train(replace(quick, out=str(tmp_path / "a")), progress=False)
    start, _ = load_dit(tmp_path / "a" / "ckpt.pt")
    grown = replace(quick, depth=4, init=str(tmp_path / "a" / "ckpt.pt"), out=str(tmp_path / "b"))
    model = build(grown, torch.device("cpu")).model
    assert model.config.depth == 4 and model.blocks[2].cross.proj.weight.abs().sum() == 0
    train(grown, progress=False)
    after, _ = load_dit(tmp_path / "b" / "ckpt.pt")
    assert after.blocks[2].cross.proj.weight.abs().sum() > 0  # the copies are trained, not frozen at zero
    with pytest.raises(ValueError, match="holds a different model"):  # growth is in depth only
        build(replace(grown, dim=64), torch.device("cpu"))
    with pytest.raises(ValueError, match="whole multiple"):
        build(replace(grown, depth=6, init=str(tmp_path / "b" / "ckpt.pt")), torch.device("cpu"))

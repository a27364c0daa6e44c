"""minisora's DiT beside diffusers' Latte (issue 19): equal shapes, so the comparison cannot drift silently."""

import os
import subprocess
import sys

import pytest
import torch

if os.environ.get("MINISORA_REQUIRE_PEERS"):  # make test: diffusers is in requirements.txt, never skip
    import diffusers  # noqa: F401
else:  # a user's own environment without the benchmarks' dependencies
    pytest.importorskip("diffusers")

from minisora.dit import parameter_count  # noqa: E402
from minisora.peers import PEERS, build_pair, code_lines, flop_counter  # noqa: E402
from minisora.sample import latent_shape  # noqa: E402

PARAMETER_TOLERANCE = 0.35  # minisora / Latte within 1 +- this: per-block adaLN and cross-attention in every block
FLOP_TOLERANCE = 0.10  # matmul work per clip within 10%


@pytest.mark.parametrize("preset", ["micro", "tiny"])
def test_minisora_and_latte_have_equal_shapes_tokens_and_close_size(preset):
    ours, peer = build_pair(preset, "latte")
    c, latte = ours.config, peer.latte.config
    assert c.attention == "factorized" and not c.rope and not c.conv
    assert latte.num_attention_heads == c.heads and latte.num_attention_heads * latte.attention_head_dim == c.dim
    assert 2 * latte.num_layers == c.depth and latte.patch_size == c.patch[1] == c.patch[2]
    t, h, w = ours.patch_grid(torch.zeros(1, *latent_shape(c, c.frames, c.size, c.size)))
    assert latte.video_length == t and peer.latte.pos_embed.height * peer.latte.pos_embed.width == h * w
    ratio = parameter_count(ours) / parameter_count(peer)
    assert abs(ratio - 1) <= PARAMETER_TOLERANCE, f"parameters minisora / Latte = {ratio:.2f}"
    torch.testing.assert_close(peer.text.state_dict(), ours.text.state_dict())  # the same text encoder


@pytest.mark.parametrize("preset", ["micro", "tiny"])
def test_minisora_and_wan_have_equal_shapes_tokens_and_close_size(preset):
    ours, peer = build_pair(preset, "wan")
    c, wan = ours.config, peer.wan.config
    assert c.attention == "full" and c.rope and not c.conv
    assert wan.num_attention_heads == c.heads and wan.num_attention_heads * wan.attention_head_dim == c.dim
    assert wan.num_layers == c.depth and tuple(wan.patch_size) == c.patch and wan.ffn_dim == c.mlp_ratio * c.dim
    ratio = parameter_count(ours) / parameter_count(peer)
    assert abs(ratio - 1) <= PARAMETER_TOLERANCE, f"parameters minisora / Wan = {ratio:.2f}"
    torch.testing.assert_close(peer.text.state_dict(), ours.text.state_dict())


@pytest.mark.parametrize("peer_name", list(PEERS))
def test_both_models_map_the_same_inputs_to_the_same_shape_and_work_per_tubelet(peer_name):
    ours, peer = build_pair("micro", peer_name)
    z = torch.randn(2, *latent_shape(ours.config, 20, 64, 64))
    time, ids = torch.rand(2), ours.tokenizer.batch(["3 and 7", "5"])
    flops = []
    for model in (ours, peer):
        with flop_counter() as counter:
            out = model(z, time, ids)
        assert out.shape == z.shape and torch.isfinite(out).all()
        flops.append(counter.get_total_flops())
    assert abs(flops[0] / flops[1] - 1) <= FLOP_TOLERANCE
    with pytest.raises(ValueError, match="one time per clip"):
        peer(z, torch.rand(2, z.shape[2]), ids)


@pytest.mark.parametrize("peer_name", list(PEERS))
def test_the_peer_trains_every_parameter(peer_name):
    from minisora.diffusion import RectifiedFlow

    _, peer = build_pair("micro", peer_name)
    z = torch.randn(2, *latent_shape(peer.config, 20, 64, 64))
    RectifiedFlow().loss(peer, z, peer.tokenizer.batch(["3", "4"])).backward()
    assert all(p.grad is not None for p in peer.parameters())


def test_the_peers_are_the_ones_train_can_name():
    from minisora.sample import PEER_NAMES

    assert tuple(PEERS) == PEER_NAMES


def test_code_lines_count_the_model_not_torch():
    ours, peer = build_pair("micro", "latte")
    assert code_lines(torch.nn.Sequential(torch.nn.Linear(2, 2))) == 0
    assert code_lines(ours.text) < code_lines(ours) < code_lines(peer)


def test_bench_peers_command_prints_both_models_and_the_ratios(capsys):
    from minisora.cli import main

    main(["bench", "peers", "--presets", "micro", "--batch", "2", "--steps", "1", "--precisions", "fp32", "--quiet"])
    out = capsys.readouterr().out
    assert out.count("| minisora |") == 2 and "| diffusers Latte |" in out and "| diffusers Wan |" in out
    assert "| **ratio minisora / latte** |" in out and "| **ratio minisora / wan** |" in out


def test_importing_minisora_does_not_import_diffusers():
    code = "import sys, minisora, minisora.cli, minisora.bench; assert 'diffusers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_flops_of_a_grouped_convolution_backward_count_its_groups():
    from minisora.peers import flop_counter

    x = torch.randn(2, 8, 4, 5, 5, requires_grad=True)
    for groups in (1, 8):  # dense, depthwise
        conv = torch.nn.Conv3d(8, 8, 3, padding=1, groups=groups)
        with flop_counter() as forward:
            conv(x.detach())
        with flop_counter() as step:
            conv(x).sum().backward()
        assert forward.get_total_flops() == 2 * 2 * 4 * 5 * 5 * 8 * (8 // groups) * 27
        assert step.get_total_flops() == 3 * forward.get_total_flops()  # forward, input grad, weight grad


def test_counted_step_flops_compare_the_two_models_alike():
    from minisora.peers import counted_step_flops

    ours, peer = build_pair("micro", "latte")
    clips = [counted_step_flops(m, batch=2, p_image=0.0) for m in (ours, peer)]
    assert abs(clips[0] / clips[1] - 1) <= FLOP_TOLERANCE
    stills = counted_step_flops(ours, batch=2, p_image=1.0)  # 2 x (frames of tubelets) stills of one frame of tubelets
    assert stills != clips[0] and counted_step_flops(ours, batch=2, p_image=0.5) == pytest.approx((clips[0] + stills) / 2)


def test_train_arch_latte_trains_exports_loads_and_samples_through_minisora(tmp_path, capsys):
    from minisora.cli import main
    from minisora.peers import LattePeer
    from minisora.sample import VideoCodec, generate, load_dit

    run = tmp_path / "run"
    main(["train", "--preset", "micro", "--arch", "latte", "--no-conv", "--no-rope", "--p-known", "0", "--steps", "4",
          "--batch-size", "2", "--out", str(run), "--sample-every", "0", "--quiet", "--stop-at", "2"])
    main(["train", "--preset", "micro", "--arch", "latte", "--no-conv", "--no-rope", "--p-known", "0", "--steps", "4",
          "--batch-size", "2", "--out", str(run), "--sample-every", "0", "--quiet", "--resume"])
    model, train = load_dit(run / "ckpt.pt")
    assert isinstance(model, LattePeer) and train["arch"] == "latte"
    video = generate(model, VideoCodec(model.config.vae), ["3"], train["objective"], steps=2)
    assert video.shape == (1, 1, model.config.frames, model.config.size, model.config.size)
    with pytest.raises(SystemExit):
        main(["eval", "--ckpt", str(run / "ckpt.pt"), "--clips", "2", "--prediction-clips", "2", "--quiet"])
    assert "holds a latte model, which takes one time per clip" in capsys.readouterr().err


@pytest.mark.parametrize("arch, fine", [("latte", dict(conv=False, rope=False, p_known=0.0)),
                                        ("wan", dict(attention="full", conv=False, p_known=0.0))])
@pytest.mark.parametrize("bad", [dict(conv=True), dict(p_known=0.25), dict(p_predict=1.0),
                                 dict(sizes="mixed", p_image=0.0), dict(repa=0.5), dict(attention="factorized"),
                                 dict(rope=False)])
def test_settings_a_peer_does_not_have_are_refused(arch, fine, bad):
    from minisora.train import TrainConfig

    TrainConfig(arch=arch, **fine)
    if all(fine.get(k, getattr(TrainConfig, k)) == v for k, v in bad.items()):  # the peer has these
        TrainConfig(arch=arch, **{**fine, **bad})
        return
    with pytest.raises(ValueError, match=f"arch {arch} is built with .* these settings differ: {{'{next(iter(bad))}'"):
        TrainConfig(arch=arch, **{**fine, **bad})

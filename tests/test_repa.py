"""REPA: the aligner's cell labels, the targets each token gets, the loss, and the shipped aligner."""

import numpy as np
import pytest
import torch

from minisora.data import MovingMNIST
from minisora.repa import (BACKGROUND, FrameEncoder, Projector, aligned_block, alignment_loss, cell_labels,
                           load_aligner, token_targets)


def test_cell_labels_mark_the_cells_each_digit_covers():
    data = MovingMNIST("train", 4, seed=3, digits="mnist5k", num_digits=2)
    clip = data.clip(0)
    labels = cell_labels(clip, data.digits)
    assert labels.shape == (20, 8, 8)
    assert set(np.unique(labels)) <= {*clip.labels.tolist(), BACKGROUND}
    ink = clip.video.reshape(20, 8, 8, 8, 8).mean((2, 4)) / 255  # (T, h, w) mean ink per cell
    assert (labels[ink == 0] == BACKGROUND).all()  # no ink: background
    assert (labels[ink > 0.3] != BACKGROUND).all()  # much ink: a digit
    for k, label in enumerate(clip.labels):  # each digit is found near where it was drawn
        y, x = (clip.motion.positions[0, k] + 14) // 8  # its centre cell in the first frame
        window = labels[0, max(0, int(y) - 1):int(y) + 2, max(0, int(x) - 1):int(x) + 2]
        assert label in window


def test_token_targets_average_each_tokens_frames_and_cells():
    torch.manual_seed(0)
    encoder = FrameEncoder(8).eval()
    video = torch.rand(2, 1, 4, 64, 64)
    y = token_targets(encoder, video, (2, 4, 4))  # tubelets of 2 frames, 2x2 cells of 8 px
    assert y.shape == (2, 2 * 4 * 4, 8)
    f = encoder(video[1, :, 2:4].transpose(0, 1))  # (2 frames, 8, 8, 8): the second tubelet of clip 1
    expected = f.mean(0)[:, 2:4, 4:6].mean((1, 2))  # token (t=1, h=1, w=2)
    torch.testing.assert_close(y[1, 16 + 1 * 4 + 2], expected)


def test_alignment_loss_is_minus_the_cosine():
    a = torch.randn(3, 5, 4)
    assert alignment_loss(a, 2 * a).item() == pytest.approx(-1.0)
    assert alignment_loss(a, -a).item() == pytest.approx(1.0)
    assert Projector(16, 4)(torch.randn(2, 7, 16)).shape == (2, 7, 4)
    assert [aligned_block(d) for d in (1, 2, 4, 8, 28)] == [0, 0, 0, 2, 8]


def test_the_shipped_aligner_labels_test_digits():
    encoder = load_aligner()
    data = MovingMNIST("test", 8, seed=5, digits="mnist5k", num_digits=1)
    right = total = 0
    for i in range(8):
        clip = data.clip(i)
        labels = torch.from_numpy(cell_labels(clip, data.digits))
        frames = torch.from_numpy(clip.video).float().div(255)[:, None]
        guess = encoder.classify(frames).argmax(1)
        digit = labels != BACKGROUND
        right, total = right + (guess[digit] == labels[digit]).sum().item(), total + digit.sum().item()
    assert right / total > 0.7  # chance is 10%


def test_a_missing_or_foreign_aligner_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_aligner(tmp_path / "none.pt")
    torch.save({"config": {}, "model": {}}, tmp_path / "evaluator.pt")
    with pytest.raises(ValueError, match="not an aligner checkpoint"):
        load_aligner(tmp_path / "evaluator.pt")


def test_flop_counts_match_torchs_counter():
    from torch.utils.flop_counter import FlopCounterMode

    from minisora.repa import flops_per_frame, projector_flops

    with FlopCounterMode(display=False) as counter:
        FrameEncoder(64)(torch.rand(1, 1, 64, 64))
    assert counter.get_total_flops() == flops_per_frame(64, 64)
    h = torch.randn(1, 10, 128, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        Projector(128, 64)(h).sum().backward()  # forward and backward, as in training
    assert counter.get_total_flops() == 10 * projector_flops(128, 64)

"""ConvLSTM (Shi et al. 2015, arXiv 1506.04214): a regression model of 10 -> 10 prediction, and the DiT's draft.

OpenSTL builds it for Moving MNIST so (and so does this file): p x p pixel patches folded into channels, stacked
cells without peepholes, a forget-gate bias of 1, a 1x1 convolution that reads the next frame off the top layer.
Trained by MSE (``scripts/convlstm_peer.py``), it predicts the *mean* future, a blur; a DiT trained with ``--draft``
starts its flow from this blur plus noise instead of from noise alone, and draws the sharp rest (``train.py``).

    i, f, g, o = W_x * x_t + W_h * h_{t-1}          (convolutions; four gates)
    c_t = sigmoid(f + 1) c_{t-1} + sigmoid(i) tanh(g)
    h_t = sigmoid(o) tanh(c_t)

With ``dna = k`` the head does not paint the next frame's pixels; it says where each comes from. Dynamic neural
advection (DNA, Finn et al. 2016, arXiv 1605.07157) reads, for every pixel x, a distribution over the k x k pixels
around it in the step's input frame (here a softmax, with one more weight for black: minisora's, to dim a pixel):

    x_{t+1}(x) = sum_{|delta| <= k // 2} w_delta(x) x_t(x + delta),   w(x) = softmax(head(h_t))(x)

Moving MNIST's digits only translate (3.6 px a frame, so k = 9 reaches every step), so the appearance of the next
frame is already in this one: the narrow hidden state need only say how it moves. With ``dna_cells`` the head reads
one distribution for each p x p cell, and the cell's pixels share it (w(x) = w(cell of x)): a digit moves as one,
so only where two digits meet in a cell is anything lost, and the head reads k^2 + 1 channels a cell, not p^2 times
as many (11% fewer FLOPs a step at the draft's size; 1.4 lower MSE at 60 TFLOP, session 41).

With ``coords`` the first layer also reads each cell's row and column in [-1, 1] (CoordConv, Liu et al. 2018, arXiv
1807.03247). A convolution sees the same thing anywhere, but a digit bounces off the walls: where it is decides its
future. Zero padding tells only the cells near a border; the two channels tell every cell, at 2% more FLOPs.

With ``mirrors = m`` (2 or 4) ``predict`` averages the model's futures of the clip's m mirror images (left-right, then
up-down and both), each mirrored back: the protocol's motion looks the same in a mirror (uniform direction, walls on
all sides), so each is an honest prediction, and the mean of m predictions is never farther from the truth in MSE
than their average error (test-time augmentation; m forward passes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from einops import rearrange, repeat
from torch import nn
from torch.nn import functional as F

from .checkpoint import load_model
from .config import option
from .data import CONTEXT


MIRRORS = {1: [()], 2: [(), (-1,)], 4: [(), (-1,), (-2,), (-2, -1)]}  # the axes each mirror image flips


@dataclass
class ConvLSTMConfig:
    hidden: tuple[int, ...] = option((16, 16, 16), "channels of each ConvLSTM layer (OpenSTL: four of 128; 16 beat 32 "
                                     "and 64 at 60 TFLOP)")
    kernel: int = option(5, "convolution kernel size (odd)")
    patch: int = option(4, "p x p pixels folded into channels")
    dna: int = option(0, "0: the head paints the next frame; an odd k: it moves each pixel from the k x k around it "
                      "in the step's input frame (dynamic neural advection)")
    mirrors: int = option(1, "predict by the mean future of the clip's 1, 2 or 4 mirror images (left-right, up-down, "
                          "both), each mirrored back; training is unchanged, so a finished run can be scored and "
                          "exported again with another value", choices=tuple(MIRRORS))
    coords: bool = option(False, "the first layer also reads each cell's row and column (CoordConv), so every cell "
                          "knows where the walls are")
    dna_cells: bool = option(False, "with dna: one k x k kernel for each p x p cell, shared by its pixels, instead of "
                             "one for each pixel (a rigid digit moves as one; a cheaper head)")

    def __post_init__(self):
        self.hidden = tuple(self.hidden)
        if not self.hidden or min(self.hidden) < 1 or self.kernel < 1 or self.kernel % 2 == 0 or self.patch < 1 or (
                self.dna and (self.dna < 1 or self.dna % 2 == 0)) or self.mirrors not in MIRRORS or (
                self.dna_cells and not self.dna):
            raise ValueError(f"expected ConvLSTM hidden channels >= 1, an odd kernel, a patch >= 1, dna 0 or odd and "
                             f"mirrors 1, 2 or 4, and dna_cells only with dna; got hidden={self.hidden}, "
                             f"kernel={self.kernel}, patch={self.patch}, dna={self.dna}, mirrors={self.mirrors}, "
                             f"dna_cells={self.dna_cells}")


class ConvLSTMCell(nn.Module):
    """One ConvLSTM layer: the LSTM's four gates from convolutions of the input and the last hidden state."""

    def __init__(self, channels: int, hidden: int, kernel: int):
        super().__init__()
        self.conv_x = nn.Conv2d(channels, 4 * hidden, kernel, padding=kernel // 2)
        self.conv_h = nn.Conv2d(hidden, 4 * hidden, kernel, padding=kernel // 2, bias=False)

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        i, f, g, o = (self.conv_x(x) + self.conv_h(h)).chunk(4, dim=1)  # each (B, hidden, H, W)
        c = torch.sigmoid(f + 1.0) * c + torch.sigmoid(i) * torch.tanh(g)  # c_t = f * c_{t-1} + i * g, forget bias 1
        h = torch.sigmoid(o) * torch.tanh(c)  # h_t = o * tanh(c_t)
        return h, c


def advect(frame: torch.Tensor, logits: torch.Tensor, k: int) -> torch.Tensor:
    """Dynamic neural advection: the next frame (B, H, W), each pixel a weighted sum of the k x k pixels around it in
    ``frame`` (B, H, W), weighted by the softmax of ``logits`` (B, k^2 + 1, H, W) (the last weight is black's; the
    others run over the offsets row by row)."""
    b, height, width = frame.shape
    w = logits.softmax(1)[:, :-1]  # (B, k^2, H, W): w_delta(x)
    around = F.unfold(frame[:, None], k, padding=k // 2).view(b, k * k, height, width)  # (B, k^2, H, W): x_t(x + delta)
    return (w * around).sum(1)  # x_{t+1}(x) = sum_delta w_delta(x) x_t(x + delta)


class ConvLSTM(nn.Module):
    """Stacked ConvLSTM cells on p x p patches folded into channels; a 1x1 conv reads the next frame (or, with
    ``dna``, where each of its pixels comes from) off the top layer. ``forward`` predicts frames 1..T-1 of
    ``video``; at step t the input is the true frame t where ``teacher`` (B, T-1) says so (given frames, scheduled
    sampling) and the model's own prediction elsewhere."""

    def __init__(self, config: ConvLSTMConfig = ConvLSTMConfig()):
        super().__init__()
        self.config = config
        channels = config.patch ** 2
        inputs = channels + 2 * config.coords  # the first layer's: the patch's pixels (and the cell's row and column)
        self.cells = nn.ModuleList(ConvLSTMCell(inputs if k == 0 else config.hidden[k - 1], width, config.kernel)
                                   for k, width in enumerate(config.hidden))
        reads = config.dna ** 2 + 1 if config.dna else 1  # per pixel: DNA's k^2 weights and black's, or its value
        per_cell = 1 if config.dna_cells else channels  # dna_cells: one set a cell, not one for each of its p^2 pixels
        self.head = nn.Conv2d(config.hidden[-1], reads * per_cell, 1, bias=False)

    def forward(self, video: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        p = self.config.patch
        if video.ndim != 4 or video.shape[-1] % p or video.shape[-2] % p:
            raise ValueError(f"expected clips (B, T, H, W) with H and W multiples of the patch {p}, got "
                             f"{tuple(video.shape)}")
        b, steps, height, width = video.shape
        h = [video.new_zeros(b, cell.conv_h.in_channels, height // p, width // p) for cell in self.cells]
        c = [torch.zeros_like(state) for state in h]
        if self.config.coords:
            grid = torch.meshgrid(torch.linspace(-1, 1, height // p), torch.linspace(-1, 1, width // p), indexing="ij")
            coords = torch.stack(grid).to(video).expand(b, -1, -1, -1)  # (B, 2, H/p, W/p): each cell's row and column
        frame, outs = video[:, 0], []  # the step's input: a true frame or the model's own prediction
        for t in range(steps - 1):
            x = rearrange(frame, "b (h p) (w q) -> b (p q) h w", p=p, q=p)  # (B, p^2, H/p, W/p)
            if self.config.coords:
                x = torch.cat([x, coords], 1)  # (B, p^2 + 2, H/p, W/p)
            for k, cell in enumerate(self.cells):
                h[k], c[k] = cell(x if k == 0 else h[k - 1], h[k], c[k])
            if self.config.dna_cells:  # one kernel a cell, shared by its p x p pixels
                read = repeat(self.head(h[-1]), "b c h w -> b c (h p) (w q)", p=p, q=p)  # (B, k^2 + 1, H, W)
            else:
                read = rearrange(self.head(h[-1]), "b (c p q) h w -> b c (h p) (w q)", p=p, q=p)  # (B, reads, H, W)
            outs.append(advect(frame, read, self.config.dna) if self.config.dna else read[:, 0])  # (B, H, W)
            frame = torch.where(teacher[:, t, None, None], video[:, t + 1], outs[-1])
        return torch.stack(outs, 1)  # (B, T-1, H, W)


def prediction_teacher(batch: int, frames: int, given: int = CONTEXT) -> torch.Tensor:
    """Test time: the ``given`` frames go in, the future is the model's own."""
    return (torch.arange(frames - 1) < given - 1).expand(batch, -1)  # (B, T-1)


@torch.no_grad()
def predict(model: ConvLSTM, video: torch.Tensor, given: int = CONTEXT) -> torch.Tensor:
    """The future (B, T - given, H, W) of clips (B, T, H, W) from their first ``given`` frames (10 -> 10 by
    default), clamped to [0, 1]; with ``mirrors``, the mean of the futures of the clip's mirror images."""
    if not 1 <= given < video.shape[1]:
        raise ValueError(f"expected 1 <= given frames < the clip's {video.shape[1]} frames, got {given}")
    teacher = prediction_teacher(len(video), video.shape[1], given)
    pred = torch.stack([model(video.flip(axes), teacher).flip(axes)  # (B, T-1, H, W): frames 1..T-1, mirrored back
                        for axes in MIRRORS[model.config.mirrors]]).mean(0)
    return pred[:, given - 1:].clamp(0, 1)


@torch.no_grad()
def draft_clips(model: ConvLSTM, videos: torch.Tensor, given: int = CONTEXT) -> torch.Tensor:
    """Clips (B, 1, T, H, W) -> the same clips with the frames after the first ``given`` replaced by the ConvLSTM's
    prediction of them."""
    return torch.cat([videos[:, :, :given], predict(model, videos[:, 0], given)[:, None]], 2)  # (B, 1, T, H, W)


def load_convlstm(path: str | Path, device: str | torch.device = "cpu") -> ConvLSTM:
    """A ConvLSTM from exported weights (``scripts/convlstm_peer.py --export``), or a one-line error."""
    return load_model(path, ConvLSTM, ConvLSTMConfig, device)[0]


def draft_of(train: dict, device: str | torch.device = "cpu", path: str | None = None,
             noise: float | None = None) -> tuple[ConvLSTM | None, float]:
    """The draft a DiT run trained with (``train --draft``, from its saved settings) and its noise sigma; (None, 1.0)
    for a run without one. ``path`` and ``noise``, if given, replace them (``eval`` and ``sample`` ``--draft``,
    ``--draft-noise``): only a run trained with a draft takes them."""
    if not train.get("draft"):
        for name, value in (("draft", path), ("draft_noise", noise)):
            if value is not None:
                raise ValueError(f"{name} replaces the one a run trained with, and this run was trained without a "
                                 f"draft (train --draft); got {name}={value!r}")
        return None, 1.0
    return load_convlstm(path or train["draft"], device), train.get("draft_noise", 1.0) if noise is None else noise

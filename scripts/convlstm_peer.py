"""A regression peer for 10 -> 10 prediction: a ConvLSTM trained by MSE, at minisora's compute.

    python scripts/convlstm_peer.py --budget-tflop 294 --evals 0.1 0.2 0.5 --out ~/minisora-runs/convlstm/w16-294
    (run it again to resume; with --figure PNG, again after the end, to draw the figure)

Issue 17 takes OpenSTL's table as the goal of prediction (ConvLSTM 29.8 MSE). minisora's DiT samples *a* future;
a regression model predicts the mean future, which is what MSE rewards. This script asks how much of the DiT's gap
is the method and how much is compute. It trains OpenSTL's ConvLSTM design (Shi et al. 2015, arXiv 1506.04214, as
OpenSTL builds it: no peepholes, forget bias 1, 4x4 patches folded into channels, scheduled sampling), at a width
that fits 2 CPU cores, on the clips the DiT's prediction runs train on (two train digits, the standard protocol).
It scores the model as ``eval`` scores the DiT: the first ``--clips`` standard test clips, MSE per frame summed over
pixels, and the evaluator's reading of the future. FLOPs are counted by the counter that counts the DiT's steps
(``peers.flop_counter``), so the budgets compare; ``--evals`` scores the model part-way, for a compute curve. The
JSON also gives what OpenSTL's configuration (4 layers of 128 channels, 5x5 kernels) costs a clip, and so its run
(200 epochs of 10,000 clips, OpenSTL's Moving MNIST setting).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from torch import nn
from tqdm.auto import tqdm

from minisora.checkpoint import atomic_write, save_checkpoint
from minisora.data import MovingMNIST, load_digits, standard_test_set
from minisora.evaluate import CONTEXT, future_digits, prediction_metrics
from minisora.evaluator import load_evaluator
from minisora.peers import flop_counter
from minisora.sample import VideoCodec, generate, load_dit, objective_of
from minisora.viz import frame_strip

OPENSTL = dict(hidden=(128, 128, 128, 128), kernel=5, patch=4, clips=10_000, epochs=200)  # its Moving MNIST config


# ----------------------------------------------------------------------------- the model

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


class ConvLSTM(nn.Module):
    """Stacked ConvLSTM cells on p x p patches folded into channels; a 1x1 conv reads the next frame off the top
    layer. ``forward`` predicts frames 1..T-1 of ``video``; at step t the input is the true frame t where
    ``teacher`` (B, T-1) says so (given frames, scheduled sampling) and the model's own prediction elsewhere."""

    def __init__(self, hidden: tuple[int, ...], kernel: int, patch: int):
        super().__init__()
        self.patch, channels = patch, patch * patch
        self.cells = nn.ModuleList(ConvLSTMCell(channels if k == 0 else hidden[k - 1], width, kernel)
                                   for k, width in enumerate(hidden))
        self.head = nn.Conv2d(hidden[-1], channels, 1, bias=False)

    def forward(self, video: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        p = self.patch
        frames = rearrange(video, "b t (h p) (w q) -> b t (p q) h w", p=p, q=p)  # (B, T, p^2, H/p, W/p)
        b, steps, _, height, width = frames.shape
        h = [frames.new_zeros(b, cell.conv_h.in_channels, height, width) for cell in self.cells]
        c = [torch.zeros_like(state) for state in h]
        x, outs = frames[:, 0], []
        for t in range(steps - 1):
            for k, cell in enumerate(self.cells):
                h[k], c[k] = cell(x if k == 0 else h[k - 1], h[k], c[k])
            outs.append(self.head(h[-1]))  # the prediction of frame t + 1
            x = torch.where(teacher[:, t, None, None, None], frames[:, t + 1], outs[-1])
        return rearrange(torch.stack(outs, 1), "b t (p q) h w -> b t (h p) (w q)", p=p, q=p)  # (B, T-1, H, W)


def prediction_teacher(batch: int, frames: int) -> torch.Tensor:
    """Test time: the given frames go in, the future is the model's own."""
    return (torch.arange(frames - 1) < CONTEXT - 1).expand(batch, -1)  # (B, T-1)


@torch.no_grad()
def predict(model: ConvLSTM, video: torch.Tensor) -> torch.Tensor:
    """10 -> 10: the future (B, 10, H, W) of clips (B, 20, H, W) from their first 10 frames, clamped to [0, 1]."""
    pred = model(video, prediction_teacher(len(video), video.shape[1]))  # (B, 19, H, W): frames 1..19
    return pred[:, CONTEXT - 1:].clamp(0, 1)


def sampled_teacher(batch: int, frames: int, eta: float, generator: torch.Generator) -> torch.Tensor:
    """Scheduled sampling (Bengio et al. 2015, as OpenSTL trains ConvLSTM): each future input is the true frame with
    probability eta, which falls from 1 to 0 during training."""
    return prediction_teacher(batch, frames) | (torch.rand(batch, frames - 1, generator=generator) < eta)


def step_flops(model: ConvLSTM, batch: int, frames: int = 20, size: int = 64) -> float:
    """FLOPs of one training step (forward and backward) on ``batch`` clips, counted as the DiT's are."""
    video = torch.rand(batch, frames, size, size)
    with flop_counter() as counter:
        (model(video, prediction_teacher(batch, frames)) - video[:, 1:]).pow(2).mean().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


# ----------------------------------------------------------------------------- training and scoring

@torch.no_grad()
def score(model: ConvLSTM, clips: int, evaluator, batch: int = 50) -> dict:
    """10 -> 10 on the first ``clips`` standard test clips, with the eval's metrics and its reading of the future."""
    data = standard_test_set()
    truth = torch.stack([data[j]["video"][0] for j in range(clips)])  # (N, 20, H, W)
    model.eval()
    predicted = torch.cat([predict(model, truth[i:i + batch]) for i in range(0, clips, batch)])  # (N, 10, H, W)
    model.train()
    true, labels = truth[:, CONTEXT:], [data[j]["labels"].tolist() for j in range(clips)]
    return {**prediction_metrics(predicted, true), "future_digits": future_digits(evaluator, predicted, true, labels)}


def figure(model: ConvLSTM, dit_path: str, clips: int, path: Path, samples: int = 4, seed: int = 5) -> Path:
    """The future of the first ``clips`` standard test clips: the truth, the ConvLSTM's, one sample of the DiT and
    the mean of ``samples`` of them (the eval's sampler: no caption, 25 steps, noise seed ``seed``)."""
    data = standard_test_set()
    truth = torch.stack([data[i]["video"] for i in range(clips)])  # (N, 1, 20, H, W)
    known = torch.arange(truth.shape[2]) < CONTEXT
    regression = predict(model, truth[:, 0])  # (N, 10, H, W)
    dit, train = load_dit(dit_path)
    drawn = torch.stack([generate(dit, VideoCodec(dit.config.vae), [None] * clips, objective_of(train), guidance=1.0,
                                  steps=25, seed=seed + k, context=truth, known=known)[:, 0, CONTEXT:].cpu()
                         for k in range(samples)])  # (K, N, 10, H, W)
    rows = {"real": truth[:, 0, CONTEXT:], "ConvLSTM": regression, "DiT sample": drawn[0],
            f"DiT mean of {samples}": drawn.mean(0)}
    fig = frame_strip([rows[name][i] for i in range(clips) for name in rows],
                      [name for _ in range(clips) for name in rows], size=0.8)
    for ax, t in zip(fig.axes, range(CONTEXT, 2 * CONTEXT)):
        ax.set_title(str(t), fontsize=7)
    fig.savefig(path, dpi=90)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="run folder (ckpt.pt, result.json); run again to resume")
    p.add_argument("--budget-tflop", type=float, default=60.0, help="training FLOPs, counted as the DiT's are")
    p.add_argument("--evals", type=float, nargs="*", default=[0.25, 0.5],
                   help="also score the model at these shares of the budget (the end is always scored)")
    p.add_argument("--hidden", type=int, nargs="+", default=[16, 16, 16],
                   help="channels of each ConvLSTM layer (16 beat 32 and 64 at 60 TFLOP)")
    p.add_argument("--kernel", type=int, default=5, help="convolution kernel size")
    p.add_argument("--patch", type=int, default=4, help="p x p pixels folded into channels")
    p.add_argument("--batch", type=int, default=4, help="clips a step (OpenSTL: 16; the DiT: 4)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's peak learning rate, cosine-decayed to 0")
    p.add_argument("--sampling-until", type=float, default=0.5,
                   help="share of the steps over which scheduled sampling's eta falls from 1 to 0")
    p.add_argument("--clips", type=int, default=100, help="standard test clips to score on")
    p.add_argument("--seed", type=int, default=0, help="seed of the training clips, the weights and the sampling")
    p.add_argument("--figure", help="also draw the future of the first test clips (truth, ConvLSTM, the DiT's sample "
                                    "and mean of 4) to this PNG, after training")
    p.add_argument("--figure-clips", type=int, default=2, help="test clips in the figure")
    p.add_argument("--dit", default="data/dit_predict.pt", help="the DiT in the figure")
    args = p.parse_args()
    if 64 % args.patch or args.budget_tflop <= 0 or min(args.hidden) < 1:
        p.error(f"expected a --patch that divides 64, a positive --budget-tflop and --hidden channels >= 1; got "
                f"--patch {args.patch}, --budget-tflop {args.budget_tflop}, --hidden {args.hidden}")

    torch.manual_seed(args.seed)
    model = ConvLSTM(tuple(args.hidden), args.kernel, args.patch)
    flops = step_flops(model, args.batch)
    steps = math.ceil(args.budget_tflop * 1e12 / flops)
    openstl = ConvLSTM(OPENSTL["hidden"], OPENSTL["kernel"], OPENSTL["patch"])
    openstl_clip = step_flops(openstl, 1)
    print(f"{flops / 1e9:.2f} GFLOP a step of {args.batch} clips (counted) -> {steps} steps for {args.budget_tflop} "
          f"TFLOP; OpenSTL's ConvLSTM: {openstl_clip / 1e9:.1f} GFLOP a clip, "
          f"{openstl_clip * OPENSTL['clips'] * OPENSTL['epochs'] / 1e15:.0f} PFLOP for its run")
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(  # 100 steps of warm-up, then cosine decay
        opt, lambda s: min(1.0, (s + 1) / 100) * 0.5 * (1 + math.cos(math.pi * s / steps)))
    out = Path(args.out).expanduser()
    ckpt, start, evals = out / "ckpt.pt", 0, {}
    generator = torch.Generator().manual_seed(args.seed)
    if ckpt.is_file():
        state = torch.load(ckpt, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        generator.set_state(state["generator"])
        start, evals = state["step"], json.loads(state["evals"])
    data = MovingMNIST("train", 2**31 - 1, seed=args.seed, digits=load_digits("train", "mnist5k"), num_digits=2)
    evaluator = load_evaluator()
    marks = {math.ceil(share * steps) for share in args.evals} | {steps}
    losses = []
    for step in tqdm(range(start, steps), initial=start, total=steps, desc="ConvLSTM", unit="step"):
        video = torch.stack([data[i]["video"][0] for i in range(step * args.batch, (step + 1) * args.batch)])
        eta = max(0.0, 1 - step / (args.sampling_until * steps))
        pred = model(video, sampled_teacher(args.batch, video.shape[1], eta, generator))
        loss = (pred - video[:, 1:]).pow(2).mean()  # MSE of every next frame, as OpenSTL trains it
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        done = step + 1
        if done in marks:
            evals[str(done)] = {"tflop": round(done * flops / 1e12, 1), "train_loss": float(np.mean(losses[-100:])),
                                **score(model, args.clips, evaluator)}
            print(json.dumps(evals[str(done)]))
        if done % 100 == 0 or done in marks:
            save_checkpoint({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                             "generator": generator.get_state(), "step": done, "evals": json.dumps(evals)}, ckpt)
    result = {"args": vars(args), "gflop_per_step": round(flops / 1e9, 3), "steps": steps,
              "parameters": sum(w.numel() for w in model.parameters()),
              "openstl_convlstm": {**OPENSTL, "gflop_per_clip": round(openstl_clip / 1e9, 2),
                                   "pflop_run": round(openstl_clip * OPENSTL["clips"] * OPENSTL["epochs"] / 1e15, 1)},
              "evals": evals}
    atomic_write(out / "result.json", lambda tmp: tmp.write_text(json.dumps(result, indent=1)))
    print(json.dumps(evals[str(steps)]))
    if args.figure:
        print(f"wrote {figure(model, args.dit, args.figure_clips, Path(args.figure))}")


if __name__ == "__main__":
    main()

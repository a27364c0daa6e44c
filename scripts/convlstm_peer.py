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
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from minisora.checkpoint import atomic_write, code_version, device_name, save_checkpoint, write_manifest
from minisora.config import (HelpFormatter, add_config_flags, check_finite, check_positive, check_probability,
                             config_from, option)
from minisora.convlstm import ConvLSTM, ConvLSTMConfig, draft_clips, draft_of, predict, prediction_teacher
from minisora.data import CONTEXT, MovingMNIST, load_digits, standard_test_set
from minisora.evaluate import future_digits, prediction_metrics
from minisora.evaluator import load_evaluator
from minisora.peers import flop_counter
from minisora.sample import VideoCodec, generate, load_dit, objective_of
from minisora.viz import frame_strip

OPENSTL = dict(hidden=(128, 128, 128, 128), kernel=5, patch=4, clips=10_000, epochs=200)  # its Moving MNIST config


# ----------------------------------------------------------------------------- training and scoring

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


@torch.no_grad()
def score(model: ConvLSTM, clips: int, evaluator, batch: int = 50) -> dict:
    """10 -> 10 on the first ``clips`` standard test clips, with the eval's metrics and its reading of the future."""
    data = standard_test_set()
    truth = torch.stack([data[j]["video"][0] for j in range(clips)])  # (N, 20, H, W)
    model.eval()
    predicted = torch.cat([predict(model, truth[i:i + batch]) for i in range(0, clips, batch)])  # (N, 10, H, W)
    model.train()
    true, labels = truth[:, CONTEXT:], [data[j]["labels"].tolist() for j in range(clips)]
    return {**prediction_metrics(predicted, true), "future_digits": future_digits(evaluator, predicted, true, labels),
            "mirrors": model.config.mirrors}


def figure(model: ConvLSTM, dit_path: str, clips: int, path: Path, samples: int = 4, seed: int = 5) -> Path:
    """The future of the first ``clips`` standard test clips: the truth, the ConvLSTM's, one sample of the DiT and
    the mean of ``samples`` of them (the eval's sampler: no caption, 25 steps, noise seed ``seed``; from its draft
    if it was trained with one)."""
    data = standard_test_set()
    truth = torch.stack([data[i]["video"] for i in range(clips)])  # (N, 1, 20, H, W)
    known = torch.arange(truth.shape[2]) < CONTEXT
    regression = predict(model, truth[:, 0])  # (N, 10, H, W)
    dit, train = load_dit(dit_path)
    draft, draft_noise = draft_of(train)  # a DiT trained with --draft starts from its draft
    drafted = dict(draft=draft_clips(draft, truth), draft_noise=draft_noise) if draft else {}
    drawn = torch.stack([generate(dit, VideoCodec(dit.config.vae), [None] * clips, objective_of(train), guidance=1.0,
                                  steps=25, seed=seed + k, context=truth, known=known, **drafted)[:, 0, CONTEXT:].cpu()
                         for k in range(samples)])  # (K, N, 10, H, W)
    name = "DiT + draft" if drafted else "DiT"
    rows = {"real": truth[:, 0, CONTEXT:], "ConvLSTM": regression, f"{name} sample": drawn[0],
            f"{name} mean of {samples}": drawn.mean(0)}
    fig = frame_strip([rows[name][i] for i in range(clips) for name in rows],
                      [name for _ in range(clips) for name in rows], size=0.8)
    for ax, t in zip(fig.axes, range(CONTEXT, 2 * CONTEXT)):
        ax.set_title(str(t), fontsize=7)
    fig.savefig(path, dpi=90)
    return path


@dataclass
class PeerConfig:
    """How the peer is trained and scored; the model's own settings are ``ConvLSTMConfig``'s flags."""
    out: str | None = option(None, "run folder (ckpt.pt, result.json); run again to resume", required=True)
    budget_tflop: float = option(60.0, "training FLOPs in TFLOP, counted as the DiT's are")
    evals: tuple[float, ...] = option((0.25, 0.5), "also score the model at these shares of the budget (the end is "
                                      "always scored)", nargs="*")
    batch: int = option(4, "clips a step (OpenSTL: 16; the DiT: 4)")
    lr: float = option(3e-3, "Adam's peak learning rate, cosine-decayed to 0 (1e-3 until session 33; 3e-3 scored 5 "
                       "lower at 60 and 294 TFLOP)")
    sampling_until: float = option(0.5, "share of the steps over which scheduled sampling's eta falls from 1 to 0")
    clips: int = option(100, "standard test clips to score on")
    seed: int = option(0, "seed of the training clips, the weights and the sampling")
    figure: str | None = option(None, "also draw the future of the first test clips (truth, ConvLSTM, the DiT's "
                                "sample and mean of 4) to this PNG, after training")
    figure_clips: int = option(2, "test clips in the figure")
    dit: str = option("data/dit_predict.pt", "the DiT in the figure")
    export: str | None = option(None, "after training, write the weights to this file (e.g. data/convlstm_predict.pt, "
                                "the draft of `train --draft`) with a manifest beside it (.json)")

    def __post_init__(self):
        if not self.out:
            raise ValueError(f"expected a run folder for out, got {self.out!r}")
        self.out = str(Path(self.out).expanduser())
        check_finite(self, "budget_tflop", above=0)
        check_positive(self, "batch", "clips", "figure_clips")
        check_finite(self, "sampling_until", above=0)
        check_probability(self, "sampling_until")
        if not all(0 < share <= 1 for share in self.evals):
            raise ValueError(f"expected --evals shares in (0, 1]; got {list(self.evals)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    add_config_flags(p, ConvLSTMConfig)
    add_config_flags(p, PeerConfig)
    args = p.parse_args()
    try:
        config, run = config_from(args, ConvLSTMConfig), config_from(args, PeerConfig)
        if 64 % config.patch:
            raise ValueError(f"expected a --patch that divides the 64-pixel frames; got {config.patch}")
    except ValueError as e:
        p.error(str(e))

    torch.manual_seed(run.seed)
    model = ConvLSTM(config)
    flops = step_flops(model, run.batch)
    steps = math.ceil(run.budget_tflop * 1e12 / flops)
    openstl = ConvLSTM(ConvLSTMConfig(OPENSTL["hidden"], OPENSTL["kernel"], OPENSTL["patch"]))
    openstl_clip = step_flops(openstl, 1)
    print(f"{flops / 1e9:.2f} GFLOP a step of {run.batch} clips (counted) -> {steps} steps for {run.budget_tflop} "
          f"TFLOP; OpenSTL's ConvLSTM: {openstl_clip / 1e9:.1f} GFLOP a clip, "
          f"{openstl_clip * OPENSTL['clips'] * OPENSTL['epochs'] / 1e15:.0f} PFLOP for its run")
    opt = torch.optim.Adam(model.parameters(), lr=run.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(  # 100 steps of warm-up, then cosine decay
        opt, lambda s: min(1.0, (s + 1) / 100) * 0.5 * (1 + math.cos(math.pi * s / steps)))
    out = Path(run.out)
    ckpt, start, evals, wall = out / "ckpt.pt", 0, {}, 0.0
    generator = torch.Generator().manual_seed(run.seed)
    if ckpt.is_file():
        state = torch.load(ckpt, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        generator.set_state(state["generator"])
        start, evals, wall = state["step"], json.loads(state["evals"]), state.get("wall_time_s", 0.0)
    data = MovingMNIST("train", 2**31 - 1, seed=run.seed, digits=load_digits("train", "mnist5k"), num_digits=2)
    evaluator = load_evaluator()
    marks = {math.ceil(share * steps) for share in run.evals} | {steps}
    losses, began = [], time.perf_counter() - wall
    for step in tqdm(range(start, steps), initial=start, total=steps, desc="ConvLSTM", unit="step"):
        video = torch.stack([data[i]["video"][0] for i in range(step * run.batch, (step + 1) * run.batch)])
        eta = max(0.0, 1 - step / (run.sampling_until * steps))
        pred = model(video, sampled_teacher(run.batch, video.shape[1], eta, generator))
        loss = (pred - video[:, 1:]).pow(2).mean()  # MSE of every next frame, as OpenSTL trains it
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        done = step + 1
        if done in marks:
            evals[str(done)] = {"tflop": round(done * flops / 1e12, 1), "train_loss": float(np.mean(losses[-100:])),
                                **score(model, run.clips, evaluator)}
            print(json.dumps(evals[str(done)]))
        if done % 100 == 0 or done in marks:
            save_checkpoint({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                             "generator": generator.get_state(), "step": done, "evals": json.dumps(evals),
                             "wall_time_s": time.perf_counter() - began}, ckpt)
    final = evals[str(steps)]
    if final.get("mirrors", 1) != config.mirrors:  # a finished run, exported with other mirrors: scored so
        final = {**final, **score(model, run.clips, evaluator)}
    result = {"args": vars(args), "gflop_per_step": round(flops / 1e9, 3), "steps": steps,
              "parameters": sum(w.numel() for w in model.parameters()),
              "openstl_convlstm": {**OPENSTL, "gflop_per_clip": round(openstl_clip / 1e9, 2),
                                   "pflop_run": round(openstl_clip * OPENSTL["clips"] * OPENSTL["epochs"] / 1e15, 1)},
              "evals": evals, "final": final, "wall_time_s": torch.load(ckpt, weights_only=True).get("wall_time_s")}  # None: a run from before it was kept
    atomic_write(out / "result.json", lambda tmp: tmp.write_text(json.dumps(result, indent=1)))
    print(json.dumps(final))
    if run.export:
        save_checkpoint({"config": asdict(config), "model": model.state_dict()}, run.export)
        write_manifest({"command": "python " + " ".join(sys.argv), "code_version": code_version(),
                        "device": device_name("cpu"), **result}, Path(run.export).with_suffix(".json"))
        print(f"wrote {run.export}")
    if run.figure:
        print(f"wrote {figure(model, run.dit, run.figure_clips, Path(run.figure))}")


if __name__ == "__main__":
    main()

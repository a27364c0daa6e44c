"""The ``python -m minisora`` command line: a table of commands, each a settings dataclass and a function.

Every flag is made from a field of the command's settings (``config.add_config_flags``), so a setting,
its default and its help are written once, where the code that uses it lives.

    python -m minisora data --help
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass
from typing import Callable

from .bench import BenchConfig, run_bench
from .capabilities import SampleConfig, sample_from_checkpoint, save_clips
from .config import HelpFormatter, add_config_flags, config_from
from .data import DataConfig, export
from .dit import PRESETS
from .evaluate import EvalConfig, evaluate, format_table, record_in_manifest, write_result
from .evaluator import EvaluatorConfig, train_evaluator
from .train import Launch, TrainConfig, train
from .train_aligner import AlignerConfig, train_aligner
from .train_denoiser import DenoiserConfig, train_and_evaluate
from .train_vae import VAETrainConfig, train_vae
from .viz import save_gif


@dataclass(frozen=True)
class Command:
    settings: tuple[type, ...]  # dataclasses whose fields become the flags
    run: Callable[..., None]  # run(*settings, progress=..., command=...): does the work, prints a summary
    help: str  # one line, in `python -m minisora --help`
    description: str  # the paragraph of `python -m minisora NAME --help`


def run_data(cfg: DataConfig, progress: bool, command: str) -> None:
    s = export(cfg.dataset(), cfg.out, cfg.name, preview=cfg.preview, progress=progress)
    print(f"wrote {s['num_clips']} clips ({cfg.preset}, {cfg.split} digits from {s['digits']}, seed {cfg.seed}) to "
          f"{s['out_dir']}/{cfg.name}.npy {s['layout']}, in {s['seconds']:.1f} s ({s['clips_per_second']:.0f} clips/s)")


def run_train_evaluator(cfg: EvaluatorConfig, progress: bool, command: str) -> None:
    _, s = train_evaluator(cfg, progress, command)
    print(f"evaluator: {s['test_accuracy']:.2%} on {s['test_digits']} test digits ({s['train_accuracy']:.2%} train), "
          f"{s['steps']} steps in {s['wall_time_s']:.0f} s; weights {cfg.out} ({s['weights_bytes'] / 1e6:.1f} MB)")


def run_train_vae(cfg: VAETrainConfig, progress: bool, command: str) -> None:
    _, s = train_vae(cfg, progress, command)
    print(f"{cfg.kind} VAE: PSNR {s['psnr']:.2f} dB, SSIM {s['ssim']:.3f} on {s['test_clips']} test clips, "
          f"compression {s['compression']:.0f}x, {s['steps']} steps in {s['wall_time_s']:.0f} s; weights {cfg.out}")


def run_train_denoiser(cfg: DenoiserConfig, progress: bool, command: str) -> None:
    s = train_and_evaluate(cfg, progress, command)
    sweep = ", ".join(f"{k}: {v['accuracy']:.1%}" for k, v in s["eval"]["guidance"].items())
    print(f"{cfg.objective} denoiser: loss {s['final_loss']}, {s['steps']} steps in {s['wall_time_s']:.0f} s; "
          f"evaluator accuracy by guidance scale {sweep}; weights {cfg.out}")


def run_train_aligner(cfg: AlignerConfig, progress: bool, command: str) -> None:
    _, s = train_aligner(cfg, progress, command)
    a = s["accuracy"]
    print(f"aligner: {a['digit_cells']:.1%} of digit cells and {a['all_cells']:.1%} of all cells labelled right on "
          f"{a['test_clips']} clips of test digits, {s['steps']} steps in {s['wall_time_s']:.0f} s; weights {cfg.out}")


def run_train(cfg: TrainConfig, launch: Launch, progress: bool, command: str) -> None:
    s = train(cfg, resume=launch.resume, progress=progress, command=command, export=launch.export)
    if "final_loss" in s:
        print(f"{cfg.preset}: {s['steps_done']}/{cfg.steps} steps in {s['wall_time_s']:.0f} s, loss {s['final_loss']}, "
              f"{s['clips_per_s']} clips/s; run folder {s['run']} (ckpt.pt, log.jsonl, loss.png, samples)")


def run_sample(cfg: SampleConfig, progress: bool, command: str) -> None:
    videos, used = sample_from_checkpoint(cfg, progress)
    videos = videos[:, 0].cpu()  # (N, T, H, W)
    path = save_clips(videos, cfg.out) if cfg.out.endswith(".npy") else save_gif(list(videos), cfg.out, ncols=len(used))
    for prompt in used:
        print(f"prompt: {prompt}")
    print(f"wrote {len(used)} clip(s) of {videos.shape[1]} frames at {videos.shape[2]}x{videos.shape[3]} to {path}")


def run_eval(cfg: EvalConfig, progress: bool, command: str) -> None:
    result = {**evaluate(cfg, progress), "command": command}
    print(format_table(result))
    print(f"wrote {write_result(result, cfg.out)}")
    if cfg.manifest:
        print(f"recorded in {record_in_manifest(result, cfg.ckpt)}")


def run_bench_command(cfg: BenchConfig, progress: bool, command: str) -> None:
    run_bench(cfg, progress)


PRESET_USES = "; ".join(f"{name}: {use}" for name, (_, use) in PRESETS.items())
COMMANDS = {
    "data": Command(
        (DataConfig,), run_data,
        "export a Moving MNIST clip set (default: the standard 10,000-clip test set)",
        "Generate a seeded Moving MNIST clip set and write it to OUT: NAME.npy, uint8 of shape (T, N, H, W) like the "
        "standard mnist_test_seq.npy; NAME_meta.npz with labels, positions, velocities and bounces; "
        "NAME_captions.json with short and descriptive captions; NAME_preview.gif. With no flags it writes the "
        "standard test set that evaluations use."),
    "train-evaluator": Command(
        (EvaluatorConfig,), run_train_evaluator,
        "train the ViT digit classifier that scores generated videos",
        "Train the evaluator ViT on the train digits of the shipped MNIST subset (with random shifts, rotations and "
        "zooms), report its accuracy on the held-out test digits, and save weights plus a JSON manifest (command, "
        "code version, device, steps, wall time, accuracy)."),
    "train-vae": Command(
        (VAETrainConfig,), run_train_vae,
        "train the frame or spacetime video VAE (the compression network)",
        "Train a convolutional VAE on standard Moving MNIST clips of train digits, measure the latent scale, "
        "evaluate PSNR/SSIM on clips of test digits, and save weights plus a JSON manifest (command, code version, "
        "device, steps, wall time, metrics). Checkpoints are written atomically during training."),
    "train-denoiser": Command(
        (DenoiserConfig,), run_train_denoiser,
        "train the class-conditional digit denoiser of notebook 04 (DDPM or rectified flow)",
        "Train a small conditional U-Net on the train digits (28x28, in [-1, 1]) with the DDPM (epsilon target, "
        "linear schedule) or rectified-flow objective, with label dropout for classifier-free guidance and an EMA "
        "of the weights; then score samples with the ViT evaluator (accuracy and diversity against guidance scale, "
        "fast vs full sampler, sampling time) and save weights plus a JSON manifest."),
    "train-aligner": Command(
        (AlignerConfig,), run_train_aligner,
        "train the frozen frame encoder that REPA aligns the DiT with (train --repa)",
        "Train a small CNN to label each 8x8-pixel cell of Moving MNIST frames of train digits with the digit "
        "covering it (or background), report its accuracy on clips of test digits, and save weights plus a JSON "
        "manifest. It is never the evaluator: the evaluator only judges samples."),
    "train": Command(
        (TrainConfig, Launch), run_train,
        "train the text-to-video DiT (its defaults are the recipe that make train runs)",
        "Train a spacetime Diffusion Transformer on Moving MNIST clips of train digits, with captions, in the latent "
        "space of the shipped VAE. Writes OUT/ckpt.pt (atomically, every --ckpt-every steps), OUT/log.jsonl, "
        "OUT/loss.png and sample GIFs. --resume continues a run exactly. Launch with torchrun --nproc_per_node N "
        f"for data-parallel training on N GPUs (or CPU processes with gloo). Presets: {PRESET_USES}."),
    "sample": Command(
        (SampleConfig,), run_sample,
        "text-to-video, image-to-video, extension, loops, connecting clips, editing, long videos",
        "Generate Moving MNIST clips from text prompts with classifier-free guidance and write them as one GIF "
        "(prompts side by side) or a .npy. Prompts use the caption words: '3', '3 and 7', or descriptive ones like "
        "'a 3 starts at the top left and moves down and right'. The same model also animates an image (--image), "
        "extends a clip either way (--extend), loops one (--loop), connects two (--connect), edits one by prompt "
        "(--edit, SDEdit) and makes long videos window by window (--window): each is frames given by masks."),
    "eval": Command(
        (EvalConfig,), run_eval,
        "evaluate a text-to-video DiT: digits, physics, 10 -> 10 prediction, Frechet distance",
        "Generate clips for one-digit prompts ('0'..'9') and two-digit prompts ('3 and 7'), read their digits with "
        "the shipped evaluator, track the digits (physics probe), predict the last 10 frames of standard test clips "
        "from their first 10, and compare with real clips of test digits measured the same way. Prints one table "
        "and writes it all as JSON."),
    "bench": Command(
        (BenchConfig,), run_bench_command,
        "benchmarks: packing (token utilisation, step time) and DiT training speed per preset",
        "packing: measure NaViT sequence packing on a realistic mix of sizes: the share of real tokens in a batch "
        "packed into rows versus padded to the longest sequence, and the time of a training step (forward, "
        "backward, AdamW) of a small NaViT for each layout and attention backend. train: the speed of a DiT "
        "training step for each preset (steps/s, clips/s, TFLOP/s)."),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m minisora", description="minisora: build a Sora-style video generator on Moving MNIST.")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        p = subparsers.add_parser(name, help=command.help, description=command.description,
                                  formatter_class=HelpFormatter)
        for settings in command.settings:
            add_config_flags(p, settings)
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        p.set_defaults(command_name=name)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    command = COMMANDS[args.command_name]
    try:  # settings are checked as they are made: one line for bad input, not a traceback
        settings = [config_from(args, s) for s in command.settings]
        command.run(*settings, progress=not args.quiet, command=shlex.join(["python", "-m", "minisora", *argv]))
    except (ValueError, FileNotFoundError) as e:
        parser.exit(2, f"error: {e}\n")


if __name__ == "__main__":
    main()

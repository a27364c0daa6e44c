"""The ``python -m minisora`` command line: one sub-command per job.

    python -m minisora data --help
"""

from __future__ import annotations

import argparse
import shlex
import sys

from .config import add_config_flags, config_from
from .data import TEST_SET
from .motion import PRESETS


def add_data_command(subparsers) -> None:
    p = subparsers.add_parser(
        "data", help="export a Moving MNIST clip set (default: the standard 10,000-clip test set)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Generate a seeded Moving MNIST clip set and write it to OUT: NAME.npy, uint8 of shape "
                    "(T, N, H, W) like the standard mnist_test_seq.npy; NAME_meta.npz with labels, positions, "
                    "velocities and bounces; NAME_captions.json with short and descriptive captions; "
                    "NAME_preview.gif. With no flags it writes the standard test set that evaluations use.")
    p.add_argument("--preset", choices=sorted(PRESETS), default=TEST_SET["config"],
                   help="dynamics and sizes: 'standard' (Srivastava/OpenSTL: 28px digits, 3.6 px/frame, max) "
                        "or 'stochastic' (SVG: 32px digits, random integer velocities redrawn at bounces, sum)")
    p.add_argument("--split", choices=["train", "test"], default=TEST_SET["split"],
                   help="which digits to draw from; test digits are never used for training")
    p.add_argument("--num-clips", type=int, default=TEST_SET["num_clips"], help="number of clips N")
    p.add_argument("--seed", type=int, default=TEST_SET["seed"], help="clip i of a seed is always the same clip")
    p.add_argument("--frames", type=int, default=None, help="frames per clip T (default: the preset's, 20)")
    p.add_argument("--height", type=int, default=None, help="canvas height H in px (default: the preset's, 64)")
    p.add_argument("--width", type=int, default=None, help="canvas width W in px (default: the preset's, 64)")
    p.add_argument("--num-digits", type=int, default=None, help="digits per clip (default: the preset's, 2)")
    p.add_argument("--digit-size", type=int, default=None,
                   help="digit size in px; MNIST's 28x28 digits are resized (default: the preset's)")
    p.add_argument("--digits", choices=["auto", "mnist5k", "mnist"], default="auto",
                   help="digit source: the shipped 5,000-digit subset, torchvision's full MNIST, or 'auto' "
                        "(full MNIST if it is on disk, else the subset)")
    p.add_argument("--download", action="store_true",
                   help="allow downloading full MNIST with torchvision (nothing downloads without this flag)")
    p.add_argument("--out", default="outputs/moving_mnist", help="output folder")
    p.add_argument("--name", default="mnist_test_seq", help="file name stem")
    p.add_argument("--preview", type=int, default=8, help="clips in the preview GIF (0: no GIF)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run_data)


def run_data(args) -> None:
    from .data import MovingMNIST, export
    from .digits import load_digits

    overrides = {key: value for key, value in [
        ("num_frames", args.frames), ("height", args.height), ("width", args.width),
        ("num_digits", args.num_digits), ("digit_size", args.digit_size)] if value is not None}
    digits = load_digits(args.split, args.digits, download=args.download)
    dataset = MovingMNIST(args.split, args.num_clips, args.seed, args.preset, digits, **overrides)
    summary = export(dataset, args.out, args.name, preview=args.preview, progress=not args.quiet)
    print(f"wrote {summary['num_clips']} clips ({args.preset}, {args.split} digits from "
          f"{summary['digits']}, seed {args.seed}) to {summary['out_dir']}/{args.name}.npy "
          f"{summary['layout']}, in {summary['seconds']:.1f} s ({summary['clips_per_second']:.0f} clips/s)")


def add_training_flags(p: argparse.ArgumentParser, lr: float, seed_help: str) -> None:
    """The flags every training command has."""
    p.add_argument("--lr", type=float, default=lr, help="peak AdamW learning rate (warm-up, then cosine decay)")
    p.add_argument("--seed", type=int, default=0, help=seed_help)
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_train_evaluator_command(subparsers) -> None:
    from .evaluator import EVALUATOR_PATH

    p = subparsers.add_parser(
        "train-evaluator", help="train the ViT digit classifier that scores generated videos",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Train the evaluator ViT on the train digits of the shipped MNIST subset (with random "
                    "shifts, rotations and zooms), report its accuracy on the held-out test digits, and save "
                    "weights plus a JSON manifest (command, code version, device, steps, wall time, accuracy).")
    p.add_argument("--epochs", type=int, default=120, help="passes over the training digits")
    p.add_argument("--batch-size", type=int, default=128, help="digits per optimisation step")
    p.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay")
    p.add_argument("--train-digits", type=int, default=None,
                   help="use a random N of the training digits (quick experiments; default: all 4,000)")
    p.add_argument("--out", default=str(EVALUATOR_PATH),
                   help="where to write the weights; the manifest goes next to it as .json")
    add_training_flags(p, lr=1e-3, seed_help="seed for initialisation, shuffling and augmentation")
    p.set_defaults(run=run_train_evaluator)


def run_train_evaluator(args) -> None:
    from .evaluator import train_evaluator

    _, summary = train_evaluator(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                 weight_decay=args.weight_decay, train_digits=args.train_digits, seed=args.seed,
                                 device=args.device, out=args.out, progress=not args.quiet, command=args.command)
    print(f"evaluator: {summary['test_accuracy']:.2%} on {summary['test_digits']} test digits "
          f"({summary['train_accuracy']:.2%} train), {summary['steps']} steps in {summary['wall_time_s']:.0f} s; "
          f"weights {args.out} ({summary['weights_bytes'] / 1e6:.1f} MB)")


def add_bench_command(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="benchmarks: packing (token utilisation, step time) and DiT training speed per preset",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="packing: measure NaViT sequence packing on a realistic mix of sizes: the share of real tokens "
                    "in a batch packed into rows versus padded to the longest sequence, and the time of a training "
                    "step (forward, backward, AdamW) of a small NaViT for each layout and attention backend. "
                    "train: the speed of a DiT training step for each preset (steps/s, clips/s, TFLOP/s).")
    p.add_argument("what", choices=["packing", "train"], help="which benchmark to run")
    p.add_argument("--kind", choices=["images", "videos"], default="images",
                   help="images: digits at 16-64 px per side (4x4 patches); videos: clips of 4-20 frames at "
                        "32-64 px per side ((2, 8, 8) tubelets)")
    p.add_argument("--batch", type=int, default=128, help="sequences per batch (packing) or clips per step (train)")
    p.add_argument("--budget", type=int, default=None,
                   help="tokens per packed row (default: the longest possible sequence: 256 images, 640 videos)")
    p.add_argument("--steps", type=int, default=5, help="timed training steps per configuration (after a warm-up)")
    p.add_argument("--presets", nargs="+", default=["micro", "tiny", "small"],
                   help="train: the DiT presets to time")
    p.add_argument("--attention", choices=["full", "factorized"], default="full", help="train: the attention mode")
    p.add_argument("--batches", type=int, default=50, help="random batches averaged for the utilisation")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--backends", nargs="+", choices=["dense", "loop", "flex"], default=None,
                   help="attention backends to time (default: loop and dense on CPU, flex and dense on GPU)")
    p.add_argument("--out", default=None, help="also write the results as JSON to this file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run_bench)


def run_bench(args) -> None:
    from .bench import run_bench as run

    run(args)


def add_train_vae_command(subparsers) -> None:
    from .vae import KL_WEIGHT

    p = subparsers.add_parser(
        "train-vae", help="train the frame or spacetime video VAE (the compression network)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Train a convolutional VAE on standard Moving MNIST clips of train digits, measure the latent "
                    "scale, evaluate PSNR/SSIM on clips of test digits, and save weights plus a JSON manifest "
                    "(command, code version, device, steps, wall time, metrics). Checkpoints are written "
                    "atomically during training.")
    p.add_argument("--kind", choices=["frame", "spacetime"], default="frame",
                   help="frame: 2D convolutions per frame (64x64 -> 16x16x4); spacetime: 3D convolutions that "
                        "also halve time (20 frames -> 10)")
    p.add_argument("--steps", type=int, default=6000, help="optimisation steps")
    p.add_argument("--batch-size", type=int, default=4, help="clips (of 20 frames) per step")
    p.add_argument("--kl-weight", type=float, default=KL_WEIGHT, help="beta, the weight of the KL term")
    p.add_argument("--out", default=None, help="weights path (default: data/vae_KIND.pt); manifest next to it")
    add_training_flags(p, lr=2e-3, seed_help="seed for initialisation, clips and sampling")
    p.set_defaults(run=run_train_vae)


def run_train_vae(args) -> None:
    from .train_vae import train_vae
    from .vae import VAE_PATHS

    out = args.out or VAE_PATHS[args.kind]
    _, s = train_vae(args.kind, args.steps, args.batch_size, args.lr, args.kl_weight, args.seed, args.device,
                     out, progress=not args.quiet, command=args.command)
    print(f"{args.kind} VAE: PSNR {s['psnr']:.2f} dB, SSIM {s['ssim']:.3f} on {s['test_clips']} test clips, "
          f"compression {s['compression']:.0f}x, {s['steps']} steps in {s['wall_time_s']:.0f} s; weights {out}")


def add_train_denoiser_command(subparsers) -> None:
    p = subparsers.add_parser(
        "train-denoiser", help="train the class-conditional digit denoiser of notebook 04 (DDPM or rectified flow)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Train a small conditional U-Net on the train digits (28x28, in [-1, 1]) with the DDPM "
                    "(epsilon target, linear schedule) or rectified-flow objective, with label dropout for "
                    "classifier-free guidance and an EMA of the weights; then score samples with the ViT "
                    "evaluator (accuracy and diversity against guidance scale, fast vs full sampler, sampling "
                    "time) and save weights plus a JSON manifest.")
    p.add_argument("--objective", choices=["ddpm", "flow"], default="ddpm",
                   help="ddpm: noise prediction on a 1000-step linear schedule; flow: velocity on a straight path")
    p.add_argument("--steps", type=int, default=4000, help="optimisation steps")
    p.add_argument("--batch-size", type=int, default=128, help="digits per step")
    p.add_argument("--p-uncond", type=float, default=0.1,
                   help="probability of replacing a label by the null class (what guidance needs)")
    p.add_argument("--ema-decay", type=float, default=0.999, help="decay of the weights' moving average")
    p.add_argument("--eval-per-class", type=int, default=30, help="samples per digit class in the guidance sweep")
    p.add_argument("--out", default=None, help="weights path (default: data/denoiser_OBJECTIVE.pt); manifest beside it")
    add_training_flags(p, lr=2e-3, seed_help="seed for initialisation, batches, noise and label dropout")
    p.set_defaults(run=run_train_denoiser)


def run_train_denoiser(args) -> None:
    from .train_denoiser import DENOISER_PATHS, train_and_evaluate

    out = args.out or DENOISER_PATHS[args.objective]
    s = train_and_evaluate(args.objective, out, args.eval_per_class, steps=args.steps, batch_size=args.batch_size,
                           lr=args.lr, p_uncond=args.p_uncond, ema_decay=args.ema_decay, seed=args.seed,
                           device=args.device, progress=not args.quiet, command=args.command)
    sweep = ", ".join(f"{k}: {v['accuracy']:.1%}" for k, v in s["eval"]["guidance"].items())
    print(f"{args.objective} denoiser: loss {s['final_loss']}, {s['steps']} steps in {s['wall_time_s']:.0f} s; "
          f"evaluator accuracy by guidance scale {sweep}; weights {out}")


def add_train_aligner_command(subparsers) -> None:
    from .train_aligner import AlignerConfig

    p = subparsers.add_parser(
        "train-aligner", help="train the frozen frame encoder that REPA aligns the DiT with (train --repa)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Train a small CNN to label each 8x8-pixel cell of Moving MNIST frames of train digits with "
                    "the digit covering it (or background), report its accuracy on clips of test digits, and save "
                    "weights plus a JSON manifest. It is never the evaluator: the evaluator only judges samples.")
    add_config_flags(p, AlignerConfig)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run_train_aligner)


def run_train_aligner(args) -> None:
    from .train_aligner import AlignerConfig, train_aligner

    cfg = config_from(args, AlignerConfig)
    _, s = train_aligner(cfg, progress=not args.quiet, command=args.command)
    a = s["accuracy"]
    print(f"aligner: {a['digit_cells']:.1%} of digit cells and {a['all_cells']:.1%} of all cells labelled right on "
          f"{a['test_clips']} clips of test digits, {s['steps']} steps in {s['wall_time_s']:.0f} s; weights {cfg.out}")


def add_train_command(subparsers) -> None:
    from .dit import PRESETS
    from .train import TrainConfig

    presets = "; ".join(f"{name}: {use}" for name, (_, use) in PRESETS.items())
    p = subparsers.add_parser(
        "train", help="train the text-to-video DiT (its defaults are the recipe that make train runs)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Train a spacetime Diffusion Transformer on Moving MNIST clips of train digits, with captions, "
                    "in the latent space of the shipped VAE. Writes OUT/ckpt.pt (atomically, every --ckpt-every "
                    "steps), OUT/log.jsonl, OUT/loss.png and sample GIFs. --resume continues a run exactly. "
                    "Launch with torchrun --nproc_per_node N for data-parallel training on N GPUs (or CPU "
                    f"processes with gloo). Presets: {presets}.")
    add_config_flags(p, TrainConfig)
    p.add_argument("--resume", action="store_true", help="continue the run in OUT from its checkpoint, if any")
    p.add_argument("--export", default=None,
                   help="when the run completes (or stops at --stop-at), write its EMA weights here, with a JSON "
                        "manifest beside them")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run_train)


def run_train(args) -> None:
    from .train import TrainConfig, train

    cfg = config_from(args, TrainConfig)
    s = train(cfg, resume=args.resume, progress=not args.quiet, command=args.command, export=args.export)
    if "final_loss" in s:
        print(f"{cfg.preset}: {s['steps_done']}/{cfg.steps} steps in {s['wall_time_s']:.0f} s, loss {s['final_loss']}, "
              f"{s['clips_per_s']} clips/s; run folder {s['run']} (ckpt.pt, log.jsonl, loss.png, samples)")


def add_sample_command(subparsers) -> None:
    from .sample import DIT_PATH

    p = subparsers.add_parser(
        "sample", help="text-to-video: generate clips for prompts with a trained DiT",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Generate Moving MNIST clips from text prompts with classifier-free guidance and write them "
                    "as one GIF (prompts side by side). Prompts use the caption words: '3', '3 and 7', or "
                    "descriptive ones like 'a 3 starts at the top left and moves down and right'.")
    p.add_argument("--prompt", nargs="+", default=["3"], help="one or more prompts")
    p.add_argument("--ckpt", default=str(DIT_PATH), help="exported weights or a run's ckpt.pt (its EMA weights)")
    p.add_argument("--out", default="outputs/sample.gif", help="GIF to write")
    p.add_argument("--guidance", type=float, default=4.0, help="classifier-free guidance scale (1: none)")
    p.add_argument("--sampler", choices=["euler", "ddim", "ddpm"], default=None,
                   help="default: euler for rectified-flow models, ddim for DDPM models")
    p.add_argument("--steps", type=int, default=50, help="sampler steps (the ddpm sampler always takes 1000)")
    p.add_argument("--frames", type=int, default=None, help="frames per clip (default: the training length, 20)")
    p.add_argument("--height", type=int, default=None, help="height in px (default: the training size, 64)")
    p.add_argument("--width", type=int, default=None, help="width in px (default: the training size, 64)")
    p.add_argument("--expand", action="store_true",
                   help="prompt expansion: turn short prompts ('3 and 7') into descriptive captions first")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial noise")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run_sample)


def run_sample(args) -> None:
    from .sample import sample_from_checkpoint
    from .viz import save_gif

    steps = None if args.sampler == "ddpm" else args.steps
    videos, used = sample_from_checkpoint(args.ckpt, args.prompt, args.expand, args.device, guidance=args.guidance,
                                          steps=steps, sampler=args.sampler, frames=args.frames, height=args.height,
                                          width=args.width, seed=args.seed, progress=not args.quiet)
    path = save_gif(list(videos[:, 0].cpu()), args.out, ncols=len(used))
    for prompt in used:
        print(f"prompt: {prompt}")
    print(f"wrote {len(used)} clip(s) of {videos.shape[2]} frames at {videos.shape[3]}x{videos.shape[4]} to {path}")


def add_eval_command(subparsers) -> None:
    from .sample import DIT_PATH

    p = subparsers.add_parser(
        "eval", help="evaluate a text-to-video DiT: digits, physics, 10 -> 10 prediction, Frechet distance",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Generate clips for one-digit prompts ('0'..'9') and two-digit prompts ('3 and 7'), read their "
                    "digits with the shipped evaluator, track the digits (physics probe), predict the last 10 frames "
                    "of standard test clips from their first 10, and compare with real clips of test digits measured "
                    "the same way. Prints one table and writes it all as JSON.")
    p.add_argument("--ckpt", default=str(DIT_PATH), help="exported weights or a run's ckpt.pt (its EMA weights)")
    p.add_argument("--clips", type=int, default=100, help="generated clips per prompt kind (one digit, two digits)")
    p.add_argument("--prediction-clips", type=int, default=1000,
                   help="test clips for 10 -> 10 prediction (the standard set has 10000; 0: skip)")
    p.add_argument("--guidance", type=float, default=4.0, help="classifier-free guidance scale for text-to-video")
    p.add_argument("--steps", type=int, default=50, help="sampler steps for text-to-video")
    p.add_argument("--prediction-steps", type=int, default=25, help="sampler steps for prediction")
    p.add_argument("--shift", type=float, default=None,
                   help="rectified flow: sample with this time shift (default: the one the model trained with)")
    p.add_argument("--batch", type=int, default=50, help="clips generated at once")
    p.add_argument("--seed", type=int, default=0, help="seed of prompts, noise and the real reference clips")
    p.add_argument("--out", default="outputs/eval.json", help="JSON file for the results")
    p.add_argument("--manifest", action="store_true",
                   help="also record the results under 'eval' in the weights' manifest (CKPT with .json)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run_eval)


def run_eval(args) -> None:
    from .evaluate import evaluate, format_table, record_in_manifest, write_result

    result = evaluate(args.ckpt, clips=args.clips, prediction_clips=args.prediction_clips, guidance=args.guidance,
                      steps=args.steps, prediction_steps=args.prediction_steps, batch=args.batch, seed=args.seed,
                      device=args.device, progress=not args.quiet, shift=args.shift)
    result["command"] = args.command
    print(format_table(result))
    print(f"wrote {write_result(result, args.out)}")
    if args.manifest:
        print(f"recorded in {record_in_manifest(result, args.ckpt)}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m minisora", description="minisora: build a Sora-style video generator on Moving MNIST.")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    add_data_command(subparsers)
    add_train_evaluator_command(subparsers)
    add_train_vae_command(subparsers)
    add_train_denoiser_command(subparsers)
    add_train_aligner_command(subparsers)
    add_train_command(subparsers)
    add_sample_command(subparsers)
    add_eval_command(subparsers)
    add_bench_command(subparsers)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    args.command = shlex.join(["python", "-m", "minisora", *argv])
    try:
        args.run(args)
    except (ValueError, FileNotFoundError) as e:  # bad input: a clear message, not a traceback
        parser.exit(2, f"error: {e}\n")


if __name__ == "__main__":
    main()

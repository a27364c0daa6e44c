"""Is the latent easy to draw? The frame VAEs' spectra, and the ink of what models draw in them.

    python scripts/diffusability.py --clips 20 --seed 40 --ckpt RUN/ckpt.pt OTHER/ckpt.pt --out docs/diffusability.json

For each shipped frame VAE (``frame``, ``frame-se``, ...), on real test clips: the share of the latent's spectral
energy in high frequencies (``vae.high_frequency_share``; the clips pooled to the latent's size have 0.24), how far
the latent is from moving with the clip (``vae.shift_error`` at 2 px, half a latent cell), and
the ink (mean pixel) of what the decoder makes of a *blurred* latent (each latent cell averaged with its 8
neighbours), the kind of latent an uncertain model predicts: a decoder that needs the latent's fine detail to draw
strokes returns a faint digit. For each ``--ckpt`` (a DiT, in its own latent space): the ink per frame of its
one-digit text-to-video and image-to-video clips against real clips, with the evaluator's identity.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from minisora.capabilities import image_to_video
from minisora.evaluator import clip_scores, load_evaluator, prompts_for, real_clips
from minisora.sample import VideoCodec, generate, load_dit, objective_of
from minisora.vae import VAE_PATHS, high_frequency_share, load_vae, pool, shift_error

QUARTERS = ((0, 5), (5, 10), (10, 15), (15, 20))  # frame ranges the ink is averaged over


def blurred(z: torch.Tensor) -> torch.Tensor:
    """Each latent cell averaged with its 8 neighbours (edges padded by replication): (B, C, T, h, w)."""
    return F.avg_pool3d(F.pad(z, (1, 1, 1, 1, 0, 0), mode="replicate"), (1, 3, 3), stride=1)


@torch.no_grad()
def vae_row(name: str, x: torch.Tensor) -> dict:
    vae = load_vae(name)
    z = vae.encode(x).mean
    return {"latent_high_frequency_share": round(high_frequency_share(z), 3),
            "clips_pooled_to_latent_size_share": round(high_frequency_share(pool(x, vae.config.spatial_factor)), 3),
            "latent_shift_error_2px": round(shift_error(vae, x), 3),
            "psnr": json.loads(VAE_PATHS[name].with_suffix(".json").read_text())["psnr"],
            "ink_real": round(float(x.mean()), 4), "ink_decoded_blurred_latent": round(float(vae.decode(blurred(z)).mean()), 4)}


@torch.no_grad()
def model_row(ckpt: str, clips: int, seed: int) -> dict:
    model, saved = load_dit(ckpt)
    codec, objective, evaluator = VideoCodec(model.config.vae), objective_of(saved), load_evaluator()
    prompts, labels = prompts_for(clips, 1, seed)
    t2v = torch.cat([generate(model, codec, prompts[i:i + 10], objective, guidance=4.0, steps=25, seed=seed + i)[:, 0]
                     for i in range(0, clips, 10)])
    real, real_labels = real_clips(clips, 1, seed)
    given = [str(digits[0]) for digits in real_labels]
    i2v = torch.cat([image_to_video(model, codec, real[i:i + 10, 0], given[i:i + 10], real.shape[1], guidance=4.0,
                                    steps=25, seed=seed + i)[:, 0] for i in range(0, clips, 10)])
    row = {"vae": model.config.vae}
    for kind, videos, wanted in (("text_to_video", t2v, labels), ("image_to_video", i2v, real_labels),
                                 ("real", real, real_labels)):
        scores = clip_scores(evaluator, videos, wanted)[0]
        ink = videos.mean(dim=(-2, -1)).mean(0)  # (T,)
        row[kind] = {"ink_per_quarter": [round(float(ink[a:b].mean()), 4) for a, b in QUARTERS],
                     **{k: round(scores[k], 3) for k in ("alignment", "identity", "median_speed_error_px")}}
    return row


ROWS = [  # (label, path into an eval result, format)
    ("image-to-video identity", ("capabilities", "image_to_video", "generated", "identity"), "pct"),
    ("image-to-video read as the given digit", ("capabilities", "image_to_video", "generated", "alignment"), "pct"),
    ("image-to-video speed error, px/frame", ("capabilities", "image_to_video", "generated", "median_speed_error_px"),
     "px"),
    ("extension identity, forward / backward", [("capabilities", "extension", d, "generated", "identity")
                                                for d in ("forward", "backward")], "pct"),
    ("seam speed error px, forward / backward", [("capabilities", "extension", d, "generated", "seam_speed_error_px")
                                                 for d in ("forward", "backward")], "px"),
    ("connect: A's digit, then B's", ("capabilities", "connect", "a_then_b"), "pct"),
    ("text-to-video: one digit right", ("one_digit", "generated", "alignment"), "pct"),
    ("text-to-video identity", ("one_digit", "generated", "identity"), "pct"),
    ("text-to-video speed error, px/frame", ("one_digit", "generated", "median_speed_error_px"), "px"),
    ("text-to-video direction persistence", ("one_digit", "generated", "direction_persistence"), "num"),
    ("two digits both right", ("two_digits", "generated", "alignment"), "pct"),
    ("Frechet distance to real clips", ("frechet", "generated_vs_real"), "num"),
    ("10 -> 10 MSE", ("prediction", "model", "mse"), "mse"),
]
FORMATS = {"pct": lambda v: f"{100 * v:.0f}%", "px": lambda v: f"{v:.2f}", "num": lambda v: f"{v:.2f}",
           "mse": lambda v: f"{v:.1f}"}


def value(result: dict, path: tuple) -> float:
    for key in path:
        result = result[key]
    return result


def cell(result: dict, paths, fmt: str) -> str:
    """One table cell: the value(s) at ``paths`` in an eval result, formatted and joined by " / "."""
    return " / ".join(FORMATS[fmt](value(result, p)) for p in (paths if isinstance(paths, list) else [paths]))


def table(models: dict) -> str:
    """A markdown table of a probe record's models (docs/diffusability_probe.json): each row, each model, at the
    seeds of its evals (``eval_seed5``, ``eval_seed6``; "-" where a seed was not measured)."""
    head = " | ".join(f"{name}, seed {s}" for s in (5, 6) for name in models)
    lines = [f"| measure | {head} |", "|---|" + "---|" * 2 * len(models)]
    for label, paths, fmt in ROWS:
        values = [cell(m[f"eval_seed{s}"], paths, fmt) if f"eval_seed{s}" in m else "-"
                  for s in (5, 6) for m in models.values()]
        lines.append(f"| {label} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=20, help="real test clips for the VAEs; clips per kind per model")
    p.add_argument("--seed", type=int, default=40, help="seed of the prompts, real clips and noise")
    p.add_argument("--ckpt", nargs="*", default=[], help="DiT checkpoints whose clips' ink to measure")
    p.add_argument("--out", default=None, help="write the results here as JSON")
    p.add_argument("--table", default=None, help="only print the markdown table of this probe record "
                                                 "(docs/diffusability_probe.json)")
    p.add_argument("--section", default="models",
                   choices=("models", "packed", "longer", "longest", "plateau", "equivariance", "encoder", "stutter",
                            "patch"),
                   help="with --table: the 64x64 fine-tunes (models), the packed models (packed), ft-se trained "
                        "60 TFLOP longer, with and without --p-known-uncond (longer), or ft-se-2 (session 17's "
                        "dit_se64) trained 60, 120 and 180 TFLOP longer, at batch 4 and 8 (longest), or four "
                        "ways to spend the next 60 TFLOP from session 18's dit_se64: as before, a lower learning "
                        "rate, hybrid attention, twice the depth (plateau), or on the shift-equivariant latent "
                        "frame-eq against frame-se (equivariance), or on frame-eqe, whose encoder moves its latent "
                        "too, against frame-eq (encoder), or a second 60 TFLOP on frame-eqe as before, without "
                        "stills and with the frame-difference loss (stutter), or a third 60 TFLOP from "
                        "dit_eqe64_2 at the temporal patch of 2 against re-patched to 1 (patch)")
    args = p.parse_args()
    if args.table:
        record = json.loads(Path(args.table).read_text())
        print(table(record["models"] if args.section == "models" else record[args.section]["models"]))
        return
    x = real_clips(args.clips, 1, args.seed)[0][:, None]  # (N, 1, T, H, W)
    result = {"settings": vars(args), "vaes": {name: vae_row(name, x) for name in VAE_PATHS if name.startswith("frame")},
              "models": {ckpt: model_row(ckpt, args.clips, args.seed) for ckpt in args.ckpt}}
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Where does identity go? Each frame of animated images, with the digit the evaluator reads in it.

    python scripts/identity_frames.py --ckpt data/dit_eqe64_2.pt --clips 10 --seed 11 --out docs/identity_frames.png

Animates frame 0 of real one-digit test clips (text guidance 8, frame guidance 2, 25 steps: the settings of issue
17's figures), prints each clip's readings frame by frame beside the real clip's, and draws the frames with each
reading on top, red where it is not the given digit. Identity (eval) is the share of frames read as the clip's
most common digit; this shows what the other frames look like.
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from minisora.capabilities import image_to_video  # noqa: E402
from minisora.evaluator import load_evaluator, read_clips, real_clips  # noqa: E402
from minisora.sample import VideoCodec, load_dit, objective_of  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default="data/dit_eqe64_2.pt", help="the DiT (exported weights or a run's ckpt.pt)")
    p.add_argument("--clips", type=int, default=10, help="real one-digit test clips to animate")
    p.add_argument("--seed", type=int, default=11, help="seed of the real clips and the sampler's noise")
    p.add_argument("--out", default=None, help="write the picture here (PNG)")
    args = p.parse_args()
    model, saved = load_dit(args.ckpt)
    codec, objective, evaluator = VideoCodec(model.config.vae), objective_of(saved), load_evaluator()
    real, labels = real_clips(args.clips, 1, seed=args.seed)
    with torch.no_grad():
        out = image_to_video(model, codec, real[:, 0], [str(d[0]) for d in labels], real.shape[1],
                             objective=objective, steps=25, seed=args.seed, guidance=8.0, frame_guidance=2.0)[:, 0]
    shown = out[:, model.config.tubelet_frames - 1:]  # the image once, then what the model made (N, T', H, W)
    reads, real_reads = read_clips(evaluator, shown, labels), read_clips(evaluator, real, labels)
    for digits, r, rr in zip(labels, reads, real_reads):
        read, real_read = ("".join(map(str, c.labels[:, 0])) for c in (r, rr))  # the digit read in each frame
        print(f"given {digits[0]}: {read}   real clip: {real_read}")
    if args.out:
        n, frames = shown.shape[:2]
        fig, axes = plt.subplots(n, frames, figsize=(frames * 0.6, n * 0.68), squeeze=False)
        for i in range(n):
            for j in range(frames):
                read = int(reads[i].labels[j, 0])
                axes[i, j].imshow(shown[i, j], cmap="gray", vmin=0, vmax=1)
                axes[i, j].set_title(read, fontsize=7, pad=1, color="k" if read == labels[i][0] else "r")
                axes[i, j].axis("off")
        fig.suptitle(f"image-to-video from frame 0 of {n} real clips ({args.ckpt}, seed {args.seed}); the digit "
                     "read in each frame, red: not the given digit", fontsize=8)
        fig.tight_layout()
        fig.savefig(args.out, dpi=60)


if __name__ == "__main__":
    main()

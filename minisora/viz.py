"""Looking at videos: frame strips, GIF files, and inline animations for notebooks.

Videos are grayscale, given as (T, H, W) or (1, T, H, W) (the layout a ``MovingMNIST`` item and
the models use), as numpy arrays or torch tensors, uint8 in [0, 255] or float in [0, 1].

The inline :class:`Animation` is an ``<img>`` holding a GIF that Pillow encodes from the pixels
themselves: no random element ids and no font rendering, so a notebook that shows one gives the
same output on every run, which strict ``nbval`` needs.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image


def to_uint8(video) -> np.ndarray:
    """A video as a (T, H, W) uint8 array; floats are read as [0, 1] and clipped."""
    if isinstance(video, torch.Tensor):
        video = video.detach().cpu().numpy()
    video = np.asarray(video)
    if video.ndim == 4 and video.shape[0] == 1:
        video = video[0]  # (1, T, H, W) -> (T, H, W)
    if video.ndim != 3:
        raise ValueError(f"expected a grayscale video of shape (T, H, W) or (1, T, H, W), got {video.shape}")
    if video.dtype == np.uint8:
        return video
    if not np.issubdtype(video.dtype, np.floating):
        raise ValueError(f"expected uint8 in [0, 255] or floats in [0, 1], got dtype {video.dtype}")
    return (np.clip(video, 0, 1) * 255).round().astype(np.uint8)


def tile(videos, ncols: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile same-length videos into one (T, H', W') video on a grid, separated by gray lines."""
    videos = [to_uint8(v) for v in videos]
    lengths = {v.shape[0] for v in videos}
    if len(lengths) != 1:
        raise ValueError(f"videos to tile must have the same number of frames, got {sorted(lengths)}")
    T, H, W = lengths.pop(), max(v.shape[1] for v in videos), max(v.shape[2] for v in videos)
    ncols = ncols or len(videos)
    nrows = -(-len(videos) // ncols)
    out = np.full((T, nrows * (H + pad) + pad, ncols * (W + pad) + pad), 128, np.uint8)  # (T, H', W')
    for n, v in enumerate(videos):
        r, c = divmod(n, ncols)
        y, x = pad + r * (H + pad), pad + c * (W + pad)
        out[:, y:y + v.shape[1], x:x + v.shape[2]] = v
    return out


def gif_bytes(video, fps: float = 10, scale: int = 1) -> bytes:
    """Encode a video as a looping GIF; ``scale`` enlarges pixels (nearest neighbour)."""
    frames = to_uint8(video).repeat(scale, axis=1).repeat(scale, axis=2)  # (T, H*s, W*s)
    images = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:],
                   duration=round(1000 / fps), loop=0)
    return buf.getvalue()


def save_gif(videos, path: str | Path, fps: float = 10, scale: int = 2, ncols: int | None = None) -> Path:
    """Save one video, or a list of same-length videos tiled on a grid, as a GIF file."""
    video = tile(videos, ncols) if isinstance(videos, (list, tuple)) else videos
    path = Path(path)
    path.write_bytes(gif_bytes(video, fps, scale))
    return path


class Animation:
    """Videos side by side, animated inline in a notebook (and a plain summary elsewhere)."""

    def __init__(self, videos, titles: list[str] | None = None, fps: float = 10, width: int = 160):
        self.videos = [to_uint8(v) for v in (videos if isinstance(videos, (list, tuple)) else [videos])]
        self.titles = list(titles) if titles is not None else [""] * len(self.videos)
        if len(self.titles) != len(self.videos):
            raise ValueError(f"got {len(self.titles)} titles for {len(self.videos)} videos")
        self.fps, self.width = fps, width

    def __repr__(self) -> str:
        shapes = ", ".join("x".join(map(str, v.shape)) for v in self.videos)
        return f"Animation({len(self.videos)} video(s), T x H x W = {shapes}, {self.fps} fps)"

    def _repr_html_(self) -> str:
        cells = []
        for video, title in zip(self.videos, self.titles):
            src = base64.b64encode(gif_bytes(video, self.fps)).decode()
            width = round(self.width * video.shape[2] / 64)  # the same zoom for every canvas size
            cells.append(
                '<figure style="display:inline-block;margin:4px;text-align:center">'
                f'<img src="data:image/gif;base64,{src}" width="{width}" style="image-rendering:pixelated">'
                f'<figcaption style="font-size:small;max-width:{max(width, 160)}px">{html.escape(title)}</figcaption>'
                "</figure>")
        return "<div>" + "".join(cells) + "</div>"


def animate(videos, titles: list[str] | None = None, fps: float = 10, width: int = 160) -> Animation:
    """Show one video or a list of videos as looping animations (the last line of a notebook cell)."""
    return Animation(videos, titles, fps, width)


def frame_strip(videos, titles: list[str] | None = None, every: int = 1, size: float = 1.0):
    """Plot videos as rows of frames (frame numbers on top); returns the matplotlib figure."""
    videos = [to_uint8(v)[::every] for v in (videos if isinstance(videos, (list, tuple)) else [videos])]
    T = max(v.shape[0] for v in videos)
    fig, axes = plt.subplots(len(videos), T, figsize=(size * T, size * len(videos) + 0.3), squeeze=False)
    for r, video in enumerate(videos):
        for t, ax in enumerate(axes[r]):
            ax.set_xticks([]), ax.set_yticks([])
            if t < len(video):
                ax.imshow(video[t], cmap="gray", vmin=0, vmax=255)
            else:
                ax.axis("off")
            if r == 0:
                ax.set_title(str(t * every), fontsize=8)
        if titles:
            axes[r, 0].set_ylabel(titles[r], rotation=0, ha="right", va="center", fontsize=9)
    fig.tight_layout(pad=0.2)
    return fig

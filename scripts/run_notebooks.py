"""Execute notebooks top to bottom in a fresh kernel and save them, ready to commit.

    python scripts/run_notebooks.py notebooks/*.ipynb      (or: make notebooks)

Each notebook runs in its own folder with the plain ``python3`` kernel; the saved file keeps
the outputs (nbval's reference) but no widget state (dropped with the notebook metadata) and no per-cell timing metadata, so that
re-running an unchanged notebook changes nothing but what really changed.
"""

import argparse
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def run(path: Path, timeout: int) -> float:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    nb.metadata = {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}}
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    nbformat.write(nb, path)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="+", type=Path, help="notebooks to execute in place")
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell")
    args = parser.parse_args()
    for path in args.notebooks:
        print(f"{path}: ran in {run(path, args.timeout):.1f} s", flush=True)


if __name__ == "__main__":
    main()

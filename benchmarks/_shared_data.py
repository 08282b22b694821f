"""The MNIST folder the benchmarks default to, ``../shared/data/mnist-5k`` next to the repository,
and what to do where it is absent."""
import sys
from pathlib import Path

from pyro_deepgen.data.mnist import find_mnist_files


REPO = Path(__file__).resolve().parent.parent


def default_mnist_root() -> Path:
    """``shared/data/mnist-5k`` in the nearest folder above the repository that has it (a git
    worktree sits one level further down), else ``../shared/data/mnist-5k``."""
    for parent in REPO.parents:
        candidate = parent / "shared" / "data" / "mnist-5k"
        if candidate.is_dir():
            return candidate
    return REPO.parent / "shared" / "data" / "mnist-5k"


def without_mnist_hint(root) -> str:
    """One line: ``root`` holds no MNIST training files, and how to run the benchmark anyway."""
    return (f"no MNIST IDX files in {root} (the benchmarks default to ../shared/data/mnist-5k next to the "
            "repository): pass --data-root DIR, a folder with train-images-idx3-ubyte[.gz] and "
            "train-labels-idx1-ubyte[.gz] (the t10k files are optional); to fetch the official files into "
            "DIR once: .venv/bin/python -c \"from pyro_deepgen.data import load_mnist; "
            "load_mnist('DIR', download=True)\"")


def require_mnist_root(root) -> None:
    """Exit with :func:`without_mnist_hint` (status 2) unless ``root`` holds the MNIST training files."""
    if None in find_mnist_files(str(root), "train"):
        print(f"{sys.argv[0]}: {without_mnist_hint(root)}", file=sys.stderr)
        sys.exit(2)

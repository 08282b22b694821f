"""Arguments, output folders and reports shared by the ``pyro-deepgen`` subcommands."""
import argparse
import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator

import torch


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def int_list(text: str):
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 200,200, got {text!r}"
        )
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"layer sizes must be positive, got {text!r}")
    return values


def device_type(text: str) -> torch.device:
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"not a torch device: {text!r} (try cpu or cuda)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError("--device cuda was asked for but CUDA is not available")
    return device


def add_data_arguments(
    parser: argparse.ArgumentParser, extra_choices=(), default: str = "digits", help: str = None
) -> None:
    """--data digits|mnist[|...] and --data-root, with the same meaning in every subcommand."""
    parser.add_argument("--data", choices=("digits", "mnist") + tuple(extra_choices),
                        default=default,
                        help=help or "digits: scikit-learn's 8x8 digits (embedded, the default); "
                                     "mnist: the IDX files in --data-root")
    parser.add_argument("--data-root", default=None,
                        help="folder with the MNIST IDX files (for --data mnist); the test set is "
                             "the t10k files when present, else a seeded 10%% hold-out")


def check_data_arguments(args: argparse.Namespace) -> None:
    if args.data == "mnist" and args.data_root is None:
        raise ValueError("--data mnist needs --data-root DIR (the folder with the MNIST IDX files)")


def load_data(args: argparse.Namespace, binarize=None):
    """The train/test split of ``args.data`` (see :func:`pyro_deepgen.data.load_train_test`)."""
    from ..data import load_train_test

    check_data_arguments(args)
    return load_train_test(args.data, args.data_root, binarize=binarize, seed=args.seed)


def add_common_arguments(parser: argparse.ArgumentParser, out_default: str) -> None:
    """--seed, --device and --out, with the same meaning in every subcommand."""
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--device", type=device_type, default=torch.device("cpu"),
                        help="torch device, e.g. cpu or cuda (default cpu)")
    parser.add_argument("--out", type=Path, default=Path(out_default),
                        help=f"output folder (default {out_default})")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="hide the progress bars")


@contextlib.contextmanager
def atomic_output_dir(out: Path) -> Iterator[Path]:
    """Yield a temporary folder next to ``out`` and move it to ``out`` only on success.

    A failed run leaves ``out`` as it was: nothing half-written. An existing ``out`` is
    replaced only once the new results are complete.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def write_json(path: Path, data: Dict[str, Any]) -> None:
    def default(o):
        if isinstance(o, (Path, torch.device)):
            return str(o)
        if isinstance(o, torch.Tensor):
            return o.tolist()
        raise TypeError(f"cannot serialize {type(o).__name__}")

    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True, default=default) + "\n")


def settings(args: argparse.Namespace) -> Dict[str, Any]:
    """The parsed arguments as plain data for ``report.json``."""
    return {k: v for k, v in vars(args).items() if not k.startswith("_")}

"""Arguments shared by the ``pyro-deepgen`` subcommands, and the config built from them."""
import argparse
import dataclasses
from pathlib import Path
from typing import Type, TypeVar

import torch

from .._compat import moved_attributes

C = TypeVar("C")


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


def add_common_arguments(parser: argparse.ArgumentParser, out_default: str) -> None:
    """--seed, --device and --out, with the same meaning in every subcommand."""
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--device", type=device_type, default=torch.device("cpu"),
                        help="torch device, e.g. cpu or cuda (default cpu)")
    parser.add_argument("--out", type=Path, default=Path(out_default),
                        help=f"output folder (default {out_default})")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="hide the progress bars")


def config_from_args(config_class: Type[C], args: argparse.Namespace) -> C:
    """The experiment config ``config_class`` (a dataclass) from the parsed arguments of the same
    names; the config checks the values (a ValueError names the option)."""
    return config_class(**{f.name: getattr(args, f.name) for f in dataclasses.fields(config_class)})


# moved to pyro_deepgen.experiments.common in 0.2
__getattr__ = moved_attributes(__name__, {
    name: "pyro_deepgen.experiments.common" for name in ("atomic_output_dir", "load_data", "write_json")
})

"""Arguments shared by the ``pyro-deepgen`` subcommands, and the config built from them."""
import argparse
import dataclasses
import math
from pathlib import Path
from typing import Type, TypeVar

import torch

from .._compat import moved_attributes

C = TypeVar("C")


#: the range of ``--seed``: numpy's and torch's seeds are unsigned 32-bit integers
SEED_RANGE = (0, 2 ** 32)
#: the metavar of every comma-separated list of sizes (``--hidden``, ``--depths``)
SIZES_METAVAR = "N,N,..."


# The files and ``report.json`` keys every command writes (see ``OUTPUTS`` of each command, which
# docs/cli.rst renders). An entry that only some runs write says so, beginning with "Only".
MARKER_FILE = {".pyro-deepgen-run.json": "the marker that claims the folder for this package (command, "
                                         "files), so that --resume and --overwrite may reuse it"}
RUN_REPORT = {
    "settings": "the run's settings: every option as a config field, with the command's name",
    "world_size": "the number of processes that trained it (torchrun --nproc_per_node; 1 without torchrun)",
    "resume_overrides": "Only in a resumed run that changed settings (--resume-override): their names",
}


def _number(text: str, kind: type, what: str):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = _number(text, int, "a positive integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def seed_type(text: str) -> int:
    """A seed in ``[0, 2**32)`` (the seeds numpy and torch accept)."""
    value = _number(text, int, "an integer seed")
    if not SEED_RANGE[0] <= value < SEED_RANGE[1]:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, 2**32), got {text}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _number(text, float, "a number")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite positive number, got {text}")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number >= 0."""
    value = _number(text, float, "a number")
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def unit_interval(low_open: bool, high_open: bool):
    """The type of a number in [0, 1] with the chosen ends open: ``unit_interval(False, True)``
    accepts [0, 1)."""
    interval = ("(" if low_open else "[") + "0, 1" + (")" if high_open else "]")

    def parse(text: str) -> float:
        value = _number(text, float, "a number")
        above_low = value > 0 if low_open else value >= 0  # False for nan
        below_high = value < 1 if high_open else value <= 1
        if not (above_low and below_high):
            raise argparse.ArgumentTypeError(f"must be in {interval}, got {text}")
        return value

    parse.__name__ = f"number in {interval}"
    return parse


def int_list(text: str):
    """Comma-separated positive integers, at least one: ``"200,200"`` -> ``(200, 200)``."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 200,200, got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError(
            f"expected at least one size, comma-separated like 200,200, got {text!r}"
        )
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"sizes must be positive integers, got {text!r}")
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
    """--data digits|mnist[|...], --data-root and --download, with the same meaning in every
    subcommand."""
    parser.add_argument("--data", choices=("digits", "mnist") + tuple(extra_choices),
                        default=default,
                        help=help or "digits: scikit-learn's 8x8 digits (embedded, the default); "
                                     "mnist: the IDX files in --data-root")
    parser.add_argument("--data-root", default=None, metavar="DIR",
                        help="folder with the MNIST IDX files (for --data mnist); the test set is "
                             "the t10k files when present, else a seeded 10%% hold-out")
    parser.add_argument("--download", action="store_true",
                        help="with --data mnist: fetch the missing official MNIST files (checked by "
                             "MD5) into --data-root")


def setting_names(text: str):
    """``lr,epochs`` -> ``("lr", "epochs")``: the settings named by ``--resume-override``."""
    values = tuple(v.strip().lstrip("-").replace("-", "_") for v in text.split(",") if v.strip())
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated setting names like lr,epochs, got {text!r}")
    return values


def add_common_arguments(parser: argparse.ArgumentParser, out_default: str, resume: bool = True) -> None:
    """--seed, --device, --out, --overwrite, --no-progress and (with ``resume``) --resume and
    --resume-override, with the same meaning in every subcommand."""
    parser.add_argument("--seed", type=seed_type, default=0, metavar="SEED",
                        help="random seed, an integer in [0, 2**32) (default 0)")
    parser.add_argument("--device", type=device_type, default=torch.device("cpu"), metavar="DEVICE",
                        help="torch device, e.g. cpu or cuda (default cpu)")
    parser.add_argument("--out", type=Path, default=Path(out_default), metavar="DIR",
                        help=f"output folder (default {out_default}): a new or empty folder, or one "
                             "pyro-deepgen wrote (then pass --resume or --overwrite); a folder with "
                             "other files is refused")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the earlier run in --out (deletes only the files pyro-deepgen "
                             "wrote there)")
    if resume:
        parser.add_argument("--resume", action="store_true",
                            help="continue the run in --out from its checkpoint.pt (same settings)")
        parser.add_argument("--resume-override", type=setting_names, default=(), metavar="NAME[,NAME]",
                            help="with --resume: settings allowed to differ from the checkpoint's, e.g. "
                                 "lr,epochs (recorded in the report)")
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

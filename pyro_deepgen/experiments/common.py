"""What every experiment shares: its output folder, ``report.json``, the data split, and the
checks of the settings common to all configs (seed, device, output folder, data)."""
import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, Optional, Sequence

import torch

DATA_SETS = ("digits", "mnist")


def _flag(name: str) -> str:
    """``"ais_runs"`` -> ``"ais_runs (--ais-runs)"``: a config field and its command-line flag."""
    return f"{name} (--{name.replace('_', '-')})"


def check_positive_int(config: Any, *names: str) -> None:
    """Raise a one-line ValueError naming the first of ``names`` that is not an int >= 1."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{_flag(name)} must be a positive integer, got {value!r}")


def check_positive_float(config: Any, *names: str) -> None:
    """Raise a one-line ValueError naming the first of ``names`` that is not a number > 0."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{_flag(name)} must be positive, got {value!r}")


def check_choice(config: Any, name: str, choices: Iterable[str]) -> None:
    """Raise a one-line ValueError if field ``name`` is not one of ``choices``."""
    choices = tuple(choices)
    value = getattr(config, name)
    if value not in choices:
        raise ValueError(f"{_flag(name)} must be one of {', '.join(choices)}; got {value!r}")


def check_int_tuple(config: Any, name: str, allow_none: bool = False) -> None:
    """Turn field ``name`` into a tuple of positive ints (layer sizes, flow depths), or raise."""
    value = getattr(config, name)
    if value is None and allow_none:
        return
    try:
        values = tuple(value)
    except TypeError:
        values = None
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise ValueError(f"{_flag(name)} must be a non-empty sequence of positive integers, "
                         f"got {value!r}")
    setattr(config, name, values)


def check_common(config: Any) -> None:
    """Normalize and check the fields every config has: ``seed``, ``device``, ``out`` (a Path)
    and ``progress``."""
    if isinstance(config.seed, bool) or not isinstance(config.seed, int):
        raise ValueError(f"seed (--seed) must be an integer, got {config.seed!r}")
    try:
        config.device = torch.device(config.device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device (--device) is not a torch device: {config.device!r} (try cpu or "
                         "cuda)") from None
    if config.device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device (--device) cuda was asked for but CUDA is not available")
    config.out = Path(config.out)


def check_data(config: Any, choices: Sequence[str] = DATA_SETS) -> None:
    """Check ``data`` (one of ``choices``) and that ``mnist`` comes with its ``data_root``."""
    check_choice(config, "data", choices)
    if config.data == "mnist" and config.data_root is None:
        raise ValueError("data='mnist' (--data mnist) needs data_root (--data-root DIR), the folder "
                         "with the MNIST IDX files")


def load_data(config: Any, binarize: Optional[str] = None):
    """The train/test split of ``config.data`` (see :func:`pyro_deepgen.data.load_train_test`),
    split with ``config.seed``."""
    from ..data import load_train_test

    return load_train_test(config.data, config.data_root, binarize=binarize, seed=config.seed)


def settings(config: Any, command: str) -> Dict[str, Any]:
    """The config as plain JSON data for the report's ``settings``: every field (tuples as
    lists, paths and devices as strings) and the ``command`` that ran it."""
    def plain(v):
        if isinstance(v, (Path, torch.device)):
            return str(v)
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        return v

    fields = {f.name: plain(getattr(config, f.name)) for f in dataclasses.fields(config)}
    return {"command": command, **fields}


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
    """Write ``data`` as indented JSON with sorted keys (paths and devices as strings, tensors as
    lists)."""
    def default(o):
        if isinstance(o, (Path, torch.device)):
            return str(o)
        if isinstance(o, torch.Tensor):
            return o.tolist()
        raise TypeError(f"cannot serialize {type(o).__name__}")

    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True, default=default) + "\n")

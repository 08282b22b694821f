"""What every experiment shares: its output folder, ``report.json``, the data split, and the
checks of the settings common to all configs (seed, device, output folder, data)."""
import contextlib
import dataclasses
import json
import math
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import torch

from .. import distributed

DATA_SETS = ("digits", "mnist")


def start_distributed(device: Any = "cpu") -> int:
    """Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) start the process group (gloo
    on CPU, NCCL when ``device`` is CUDA; see :func:`pyro_deepgen.distributed.init_from_env`), so
    that the command's :func:`~pyro_deepgen.train.fit` runs data-parallel; returns this process's
    rank (0 without torchrun). Only rank 0 writes the output folder (:func:`prepare_output`)."""
    distributed.init_from_env(device)
    return distributed.rank()


def stop_distributed() -> None:
    """Destroy the process group that :func:`start_distributed` started, if any."""
    distributed.shutdown()


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
    """Raise a one-line ValueError naming the first of ``names`` that is not a finite number > 0
    (``inf`` and ``nan`` are refused)."""
    for name in names:
        value = getattr(config, name)
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                or not value > 0):
            raise ValueError(f"{_flag(name)} must be a finite positive number, got {value!r}")


def check_nonnegative_float(config: Any, *names: str) -> None:
    """Raise a one-line ValueError naming the first of ``names`` that is not a finite number >= 0."""
    for name in names:
        value = getattr(config, name)
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                or not value >= 0):
            raise ValueError(f"{_flag(name)} must be a finite number >= 0, got {value!r}")


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
    """Normalize and check the fields every config has: ``seed``, ``device``, ``out`` (a Path),
    ``progress``, ``overwrite`` and, for resumable commands, ``resume`` and ``resume_override``
    (see :func:`check_output_flags`)."""
    if isinstance(config.seed, bool) or not isinstance(config.seed, int) or not 0 <= config.seed < 2 ** 32:
        raise ValueError(f"seed (--seed) must be an integer in [0, 2**32) (numpy's and torch's seeds), "
                         f"got {config.seed!r}")
    try:
        config.device = torch.device(config.device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device (--device) is not a torch device: {config.device!r} (try cpu or "
                         "cuda)") from None
    if config.device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device (--device) cuda was asked for but CUDA is not available")
    config.out = Path(config.out)
    check_output_flags(config, resume=hasattr(config, "resume"))


def check_data(config: Any, choices: Sequence[str] = DATA_SETS) -> None:
    """Check ``data`` (one of ``choices``), and that ``mnist`` comes with its ``data_root`` holding
    the training files unless ``download`` (a bool) will fetch them.

    :raises FileNotFoundError: (one line) naming the missing files, the folder and the fixes.
    """
    check_choice(config, "data", choices)
    download = getattr(config, "download", False)
    if not isinstance(download, bool):
        raise ValueError(f"download (--download) must be True or False, got {download!r}")
    if config.data == "mnist":
        if config.data_root is None:
            raise ValueError("data='mnist' (--data mnist) needs data_root (--data-root DIR), the folder "
                             "with the MNIST IDX files (add --download to fetch them into it)")
        if not download:
            from ..data.mnist import check_mnist_files

            check_mnist_files(config.data_root, "train")


def wrote_line(out: Union[str, Path], names: Iterable[str]) -> str:
    """``"wrote OUT/report.json, loss.png, ..."``: the files of ``names`` that exist in ``out``,
    ``report.json`` first, for the last line a command prints."""
    out = Path(out)
    present = sorted({n for n in names if (out / n).is_file()}, key=lambda n: (n != "report.json", n))
    if not present:
        return f"wrote nothing to {out}"
    return f"wrote {out / present[0]}" + "".join(f", {n}" for n in present[1:])


def load_data(config: Any, binarize: Optional[str] = None):
    """The train/test split of ``config.data`` (see :func:`pyro_deepgen.data.load_train_test`),
    split with ``config.seed``; MNIST files are fetched first when ``config.download``."""
    from ..data import load_train_test

    return load_train_test(config.data, config.data_root, binarize=binarize, seed=config.seed,
                           download=getattr(config, "download", False))


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
    return {"command": command, **fields, "world_size": distributed.world_size()}


MARKER = ".pyro-deepgen-run.json"
CHECKPOINT = "checkpoint.pt"
#: a training loss per data point past this stops a command's training (``fit(max_loss=...)``)
MAX_LOSS = 1e8


class OutputFolderWarning(UserWarning):
    """A note about ``--out`` that needs no action to finish the run (a stale temporary folder
    left by a killed run, a user's file kept in a replaced run folder)."""


def _out_error(out: Path, problem: str, advice: str) -> ValueError:
    return ValueError(f"out (--out) {out}: {problem}; {advice}")


def _read_marker(folder: Path) -> Optional[Dict[str, Any]]:
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or not isinstance(marker.get("files"), list):
        return None
    return marker


def _write_marker(folder: Path, command: str, files: Iterable[str]) -> None:
    from .. import __version__

    data = {"command": command, "version": __version__, "files": sorted(set(files)),
            "about": "written by pyro-deepgen: the files it wrote here; --overwrite deletes only these"}
    tmp = folder / f".{MARKER}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, folder / MARKER)


def record_in_run(folder: Path, *names: str) -> bool:
    """Add ``names`` (files the package has just written into an existing run folder, such as a
    classifier cache) to that folder's marker, so that its ``--overwrite`` removes them too.
    Returns ``False`` (and changes nothing) where the folder has no readable marker."""
    folder = Path(folder).resolve()
    marker = _read_marker(folder)
    if marker is None:
        return False
    _write_marker(folder, marker.get("command", "?"), list(marker["files"]) + list(names))
    return True


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _stale_temporaries(real: Path) -> List[Path]:
    """Temporary folders of earlier runs to ``real`` whose process no longer runs (a SIGKILL)."""
    stale = []
    try:
        candidates = list(real.parent.glob(f".{real.name}.tmp-*"))
        if real.is_dir():
            candidates += list(real.glob(".results.tmp-*"))
    except OSError:
        return []
    for p in candidates:
        pid = p.name.rsplit("-", 1)[-1]
        if pid.isdigit() and (int(pid) == os.getpid() or _pid_running(int(pid))):
            continue
        stale.append(p)
    return sorted(stale)


def _package_temporaries(folder: Path, files: Iterable[str]) -> List[Path]:
    """Files the package's atomic writers leave in ``folder`` when killed mid-write:
    ``.NAME.*.tmp`` of a listed file and ``.pyro-deepgen-run.json.tmp-PID``."""
    found = list(folder.glob(f".{MARKER}.tmp-*"))
    for name in files:
        found += list(folder.glob(f".{name}.*.tmp"))
    return [p for p in found if p.is_file() and not p.is_symlink()]


@dataclasses.dataclass
class RunConfig:
    """The settings every command's config shares (its subclass sets the ``out`` default to
    ``runs/<command>``).

    :param seed: random seed (data split, initialization, training, evaluation), in
        ``[0, 2**32)``.
    :param device: torch device.
    :param out: output folder: new, empty, or one this package wrote (see
        :func:`prepare_output`); the checkpoint is written there during training, the results
        once the run is complete.
    :param progress: show progress bars.
    :param overwrite: replace the run in ``out`` (only the files this package wrote there).
    """

    seed: int = 0
    device: Union[str, torch.device] = "cpu"
    out: Union[str, Path] = Path("runs")
    progress: bool = True
    overwrite: bool = False


@dataclasses.dataclass
class ResumableConfig(RunConfig):
    """:class:`RunConfig` of a command that trains with :func:`~pyro_deepgen.train.fit` and can
    continue from ``out/checkpoint.pt``.

    :param resume: continue the run in ``out`` from its ``checkpoint.pt``.
    :param resume_override: settings that may differ from the checkpoint's when resuming (e.g.
        ``("lr", "epochs")``, see ``fit(resume_override=...)``); the changes are recorded in the
        report.
    """

    resume: bool = False
    resume_override: Tuple[str, ...] = ()


@dataclasses.dataclass
class RunFolder:
    """The output folder of one command run, made by :func:`prepare_output`.

    ``path`` is the folder (``--out`` as given), ``checkpoint`` the training checkpoint inside
    it, ``resume`` whether the run continues from that checkpoint. Files written straight into
    the folder are recorded with :meth:`record`; final results are written through
    :meth:`results`.
    """

    path: Path
    command: str
    resume: bool = False
    real: Path = None  # the folder with symlinks resolved (where the temporaries go)
    files: List[str] = dataclasses.field(default_factory=list)
    writer: bool = True  # False on the ranks > 0 of a torchrun job: they write nothing here

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    def record(self, *names: str) -> None:
        """Add ``names`` (files in the folder) to the marker: the package wrote them."""
        self.files = sorted(set(self.files) | set(names))
        if self.writer:
            _write_marker(self.real, self.command, self.files)

    def _temporary(self) -> Path:
        sibling = self.real.parent / f".{self.real.name}.tmp-{os.getpid()}"
        try:
            sibling.mkdir()
        except OSError:
            sibling = None
        if sibling is not None and os.stat(sibling).st_dev == os.stat(self.real).st_dev:
            return sibling
        if sibling is not None:  # another file system (a mount point): os.replace cannot move
            sibling.rmdir()
        inside = self.real / f".results.tmp-{os.getpid()}"
        inside.mkdir()
        return inside

    @contextlib.contextmanager
    def results(self) -> Iterator[Path]:
        """Yield an empty temporary folder next to the run folder (``.NAME.tmp-PID``, or inside
        it when its parent is not writable or on another file system); on success record its
        files in the marker and move them into the folder one by one with :func:`os.replace`,
        so a reader sees either the old or the new version of each file, never half of one.
        On any exception (also ``KeyboardInterrupt`` or ``SystemExit``) the temporary folder is
        removed and the run folder is left as it was. On a rank > 0 of a torchrun job the files go
        to a temporary folder that is then deleted: rank 0 writes the results."""
        if not self.writer:
            with tempfile.TemporaryDirectory() as tmp:
                yield Path(tmp)
            return
        tmp = self._temporary()
        try:
            yield tmp
            names = sorted(p.name for p in tmp.iterdir())
            self.record(*names)
            for name in names:
                os.replace(tmp / name, self.real / name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def prepare_output(out: Union[str, Path], command: str, overwrite: bool = False,
                   resume: bool = False) -> RunFolder:
    """Check and claim the output folder ``out`` of a ``command`` run, before any data are read.

    The one rule of every command:

    - a path that does not exist is created (with its parents);
    - an empty folder is used;
    - a folder that this package wrote (it holds the marker ``.pyro-deepgen-run.json``, with the
      command, the version and the files the package wrote there) is continued with ``resume``,
      or replaced with ``overwrite``: only the files the marker lists are deleted, a user's other
      files are kept (and named in an :class:`OutputFolderWarning`). A package folder whose
      listed files are all gone counts as empty;
    - anything else (a folder with other files, ``.`` when not empty, a file, a symlink to one)
      is refused with a one-line :class:`ValueError` naming ``out (--out)``; nothing is deleted.

    The folder is then checked to be writable (a probe file is created and removed) and receives
    its marker. Temporary folders of earlier runs to ``out`` killed by SIGKILL are named in an
    :class:`OutputFolderWarning`, never deleted. OS errors become one-line ValueErrors.

    Under torchrun only rank 0 checks and claims the folder; an error there is raised on every rank.
    """
    out = Path(out)
    if overwrite and resume:
        raise ValueError("--resume and --overwrite exclude each other: resume continues the run in out (--out), "
                         "overwrite replaces it; pass one")
    if distributed.world_size() > 1:
        folder = distributed.Context().on_main(lambda: _prepare_output(out, command, overwrite, resume),
                                               f"preparing {out}")
        if distributed.rank() == 0:
            return folder
        return RunFolder(out, command, resume=resume, real=out.resolve(), writer=False)
    return _prepare_output(out, command, overwrite, resume)


def _prepare_output(out: Path, command: str, overwrite: bool, resume: bool) -> RunFolder:
    try:
        return _prepare(out, command, overwrite, resume)
    except OSError as e:
        reason = e.strerror or str(e)
        where = f" ({e.filename})" if e.filename and Path(e.filename) != out else ""
        raise _out_error(out, f"cannot be used: {reason}{where}",
                         "choose a folder you can write to") from None


def _prepare(out: Path, command: str, overwrite: bool, resume: bool) -> RunFolder:
    real = out.resolve()
    if not real.name:
        raise _out_error(out, "is the root folder", "choose a new or empty folder")
    if out.is_symlink() and not out.exists():
        raise _out_error(out, "is a broken symbolic link", "remove it or choose another folder")
    if out.exists() and not out.is_dir():
        raise _out_error(out, "is a file, not a folder",
                         "choose a new or empty folder (the file is left as it is)")
    stale = _stale_temporaries(real)
    if stale:
        warnings.warn(f"out (--out) {out}: left by an earlier run that was killed: "
                      f"{', '.join(str(p) for p in stale)}; delete them when you no longer need them",
                      OutputFolderWarning, stacklevel=3)
    files: List[str] = []
    if not real.is_dir():
        if resume:
            raise _out_error(out, f"does not exist, so there is no {CHECKPOINT} to resume from",
                             "drop --resume to start a new run")
        parent = real.parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            raise _out_error(out, f"cannot be created: {parent} is a file", "choose another folder")
        real.mkdir(parents=True)
    else:
        entries = sorted(p.name for p in real.iterdir())
        marker = _read_marker(real)
        if marker is None:
            if entries:
                shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
                raise _out_error(out, f"is a folder that holds other files ({len(entries)}: {shown})",
                                 "pyro-deepgen writes only into a new folder, an empty one or one it wrote; "
                                 "choose another folder (nothing was changed)")
            if resume:
                raise _out_error(out, f"is empty: there is no {CHECKPOINT} to resume from",
                                 "drop --resume to start a new run")
        else:
            written = [n for n in marker["files"] if isinstance(n, str) and "/" not in n and n not in (".", "..")]
            present = [n for n in written if (real / n).is_file() and not (real / n).is_symlink()]
            earlier = marker.get("command", "?")
            if resume:
                if earlier != command:
                    raise _out_error(out, f"holds a pyro-deepgen {earlier} run, not {command}",
                                     f"resume it with pyro-deepgen {earlier} or choose another folder")
                if not (real / CHECKPOINT).is_file():
                    raise _out_error(out, f"has no {CHECKPOINT} to resume from",
                                     "drop --resume and pass --overwrite to start afresh")
                files = written
            elif present and not overwrite:
                raise _out_error(out, f"holds the results of an earlier pyro-deepgen {earlier} run",
                                 "pass --resume to continue it, --overwrite to replace it, or choose "
                                 "another folder")
            else:
                for p in [real / n for n in present] + _package_temporaries(real, written):
                    p.unlink()
                (real / MARKER).unlink()
                kept = sorted(set(entries) - set(present) - {MARKER}
                              - {p.name for p in _package_temporaries(real, written)})
                kept = [n for n in kept if (real / n).exists()]
                if kept:
                    warnings.warn(f"out (--out) {out}: replaced the earlier run but kept {len(kept)} "
                                  f"file(s) pyro-deepgen did not write: {', '.join(kept)}",
                                  OutputFolderWarning, stacklevel=3)
    probe = real / f".pyro-deepgen-probe-{os.getpid()}"
    probe.write_bytes(b"")
    probe.unlink()
    folder = RunFolder(out, command, resume=resume, real=real, files=files)
    folder.record(*files)
    return folder


@contextlib.contextmanager
def atomic_output_dir(out: Path) -> Iterator[Path]:
    """Yield a temporary folder whose files are moved into ``out`` on success (see
    :meth:`RunFolder.results`). ``out`` follows the rule of :func:`prepare_output` (with
    ``overwrite=True``): a folder with other files, or a file, is refused; nothing of a user's
    is deleted."""
    with prepare_output(out, "output", overwrite=True).results() as tmp:
        yield tmp


def run_settings(config: Any, command: str) -> Dict[str, Any]:
    """The settings that define a run, for the checkpoint (``fit(run_settings=...)``): those of
    :func:`settings` without ``out``, ``progress``, ``resume``, ``overwrite``,
    ``resume_override``, ``device`` (which may change when resuming) and ``world_size`` (which
    :func:`~pyro_deepgen.train.fit` checks itself)."""
    drop = {"out", "progress", "resume", "overwrite", "resume_override", "device", "world_size"}
    return {k: v for k, v in settings(config, command).items() if k not in drop}


def fit_run_arguments(config: Any, command: str, folder: RunFolder,
                      overridable: Sequence[str] = ()) -> Dict[str, Any]:
    """The keyword arguments of :func:`~pyro_deepgen.train.fit` that make a command's training
    resumable: the checkpoint in the run folder, ``resume``, the :func:`run_settings` that the
    checkpoint records and a resumed run must match, the settings allowed to differ
    (``resume_override``; ``overridable`` adds the command's settings that only change what is
    done after training, such as the evaluation's sample sizes) and the loss bound ``max_loss``
    (a loss per data point past it stops training, like a non-finite one)."""
    folder.record(CHECKPOINT)  # listed before it exists: an interrupted run's checkpoint is the package's
    settings_ = run_settings(config, command)
    if overridable:
        settings_["overridable"] = list(overridable)
    return dict(checkpoint=folder.checkpoint, resume=folder.resume, run_settings=settings_,
                resume_override=tuple(getattr(config, "resume_override", ())), max_loss=MAX_LOSS)


def resume_report(history: Any) -> Dict[str, Any]:
    """``{"resume_overrides": [...]}``: the settings a resumed run changed (``History.overrides``);
    empty for a run that changed none."""
    overrides = list(getattr(history, "overrides", None) or [])
    return {"resume_overrides": overrides} if overrides else {}


def check_output_flags(config: Any, resume: bool = True) -> None:
    """Normalize and check ``overwrite``, and (with ``resume``) ``resume`` and
    ``resume_override`` (a comma-separated string or a sequence of setting names)."""
    for name in ("overwrite",) + (("resume",) if resume else ()):
        if not isinstance(getattr(config, name), bool):
            raise ValueError(f"{_flag(name)} must be True or False, got {getattr(config, name)!r}")
    if not resume:
        return
    value = config.resume_override
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    value = tuple(value)
    if any(not isinstance(v, str) for v in value):
        raise ValueError(f"resume_override (--resume-override) must be setting names, got {value!r}")
    if value and not config.resume:
        raise ValueError("resume_override (--resume-override) needs resume (--resume)")
    config.resume_override = value


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


def write_report(folder: Path, report: Dict[str, Any]) -> None:
    """Write ``report`` as ``folder/report.json`` (see :func:`write_json`), after copying
    ``settings["world_size"]`` (the number of torchrun processes that trained it, 1 without
    torchrun) to the top-level key ``world_size`` of ``report`` itself."""
    report["world_size"] = report["settings"]["world_size"]
    write_json(Path(folder) / "report.json", report)


def read_run_report(run_dir: Union[str, Path], command: Optional[str] = None) -> Dict[str, Any]:
    """The ``report.json`` of a finished run folder (one written by ``pyro-deepgen COMMAND``
    when ``command`` is given); a one-line ValueError naming ``run (--run)`` (the folder option of
    ``score-samples``) otherwise. Every ``load_sampler`` reads its run through it."""
    path = Path(run_dir) / "report.json"
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        raise ValueError(f"run (--run) {run_dir} has no readable report.json: pass the folder of a finished "
                         "pyro-deepgen run") from None
    found = report.get("settings", {}).get("command") if isinstance(report, dict) else None
    if not isinstance(found, str):
        raise ValueError(f"run (--run) {run_dir}: its report.json names no command (settings.command)")
    if command is not None and found != command:
        raise ValueError(f"run (--run) {run_dir} holds a pyro-deepgen {found} run, not {command}")
    return report

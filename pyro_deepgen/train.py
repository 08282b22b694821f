r"""The one training loop of the package.

:func:`fit` trains any Pyro model/guide pair with any Pyro ELBO (through its ``loss_and_grads``)
or any loss callable ``loss(model, guide, *batch) -> Tensor`` (through ``backward``), such as the
contrastive-divergence surrogate of an RBM or a diffusion model's training loss. It handles
minibatches and epochs, a progress bar, validation, early stopping, a learning-rate schedule,
gradient clipping, dynamic binarization, per-step keyword arguments (e.g. an annealed inverse
temperature), and atomic checkpoints from which a resumed run continues the very same trajectory.

:func:`fit` reads as a short sequence of parts, each a private helper of this module:

- ``_resume`` checks a :class:`Checkpoint`'s settings against the run's (``_settings``),
  then restores modules, param store, the loss's state and random states;
- ``_epoch_batches`` shuffles (and, if asked, binarizes) the data of one epoch;
- ``_run_epoch`` takes the optimizer steps of one epoch; its first step records the
  parameters in use and ``_build_optimizer`` builds the optimizer over them;
- ``_validate`` and ``_track_best`` evaluate, keep the best parameters, and decide on
  early stopping;
- ``_save`` writes a :class:`Checkpoint` after every epoch.

Under ``torchrun`` (a :mod:`torch.distributed` process group of several ranks, see
:mod:`pyro_deepgen.distributed`) the same parts run data-parallel: ``_epoch_batches`` draws
each rank's shard with :class:`~torch.utils.data.DistributedSampler`, ``_run_epoch`` sums the
ranks' weighted gradients after every backward, ``_sync_start`` gives every rank rank 0's
initial parameters, and ``_validate`` and ``_save`` run on rank 0 only.
"""
import contextlib
import copy
import dataclasses
import errno
import math
import os
import pickle
import random
import signal
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.optim import PyroOptim
from tqdm.auto import tqdm

from . import distributed as _distributed
from .data.binarization import dynamic_binarize
from .data.checks import check_finite

#: The version of the checkpoint format :class:`Checkpoint` writes; other versions are refused.
CHECKPOINT_VERSION = 2
#: Settings that a resumed run may change when named in ``resume_override`` (besides ``epochs``,
#: which may always differ). A ``run_settings`` key of the same name is safe too.
SAFE_OVERRIDES = ("lr", "optimizer_args", "batch_size", "clip_norm", "patience", "eval_every")
#: Settings that define the run and can never be overridden.
NEVER_OVERRIDE = ("shape", "train_data", "val_data", "seed", "binarize", "pass_num_data", "loss", "loss_config",
                  "optimizer")
#: ``run_settings`` keys that are not compared (they do not change the trajectory).
IGNORED_RUN_SETTINGS = ("epochs", "resume", "resume_override", "out", "overwrite", "progress", "download",
                        "data_root", "device", "overridable", "world_size")
BINARIZE_CHOICES = (None, "dynamic")

Data = Union[torch.Tensor, Sequence[torch.Tensor]]
Batch = Tuple[torch.Tensor, ...]


@dataclasses.dataclass
class History:
    """What :func:`fit` returns; ``dataclasses.asdict(history)`` gives plain data.

    ``loss[e]`` is the mean training loss per data point in epoch ``e`` (for an ELBO: the negative
    ELBO per data point; with ``train_data=None``, the value of the epoch's one step); ``val``
    holds ``(epoch, value)`` pairs from the validation function. ``overrides`` lists the settings
    that a resumed run changed through ``resume_override``, each as ``{"epoch": epochs completed
    when resumed, "name": ..., "saved": ..., "now": ...}``.
    """

    loss: List[float] = dataclasses.field(default_factory=list)
    val: List[Tuple[int, float]] = dataclasses.field(default_factory=list)
    lr: List[float] = dataclasses.field(default_factory=list)
    epochs: int = 0
    steps: int = 0
    seconds: float = 0.0
    best_epoch: Optional[int] = None
    stopped_early: bool = False
    overrides: List[Dict[str, Any]] = dataclasses.field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Checkpoint:
    """Everything a resumed :func:`fit` needs to continue the very same trajectory.

    On disk it is the plain dict :meth:`to_dict` of tensors, plain containers and primitives
    (written by :func:`save_checkpoint`, read by :func:`load_checkpoint` with
    ``torch.load(weights_only=True)``, so a file cannot run code). ``version`` is the format
    version, :data:`CHECKPOINT_VERSION`; a file of another version is refused with a clear error.

    :ivar epoch: epochs completed.
    :ivar modules: the ``state_dict`` of each trained module, in :func:`fit`'s order.
    :ivar param_store: the Pyro param store without the modules' own parameters (constraints
        as plain dicts, see ``_constraint_to_plain``).
    :ivar optimizer: the optimizer's ``state_dict``; ``scheduler`` likewise, or ``None``.
    :ivar rng: the torch, Python, numpy (and CUDA) random states, as tensors.
    :ivar history: the :class:`History` so far.
    :ivar best_value: the best validation value (``inf`` before any); ``best`` the snapshot of the
        parameters that reached it (``None`` before any); ``bad_evals`` the evaluations since.
    :ivar seed: the run's seed.
    :ivar settings: the settings that define the run (see :func:`fit`'s ``resume``), a flat dict
        ``name -> JSON-like value`` compared on resume.
    :ivar loss: the loss object's ``state_dict()`` (e.g. PCD's persistent chains), or ``None``.
    """

    version: int
    epoch: int
    modules: List[Dict[str, Any]]
    param_store: Dict[str, Any]
    optimizer: Dict[str, Any]
    scheduler: Optional[Dict[str, Any]]
    rng: Dict[str, Any]
    history: History
    best_value: float
    best: Optional[Dict[str, Any]]
    bad_evals: int
    seed: int
    settings: Dict[str, Any]
    loss: Optional[Dict[str, Any]]

    def to_dict(self) -> Dict[str, Any]:
        """The plain dict saved on disk (shallow: tensors are shared, not copied)."""
        state = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        state["history"] = self.history.to_dict()
        return state

    @classmethod
    def from_dict(cls, state: Dict[str, Any], source: Union[str, Path] = "checkpoint") -> "Checkpoint":
        """Inverse of :meth:`to_dict`; ``source`` (the file) names the culprit in errors."""
        _check_version(state, source)
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [name for name in names if name not in state]
        if missing:
            raise ValueError(
                f"{source} lacks the checkpoint entries {missing}; it was not written by fit(). "
                "Delete it to start afresh or pass another path."
            )
        fields = {name: state[name] for name in names}
        fields["history"] = History(**fields["history"])
        return cls(**fields)


def _check_version(state: Any, source: Union[str, Path]) -> None:
    if not isinstance(state, dict) or "version" not in state:
        raise ValueError(f"{source} is not a pyro_deepgen checkpoint (version {CHECKPOINT_VERSION})")
    if state["version"] != CHECKPOINT_VERSION:
        raise ValueError(
            f"{source} is a pyro_deepgen checkpoint of format version {state['version']!r}, but this "
            f"version reads format {CHECKPOINT_VERSION}: start afresh with a new checkpoint path (or "
            "delete it), or resume it with the pyro_deepgen release that wrote it."
        )


@contextlib.contextmanager
def _deferred_signals():
    """Hold SIGINT and SIGTERM back (main thread only) until the block is left, then deliver
    them again to the handlers that were in place (Python's default SIGINT handler raises
    ``KeyboardInterrupt``; a default SIGTERM ends the process)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: List[int] = []
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, lambda signum, frame: caught.append(signum))
        except (ValueError, OSError):  # pragma: no cover - e.g. an embedded interpreter
            pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        for sig in dict.fromkeys(caught):
            signal.raise_signal(sig)


def _fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (the rename) to disk, where the OS allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def save_checkpoint(path: Union[str, Path], state: Dict[str, Any]) -> None:
    """Write ``state`` with :func:`torch.save` atomically: to a temporary file in the same
    folder, flushed to disk, then renamed over ``path`` (and the folder flushed). A crash never
    leaves a broken file, and SIGINT/SIGTERM arriving during the write are delivered only once the
    file is in place. An OS error (e.g. a full disk) is re-raised as a one-line ``OSError``
    naming ``path``; the previous checkpoint is kept and the temporary file removed."""
    path = Path(path)
    with _deferred_signals():
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "wb") as f:
                torch.save(state, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            tmp = None
            _fsync_dir(path.parent)
        except OSError as e:
            reason = "no space left on device" if e.errno == errno.ENOSPC else (e.strerror or str(e))
            raise OSError(
                e.errno, f"could not write checkpoint {path}: {reason}; the previous checkpoint (if any) is kept: "
                "free space or pass another checkpoint path"
            ) from e
        finally:
            if tmp is not None and os.path.exists(tmp):
                os.remove(tmp)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _legacy_version(path: Union[str, Path]) -> Any:
    """The ``version`` of a checkpoint written by an older release (which pickled numpy arrays),
    read with ``weights_only=True`` and numpy's array reconstruction allowed (no code runs);
    ``None`` if that fails too."""
    try:
        from numpy.core.multiarray import _reconstruct
    except ImportError:  # pragma: no cover - numpy without the old alias
        from numpy._core.multiarray import _reconstruct
    allowed = [_reconstruct, np.ndarray, np.dtype] + [type(np.dtype(t)) for t in (np.uint32, np.float64)]
    try:
        with torch.serialization.safe_globals(allowed):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None
    return state.get("version") if isinstance(state, dict) else None


def load_checkpoint(path: Union[str, Path], map_location=None) -> Dict[str, Any]:
    """Read a checkpoint written by :func:`fit` as a plain dict (:meth:`Checkpoint.from_dict`
    turns it into a :class:`Checkpoint`) with ``torch.load(weights_only=True)``: a file that would
    build any object but tensors, plain containers and primitives is refused, never run. Raises a
    one-line ``ValueError`` for a broken file, a foreign file or another format version."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, TypeError,
            AttributeError, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise ValueError(f"checkpoint {path} does not exist; pass the path of a file written by fit()") from e
        legacy = _legacy_version(path) if isinstance(e, pickle.UnpicklingError) else None
        if legacy is not None:
            _check_version({"version": legacy}, path)
        raise ValueError(
            f"could not read checkpoint {path}: it is not a pyro_deepgen checkpoint or it is corrupt, or it "
            f"holds objects that are not plain data ({_first_line(e)}). Delete it to start afresh or pass another path."
        ) from e
    _check_version(state, path)
    return state


def _rng_state() -> Dict[str, Any]:
    """Every global random state as tensors and primitives (loadable with ``weights_only=True``)."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": {"version": py_version, "state": torch.tensor(py_state, dtype=torch.int64), "gauss": py_gauss},
        "numpy": {"name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    nps = state["numpy"]
    np.random.set_state((nps["name"], nps["keys"].numpy().astype(np.uint32), nps["pos"], nps["has_gauss"],
                         nps["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _constraint_modules():
    from pyro.distributions import constraints as pyro_constraints
    return (torch.distributions.constraints, pyro_constraints)


def _constraint_to_plain(c) -> Dict[str, Any]:
    """A torch/Pyro constraint as a plain dict: ``{"singleton": name}`` for a module-level one
    such as ``constraints.positive``, else ``{"class": name, "attrs": {...}}`` (constraints inside,
    e.g. of ``independent``, likewise); :func:`_constraint_from_plain` inverts it."""
    for mod in _constraint_modules():
        for name, value in vars(mod).items():
            if value is c and not name.startswith("_"):
                return {"singleton": name}
    attrs = {}
    for k, v in vars(c).items():
        if isinstance(v, torch.distributions.constraints.Constraint):
            v = _constraint_to_plain(v)
        elif not (torch.is_tensor(v) or v is None or isinstance(v, (bool, int, float, str))):
            raise TypeError(f"cannot store the constraint {c!r} of the param store in a checkpoint (attribute {k})")
        attrs[k] = v
    return {"class": type(c).__name__, "attrs": attrs}


def _constraint_class(name: str):
    for mod in _constraint_modules():
        cls = getattr(mod, name, None)
        if isinstance(cls, type) and issubclass(cls, torch.distributions.constraints.Constraint):
            return cls
    raise ValueError(f"unknown constraint class {name!r} in a checkpoint; resume with the release that wrote it")


def _constraint_from_plain(d: Dict[str, Any]):
    if "singleton" in d:
        for mod in _constraint_modules():
            c = getattr(mod, d["singleton"], None)
            if isinstance(c, torch.distributions.constraints.Constraint):
                return c
        raise ValueError(f"unknown constraint {d['singleton']!r} in a checkpoint; "
                         "resume with the release that wrote it")
    cls = _constraint_class(d["class"])
    c = cls.__new__(cls)
    c.__dict__.update({k: _constraint_from_plain(v) if isinstance(v, dict) else v for k, v in d["attrs"].items()})
    return c


def _as_tuple(data, name: str) -> Batch:
    data = (data,) if torch.is_tensor(data) else tuple(data)
    if not data or not all(torch.is_tensor(d) for d in data):
        raise TypeError(f"{name} must be a Tensor or a tuple of Tensors")
    n = data[0].shape[0]
    if any(d.shape[0] != n for d in data):
        raise ValueError(f"all tensors in {name} must have the same length along dim 0")
    if n == 0:
        raise ValueError(f"{name} is empty")
    return data


def _modules_of(model, guide, module) -> List[torch.nn.Module]:
    found = []
    for obj in (module, getattr(model, "__self__", None), getattr(guide, "__self__", None), model):
        if isinstance(obj, torch.nn.Module) and all(obj is not m for m in found):
            found.append(obj)
    return found


def _module_param_names(modules) -> set:
    """Param-store names under which PyroModules register their own parameters."""
    names = set()
    for m in modules:
        for sub in m.modules():
            if isinstance(sub, pyro.nn.PyroModule) and sub._pyro_context.used:
                for pname, _ in sub.named_parameters(recurse=False):
                    names.add(sub._pyro_get_fullname(pname))
    return names


def _param_store_state(exclude: set) -> Dict[str, Any]:
    """The param store's state without the parameters that modules already checkpoint."""
    state = pyro.get_param_store().get_state()
    return {
        "params": {k: v for k, v in state["params"].items() if k not in exclude},
        "constraints": {k: _constraint_to_plain(v) for k, v in state["constraints"].items() if k not in exclude},
    }


def _load_param_store(state: Dict[str, Any]) -> None:
    params = {k: v.detach().clone().requires_grad_() for k, v in state["params"].items()}
    constraints = {k: _constraint_from_plain(v) for k, v in state["constraints"].items()}
    pyro.get_param_store().set_state({"params": params, "constraints": constraints})


def _snapshot(modules, param_store_state) -> Dict[str, Any]:
    return {
        "modules": [copy.deepcopy(m.state_dict()) for m in modules],
        "param_store": copy.deepcopy(param_store_state),
    }


def _restore(modules, snapshot) -> None:
    for m, s in zip(modules, snapshot["modules"]):
        m.load_state_dict(s)
    _load_param_store(snapshot["param_store"])


def _qualname(obj) -> str:
    name = getattr(obj, "__qualname__", None)
    return repr(obj) if name is None else f"{getattr(obj, '__module__', '?')}.{name}"


def _json_like(value: Any) -> Any:
    """``value`` as JSON-like data (tuples become lists, unknown objects their ``repr``)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_json_like(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_like(v) for k, v in value.items()}
    if torch.is_tensor(value) and value.numel() == 1:
        return value.item()
    return repr(value)


def _optimizer_settings(optimizer, lr: float) -> Dict[str, Any]:
    """The optimizer's class and arguments as far as ``fit``'s arguments show them (a callable
    factory ``params -> optimizer`` is known by its name only)."""
    if optimizer is None:
        return {"optimizer": _qualname(torch.optim.Adam), "lr": lr}
    if isinstance(optimizer, PyroOptim):
        settings = {"optimizer": _qualname(optimizer.pt_optim_constructor)}
        args = optimizer.pt_optim_args
        if isinstance(args, dict):
            args = dict(args)
            if "lr" in args:
                settings["lr"] = args.pop("lr")
            settings.update({f"optimizer_args.{k}": v for k, v in args.items()})
        return settings
    if isinstance(optimizer, type):
        return {"optimizer": _qualname(optimizer), "lr": lr}
    return {"optimizer": _qualname(optimizer)}


def _fingerprint(data: Batch, name: str) -> Dict[str, Any]:
    """Shape, dtype and float64 sum and sum of squares of a fixed strided subsample (at most
    about 8192 entries) of each tensor: cheap, deterministic, and different for other data."""
    settings = {}
    for i, d in enumerate(data):
        flat = d.detach().reshape(-1)
        sub = flat[::max(1, flat.numel() // 8192)].double()
        settings[f"{name}[{i}]"] = {
            "shape": list(d.shape), "dtype": str(d.dtype),
            "sum": float(f"{sub.sum().item():.10g}"), "sum_sq": float(f"{sub.pow(2).sum().item():.10g}"),
        }
    return settings


def _loss_config(loss) -> Dict[str, Any]:
    """The loss's public settings of primitive type (e.g. ``num_particles``); Pyro's guessed
    ``max_plate_nesting`` is left out, as it changes at the first step."""
    config = getattr(loss, "__dict__", {})
    return {
        f"loss_config.{k}": v for k, v in sorted(config.items())
        if not k.startswith("_") and k != "max_plate_nesting" and (v is None or isinstance(v, (bool, int, float, str)))
    }


def _settings(modules, loss, optimizer, lr, batch_size, seed, train_data, val_data, binarize, pass_num_data,
              clip_norm, patience, eval_every, run_settings) -> Dict[str, Any]:
    """The flat ``name -> JSON-like value`` settings that define a run (see :func:`fit`)."""
    settings: Dict[str, Any] = {}
    names = [type(m).__name__ for m in modules]
    for i, m in enumerate(modules):
        prefix = f"shape.{names[i]}" + (f"#{i}" if names.count(names[i]) > 1 else "")
        settings.update({f"{prefix}.{k}": list(v.shape) for k, v in m.state_dict().items() if torch.is_tensor(v)})
    store = pyro.get_param_store()
    settings.update({f"shape.param.{k}": list(store[k].shape) for k in store.keys()})
    settings.update(_optimizer_settings(optimizer, lr))
    settings.update({"batch_size": batch_size, "seed": seed, "binarize": binarize, "pass_num_data": pass_num_data,
                     "clip_norm": clip_norm, "patience": patience, "eval_every": eval_every,
                     "loss": _qualname(type(loss))})
    settings.update(_loss_config(loss))
    if train_data is not None:
        settings.update(_fingerprint(train_data, "train_data"))
    if val_data is not None:
        settings.update(_fingerprint(val_data, "val_data"))
    for k, v in (run_settings or {}).items():
        if k not in IGNORED_RUN_SETTINGS:
            settings[f"run_settings.{k}"] = v
    return {k: _json_like(v) for k, v in settings.items()}


def _safe_run_settings(run_settings: Optional[Dict[str, Any]]) -> set:
    marked = (run_settings or {}).get("overridable", ())
    return set(SAFE_OVERRIDES) | ({marked} if isinstance(marked, str) else set(marked))


def _check_overrides(resume_override: Sequence[str], run_settings: Optional[Dict[str, Any]]) -> Tuple[str, ...]:
    """Reject names in ``resume_override`` that define the run or that are unknown."""
    names = (resume_override,) if isinstance(resume_override, str) else tuple(resume_override)
    safe = _safe_run_settings(run_settings)
    for name in names:
        base = name.split(".")[0]
        if base in NEVER_OVERRIDE:
            raise ValueError(
                f"resume_override names {name!r}, which defines the run and can never be overridden; "
                "start afresh with a new checkpoint path instead"
            )
        if name != "epochs" and base not in SAFE_OVERRIDES and name not in safe:
            raise ValueError(
                f"resume_override names {name!r}, which is not a setting that may be overridden; use some of "
                f"{sorted(safe | {'epochs'})} (run_settings keys become overridable when listed in "
                "run_settings['overridable'])"
            )
    return names


_MISSING = "(none)"


def _overridden(name: str, overrides: Sequence[str]) -> bool:
    for o in overrides:
        for full in (o, f"run_settings.{o}"):
            if name == full or name.startswith(full + "."):
                return True
    return False


def _compare_settings(path, saved: Dict[str, Any], now: Dict[str, Any], overrides: Sequence[str],
                      run_settings: Optional[Dict[str, Any]]) -> List[Tuple[str, Any, Any]]:
    """The differences ``(name, saved, now)`` between the checkpoint's settings and this run's,
    all of them allowed by ``overrides``; else a ``ValueError`` listing every difference."""
    diffs = []
    for name in sorted(set(saved) | set(now)):
        a, b = saved.get(name, _MISSING), now.get(name, _MISSING)
        if name.startswith("shape.param.") and _MISSING in (a, b):
            continue  # param-store entries appear at the first step: compared only when both exist
        if a != b:
            diffs.append((name, a, b))
    refused = [d for d in diffs if not _overridden(d[0], overrides)]
    if not refused:
        return diffs
    safe = _safe_run_settings(run_settings)

    def is_safe(name: str) -> bool:
        if name.startswith("run_settings."):
            return name[len("run_settings."):].split(".")[0] in safe
        return name.split(".")[0] in SAFE_OVERRIDES

    def base(name: str) -> str:
        return name[len("run_settings."):].split(".")[0] if name.startswith("run_settings.") else name.split(".")[0]

    # a caller's setting that repeats one of fit's own with the same change is listed once
    own = {(n, repr(a), repr(b)) for n, a, b in refused if not n.startswith("run_settings.")}
    shown = [(n, a, b) for n, a, b in refused
             if not (n.startswith("run_settings.") and (base(n), repr(a), repr(b)) in own)]
    listed = "; ".join(f"{n}: {a!r} -> {b!r}" for n, a, b in shown)
    fixed = sorted({base(n) for n, _, _ in refused if not is_safe(n)})
    changeable = sorted({base(n) for n, _, _ in refused if is_safe(n)})
    parts = []
    if fixed:
        parts.append(f"{', '.join(fixed)} define{'s' if len(fixed) == 1 else ''} the run and can never be "
                     "overridden: resume with the same values")
    if changeable:
        parts.append(f"to continue with the new values of {', '.join(changeable)} pass "
                     f"resume_override={changeable} (--resume-override {','.join(changeable)} on the command line)")
    parts.append("or start afresh with a new checkpoint path (on the command line: a new --out, or --overwrite)")
    advice = "; ".join(parts)
    raise ValueError(f"cannot resume from {path}: its run had other settings: {listed}; {advice}")


@dataclasses.dataclass
class _Run:
    """The mutable state of one :func:`fit` run; :func:`_save` snapshots it as a :class:`Checkpoint`.

    The optimizer, its scheduler, the trained parameters and the modules' param-store names are
    known only after the first step (see :func:`_run_epoch`).
    """

    history: History
    epoch: int = 0  # epochs completed
    best_value: float = math.inf
    best: Optional[Dict[str, Any]] = None
    bad_evals: int = 0
    optim: Optional[torch.optim.Optimizer] = None
    scheduler: Any = None
    params: List[torch.Tensor] = dataclasses.field(default_factory=list)
    module_names: set = dataclasses.field(default_factory=set)
    overrides: List[Tuple[str, Any, Any]] = dataclasses.field(default_factory=list)

    @classmethod
    def start(cls, saved: Optional[Checkpoint]) -> "_Run":
        if saved is None:
            return cls(History())
        return cls(saved.history, saved.epoch, saved.best_value, saved.best, saved.bad_evals)


@dataclasses.dataclass(frozen=True)
class _Step:
    """What every optimizer step of a run shares: ``loss(model, guide, *batch, **kwargs,
    **step_kwargs(t))``, then clipping, the optimizer step, and the loss per data point
    ``value / per_point(b) * b`` of a minibatch of ``b`` points."""

    loss: Any
    model: Callable
    guide: Optional[Callable]
    modules: List[torch.nn.Module]
    kwargs: Dict[str, Any]
    step_kwargs: Optional[Callable[[int], Dict[str, Any]]]
    clip_norm: Optional[float]
    per_point: Callable[[int], int]
    max_loss: Optional[float] = None
    dist: Optional[_distributed.Context] = None  # the process group under torchrun
    weight: float = 1.0  # each rank's share of the global minibatch's loss (see fit)


def _resume(path: Union[str, Path], modules: List[torch.nn.Module], loss, settings: Dict[str, Any],
            overrides: Sequence[str], run_settings: Optional[Dict[str, Any]],
            dctx: Optional[_distributed.Context] = None
            ) -> Tuple[Optional[Checkpoint], List[Tuple[str, Any, Any]]]:
    """Check the checkpoint at ``path`` against this run's ``settings`` (a ``ValueError`` lists
    every difference not allowed by ``overrides``, before anything is loaded), then restore
    ``modules``, the param store, the loss's state and the random states; ``None`` if there is no
    such file. Also returns the overridden differences ``(name, saved, now)``, recorded in the
    history. The optimizer's state is loaded once it is built (see :func:`_build_optimizer`).
    Under torchrun (``dctx``) every rank reads the file that rank 0 wrote and restores its own
    random states and loss state; a checkpoint of another world size is refused."""
    if dctx is not None:
        dctx.barrier()  # rank 0 is done with the file before anyone reads it
    if not Path(path).exists():
        return None, []
    saved = Checkpoint.from_dict(load_checkpoint(path), path)
    saved_world, world = saved.settings.get("world_size", 1), 1 if dctx is None else dctx.world
    if saved_world != world:
        raise ValueError(
            f"cannot resume from {path}: it was written by a run of {saved_world} process(es) and this run has "
            f"{world}: resume with the same number of processes ("
            + ("plain python, no torchrun" if saved_world == 1 else f"torchrun --nproc_per_node {saved_world}")
            + "), as every rank's random and loss states are saved per rank; or start afresh with a new checkpoint "
            "path"
        )
    applied = _compare_settings(path, saved.settings, settings, overrides, run_settings)
    if len(saved.modules) != len(modules):
        raise ValueError(
            f"{path} holds {len(saved.modules)} modules but this run trains {len(modules)}: "
            "resume with the same model, guide and module, or start afresh with a new checkpoint path."
        )
    if saved.loss is not None and not callable(getattr(loss, "load_state_dict", None)):
        raise ValueError(f"{path} holds the state of a loss, but this run's loss {type(loss).__name__} has no "
                         "load_state_dict(); resume with the loss that wrote it")
    for m, s in zip(modules, saved.modules):
        m.load_state_dict(s)
    _load_param_store(saved.param_store)
    loss_state = saved.loss if dctx is None or saved.loss is None else saved.loss["ranks"][dctx.rank]
    if loss_state is not None:
        loss.load_state_dict(loss_state)
    _set_rng_state(saved.rng if dctx is None else saved.rng["ranks"][dctx.rank])
    for name, before, after in applied:
        saved.history.overrides.append({"epoch": saved.epoch, "name": name, "saved": before, "now": after})
    return saved, applied


def _apply_overrides(optim: torch.optim.Optimizer, scheduler, fresh: List[Dict[str, Any]],
                     overrides: List[Tuple[str, Any, Any]]) -> None:
    """Write overridden optimizer settings into the optimizer loaded from a checkpoint: a new
    ``lr`` scales the (possibly scheduled) learning rates by ``now / saved``, exactly ``now``
    where no schedule moved it; ``optimizer_args.X`` sets ``X`` in every parameter group."""
    for name, before, after in overrides:
        if name == "lr" and isinstance(before, (int, float)) and isinstance(after, (int, float)):
            ratio = after / before if before else None
            for group, new in zip(optim.param_groups, fresh):
                group["lr"] = new["lr"] if ratio is None or group["lr"] == before else group["lr"] * ratio
                if "initial_lr" in group:
                    group["initial_lr"] = new["lr"] if ratio is None else group["initial_lr"] * ratio
            if scheduler is not None and hasattr(scheduler, "base_lrs"):
                scheduler.base_lrs = [new["lr"] if ratio is None else base * ratio
                                      for base, new in zip(scheduler.base_lrs, fresh)]
        elif name.startswith("optimizer_args."):
            key = name[len("optimizer_args."):]
            for group, new in zip(optim.param_groups, fresh):
                if key in new:
                    group[key] = new[key]


def _make_optimizer(optimizer, params, lr: float) -> torch.optim.Optimizer:
    if optimizer is None:
        return torch.optim.Adam(params, lr=lr)
    if isinstance(optimizer, PyroOptim):
        args = optimizer.pt_optim_args
        if callable(args):
            raise ValueError("fit() needs a PyroOptim with a dict of arguments, not a callable")
        return optimizer.pt_optim_constructor(params, **args)
    if isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer):
        return optimizer(params, lr=lr)
    if callable(optimizer):
        return optimizer(params)
    raise TypeError(
        "optimizer must be None, a torch.optim.Optimizer class, a pyro.optim optimizer "
        "(e.g. pyro.optim.Adam({'lr': 1e-3})) or a callable params -> optimizer"
    )


def _build_optimizer(run: _Run, captured: List[torch.Tensor], modules, optimizer, lr: float,
                     lr_schedule, saved: Optional[Checkpoint]) -> None:
    """Build ``run``'s optimizer (and scheduler) over the modules' parameters and the param-store
    parameters ``captured`` at the first step, each once; on resume, load their saved states."""
    seen = set()
    run.params = []
    for p in [p for m in modules for p in m.parameters()] + captured:
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            run.params.append(p)
    if not run.params:
        raise ValueError(
            "fit() found no parameters to train: use pyro.param / PyroModule in the model "
            "or guide, or pass module=<nn.Module>"
        )
    run.optim = _make_optimizer(optimizer, run.params, lr)
    run.scheduler = lr_schedule(run.optim) if lr_schedule is not None else None
    if saved is not None:
        fresh = [{k: v for k, v in g.items() if k != "params"} for g in run.optim.param_groups]
        run.optim.load_state_dict(saved.optimizer)
        if run.scheduler is not None and saved.scheduler is not None:
            run.scheduler.load_state_dict(saved.scheduler)
        _apply_overrides(run.optim, run.scheduler, fresh, run.overrides)


def _step_loss(loss, model, guide, batch, kwargs) -> float:
    """One gradient evaluation; returns the loss value (gradients are left in ``.grad``)."""
    if hasattr(loss, "loss_and_grads"):
        return float(loss.loss_and_grads(model, guide, *batch, **kwargs))
    value = loss(model, guide, *batch, **kwargs)
    if not torch.is_tensor(value) or value.dim() != 0:
        raise TypeError("a loss callable must return a scalar Tensor")
    if value.requires_grad:
        value.backward()
    return float(value.detach())


def _first_step(run: _Run, step: _Step, batch: Batch, kwargs: Dict[str, Any]) -> Tuple[float, List[torch.Tensor]]:
    """The first gradient evaluation of a run, traced to find the param-store parameters in use
    (those not owned by a module); fills ``run.module_names``."""
    with poutine.trace(param_only=True) as capture:
        value = _step_loss(step.loss, step.model, step.guide, batch, kwargs)
    run.module_names = _module_param_names(step.modules)
    captured = [
        site["value"].unconstrained()
        for name, site in capture.trace.nodes.items()
        if name not in run.module_names
    ]
    return value, captured


@torch.no_grad()
def _eval_loss(loss, model, guide, batch, kwargs) -> float:
    if hasattr(loss, "loss"):
        return float(loss.loss(model, guide, *batch, **kwargs))
    return float(loss(model, guide, *batch, **kwargs))


def _epoch_batches(train_data: Optional[Batch], batch_size: int, binarize: Optional[str], seed: int,
                   epoch: int, dctx: Optional[_distributed.Context] = None) -> Iterable[Tuple[Batch, int]]:
    """The ``(minibatch, size)`` pairs of one epoch, drawn lazily.

    The permutation (and the dynamic binarization) come from generators seeded by ``(seed,
    epoch)``, not from the global random state, so a resumed run shuffles alike. Without data, an
    epoch is one step on the empty batch, of size 1.

    Under torchrun (``dctx``) rank ``r`` of ``W`` takes the indices of
    ``DistributedSampler(seed=seed * 1_000_003).set_epoch(epoch)``, which draws the same
    permutation and gives rank ``r`` its entries ``r, r + W, ...`` (padded by repeating the first
    ones when ``W`` does not divide the data size), in minibatches of ``batch_size / W``: the
    ranks' ``i``-th minibatches together are the ``i``-th minibatch of one process. The size
    yielded is then the global one, ``W`` times the rank's.
    """
    if train_data is None:
        return (((), 1),)
    if dctx is None:
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(train_data[0].shape[0], generator=g).to(train_data[0].device)
        size, world = batch_size, 1
    else:
        sampler = torch.utils.data.DistributedSampler(range(train_data[0].shape[0]), num_replicas=dctx.world,
                                                      rank=dctx.rank, shuffle=True, seed=seed * 1_000_003)
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler), dtype=torch.long, device=train_data[0].device)
        size, world = batch_size // dctx.world, dctx.world
    data = train_data
    if binarize == "dynamic":
        gb = torch.Generator(device=train_data[0].device).manual_seed(seed * 1_000_003 + epoch)
        data = (dynamic_binarize(train_data[0], gb),) + train_data[1:]
    # index_select: several times faster than d[idx] for a row gather on CPU
    return ((tuple(d.index_select(0, idx) for d in data), len(idx) * world) for idx in order.split(size))


def _run_epoch(run: _Run, step: _Step, batches: Iterable[Tuple[Batch, int]], build: Callable,
               epoch: int, bar, checkpoint) -> float:
    """Take one optimizer step per minibatch and return the epoch's mean loss per data point.

    The run's first step also builds the optimizer (``build(run, captured)``). A non-finite loss,
    or one beyond ``step.max_loss`` per data point, raises ``FloatingPointError`` naming the epoch
    and step (and the kept ``checkpoint``).

    Under torchrun (``step.dist``) each step's gradients and loss are summed over the ranks,
    each weighted by ``step.weight`` (:meth:`~pyro_deepgen.distributed.Context.reduce_step`), and
    an exception on one rank stops every rank, naming the rank and the error.
    """
    loss, model, guide, kwargs, step_kwargs = step.loss, step.model, step.guide, step.kwargs, step.step_kwargs
    clip_norm, per_point, history, show = step.clip_norm, step.per_point, run.history, not bar.disable
    max_loss = step.max_loss
    optim, params = run.optim, run.params
    total, seen = 0.0, 0
    dctx = step.dist
    for i, (batch, b) in enumerate(batches):
        kw = kwargs if step_kwargs is None else {**kwargs, **step_kwargs(history.steps)}
        first, error = optim is None, None
        try:
            if first:
                value, captured = _first_step(run, step, batch, kw)
                build(run, captured)
                optim, params = run.optim, run.params
            else:
                value = _step_loss(loss, model, guide, batch, kw)
        except Exception as e:
            if dctx is None:
                raise
            error, value = e, math.nan
        if dctx is not None:
            where = f"training stopped at epoch {epoch + 1}, step {i + 1}"
            if first:  # a rank that failed before building the optimizer has no gradients to send
                dctx.check(error, where)
            value = dctx.reduce_step(params, value, step.weight, error, where)
        if not math.isfinite(value) or (max_loss is not None and abs(value) > max_loss * per_point(b)):
            _diverged(value, per_point(b), max_loss, epoch, i, checkpoint)
        if clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, clip_norm)
        optim.step()
        optim.zero_grad(set_to_none=True)
        total += value / per_point(b) * b
        seen += b
        history.steps += 1
        if show:
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{total / seen:.4g}", refresh=False)
    return total / seen


def _diverged(value: float, per_point: int, max_loss: Optional[float], epoch: int, i: int, checkpoint) -> None:
    where = (f" (the last good checkpoint {checkpoint} is kept; nothing of epoch {epoch + 1} was written)"
             if checkpoint else "")
    what = (f"non-finite loss {value}" if not math.isfinite(value) else
            f"loss per data point {value / per_point:.4g} beyond max_loss={max_loss:g}")
    raise FloatingPointError(f"{what} at epoch {epoch + 1}, step {i + 1}{where}; try a smaller lr or clip_norm")


def _sync_start(dctx: _distributed.Context, step: _Step, train_data: Optional[Batch], batch_size: int,
                seed: int) -> None:
    """Give every rank rank 0's initial parameters before the first step of a fresh run.

    Parameters that ``pyro.param`` creates lazily are created first, by one evaluation of the
    loss without gradients under the run seed (the same on every rank), with every random state
    restored afterwards; this is done for losses with a ``loss`` method and no persistent state
    (Pyro's ELBOs). Then the modules' parameters and buffers and every param-store entry are
    broadcast from rank 0, as DDP does when it wraps a module."""
    loss = step.loss
    if callable(getattr(loss, "loss", None)) and not callable(getattr(loss, "state_dict", None)):
        batch = () if train_data is None else tuple(d[:max(1, batch_size // dctx.world)] for d in train_data)
        kw = step.kwargs if step.step_kwargs is None else {**step.kwargs, **step.step_kwargs(0)}
        state = _rng_state()
        pyro.set_rng_seed(seed)
        try:
            _eval_loss(loss, step.model, step.guide, batch, kw)
        finally:
            _set_rng_state(state)
    store = pyro.get_param_store()
    tensors = [t for m in step.modules for t in m.state_dict(keep_vars=True).values() if torch.is_tensor(t)]
    tensors += [store._params[k] for k in sorted(store.keys())]
    dctx.broadcast_tensors(tensors)


def _validate(loss, model, guide, val_data, eval_fn, batch_size, kwargs, denominator) -> float:
    """``eval_fn(model, guide, *val_data)``, or else the loss per data point over minibatches of
    ``val_data`` in order (no gradients)."""
    if eval_fn is not None:
        return float(eval_fn(model, guide, *val_data))
    n = val_data[0].shape[0]
    total = 0.0
    for start in range(0, n, batch_size):
        batch = tuple(d[start:start + batch_size] for d in val_data)
        b = batch[0].shape[0]
        total += _eval_loss(loss, model, guide, batch, kwargs) / denominator(b) * b
    return total / n


def _track_best(run: _Run, value: float, epoch: int, modules, patience: Optional[int]) -> bool:
    """Record the validation ``value`` after ``epoch`` epochs, snapshot the parameters if it is the
    best (lowest) so far, and return whether ``patience`` evaluations passed without improvement."""
    run.history.val.append((epoch, value))
    if value < run.best_value:
        run.best_value = value
        run.best = _snapshot(modules, _param_store_state(run.module_names))
        run.history.best_epoch = epoch
        run.bad_evals = 0
        return False
    run.bad_evals += 1
    return patience is not None and run.bad_evals >= patience


def _save(path: Union[str, Path], run: _Run, modules, seed: int, settings: Dict[str, Any], loss,
          dctx: Optional[_distributed.Context] = None) -> None:
    """Write the run after ``run.epoch`` epochs as a :class:`Checkpoint` (atomically), with the
    loss's ``state_dict()`` where it has one.

    Under torchrun (``dctx``) every rank sends its random states and loss state to rank 0, which
    writes them as ``rng["ranks"]`` (besides its own) and ``loss = {"ranks": [...]}``; an error
    while writing stops every rank."""
    loss_state = loss.state_dict() if callable(getattr(loss, "state_dict", None)) else None
    rng = _rng_state()
    if dctx is not None:
        loss_states, rngs = zip(*dctx.gather((loss_state, rng)))
        loss_state = None if all(s is None for s in loss_states) else {"ranks": list(loss_states)}
        rng = {**rngs[0], "ranks": list(rngs)}
        dctx.on_main(lambda: _write(path, run, modules, seed, settings, loss_state, rng),
                     f"writing the checkpoint {path}")
        return
    _write(path, run, modules, seed, settings, loss_state, rng)


def _write(path, run: _Run, modules, seed: int, settings: Dict[str, Any], loss_state, rng) -> None:
    save_checkpoint(
        path,
        Checkpoint(
            version=CHECKPOINT_VERSION,
            epoch=run.epoch,
            modules=[m.state_dict() for m in modules],
            param_store=_param_store_state(run.module_names),
            optimizer=run.optim.state_dict(),
            scheduler=run.scheduler.state_dict() if run.scheduler is not None else None,
            rng=rng,
            history=run.history,
            best_value=run.best_value,
            best=run.best,
            bad_evals=run.bad_evals,
            seed=seed,
            settings=settings,
            loss=loss_state,
        ).to_dict(),
    )


def _check_arguments(train_data, val_data, epochs, batch_size, eval_every, patience, binarize,
                     pass_num_data, checkpoint, resume, step_kwargs, max_loss,
                     run_settings) -> Tuple[Optional[Batch], Optional[Batch]]:
    """Reject bad arguments early (NaN or infinite data included, once per call); return the data
    as tuples of Tensors (or ``None``)."""
    if max_loss is not None and not (isinstance(max_loss, (int, float)) and max_loss > 0):
        raise ValueError(f"max_loss must be a positive number or None, got {max_loss!r}")
    if run_settings is not None and not isinstance(run_settings, dict):
        raise TypeError(f"run_settings must be a dict of JSON-like values or None, got {type(run_settings).__name__}")
    if train_data is not None:
        train_data = _as_tuple(train_data, "train_data")
        for i, d in enumerate(train_data):
            check_finite(d, f"train_data[{i}]")
    else:
        for name, value in (("binarize", binarize), ("pass_num_data", pass_num_data)):
            if value:
                raise ValueError(f"{name}={value!r} needs train_data; with train_data=None the loss takes no data")
    if val_data is not None:
        val_data = _as_tuple(val_data, "val_data")
        for i, d in enumerate(val_data):
            check_finite(d, f"val_data[{i}]")
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("eval_every", eval_every)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if patience is not None and (not isinstance(patience, int) or patience < 1):
        raise ValueError(f"patience must be a positive integer or None, got {patience!r}")
    if binarize not in BINARIZE_CHOICES:
        raise ValueError(f"binarize={binarize!r}; use one of {BINARIZE_CHOICES}")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint=<path>")
    if step_kwargs is not None and not callable(step_kwargs):
        raise TypeError(f"step_kwargs must be a callable step -> dict of keyword arguments, got {step_kwargs!r}")
    return train_data, val_data


def fit(
    model: Callable,
    guide: Optional[Callable],
    train_data: Optional[Data],
    *,
    loss: Any = None,
    module: Optional[torch.nn.Module] = None,
    optimizer: Any = None,
    lr: float = 1e-3,
    epochs: int = 10,
    batch_size: int = 100,
    val_data: Optional[Data] = None,
    eval_every: int = 1,
    eval_fn: Optional[Callable[..., float]] = None,
    patience: Optional[int] = None,
    restore_best: bool = True,
    lr_schedule: Optional[Callable[[torch.optim.Optimizer], Any]] = None,
    clip_norm: Optional[float] = None,
    checkpoint: Union[None, str, Path] = None,
    resume: bool = False,
    seed: int = 0,
    binarize: Optional[str] = None,
    pass_num_data: bool = False,
    progress: bool = True,
    callback: Optional[Callable[[int, History], None]] = None,
    step_kwargs: Optional[Callable[[int], Dict[str, Any]]] = None,
    run_settings: Optional[Dict[str, Any]] = None,
    resume_override: Sequence[str] = (),
    max_loss: Optional[float] = None,
) -> History:
    r"""Train ``model``/``guide`` on ``train_data`` by stochastic gradient descent on ``loss``.

    :param model: a Pyro model (or any object the loss understands, e.g. an RBM).
    :param guide: a Pyro guide, or ``None`` for losses that need none.
    :param train_data: a Tensor or a tuple of Tensors with a common leading dimension; each step
        passes a minibatch ``loss(model, guide, *batch)``. Data stay on their device. ``None``:
        the loss takes no data (e.g. fitting a flow to an unnormalized density); each epoch is
        then one step ``loss(model, guide, **kwargs)``, ``history.loss[e]`` is its value,
        ``batch_size`` applies only to ``val_data``, and ``binarize`` / ``pass_num_data`` are
        errors.
    :param loss: a Pyro ELBO (default :class:`~pyro.infer.Trace_ELBO`), whose
        ``loss_and_grads`` is used, or a callable returning a scalar Tensor to minimize.
    :param module: an extra ``nn.Module`` to train and checkpoint. Modules that ``model`` and
        ``guide`` are bound methods of are included automatically.
    :param optimizer: ``None`` (Adam), a ``torch.optim.Optimizer`` class (built with ``lr``), a
        ``pyro.optim`` optimizer such as ``pyro.optim.Adam({"lr": 1e-3})``, or a callable
        ``params -> optimizer``.
    :param int epochs: number of passes over the data.
    :param int batch_size: minibatch size; the data are shuffled every epoch.
    :param val_data: validation data, evaluated every ``eval_every`` epochs by ``eval_fn(model,
        guide, *val_data) -> float`` (lower is better; default: the loss per data point).
    :param int patience: stop after this many evaluations without improvement (early stopping);
        with ``restore_best`` the best parameters are restored at the end.
    :param lr_schedule: ``optimizer -> scheduler``, stepped once per epoch.
    :param float clip_norm: clip the global gradient norm to this value.
    :param checkpoint: file written atomically after every epoch (a :class:`Checkpoint`: modules,
        param store, optimizer, scheduler, RNG states and history).
    :param bool resume: continue from ``checkpoint`` if it exists; the resumed run follows the
        same trajectory as an uninterrupted one. The checkpoint's settings (module and param-store
        shapes, optimizer and its arguments, ``batch_size``, ``seed``, a fingerprint of
        ``train_data``/``val_data``, ``binarize``, ``pass_num_data``, the loss's class and public
        settings, ``clip_norm``, ``patience``, ``eval_every`` and ``run_settings``) are compared
        with this call's first; any difference is a ``ValueError`` listing each as ``name: saved
        -> now``, before any state is loaded. ``epochs`` may differ (that is how a run is
        extended). A loss with ``state_dict()``/``load_state_dict()`` has its state saved and
        restored.
    :param run_settings: the caller's own settings that define the run (JSON-like values, e.g. a
        command's configuration), compared on resume as ``run_settings.<key>``; the keys in
        :data:`IGNORED_RUN_SETTINGS` are not compared, and ``run_settings["overridable"]`` lists
        keys that ``resume_override`` may name.
    :param resume_override: settings a resumed run may change: some of :data:`SAFE_OVERRIDES`
        (``"optimizer_args"`` or ``"optimizer_args.<name>"`` for a ``pyro.optim`` optimizer's
        arguments) and the overridable ``run_settings`` keys. A new ``lr`` scales the saved
        (possibly scheduled) learning rates by ``now / saved``; the changes are recorded in
        ``History.overrides``. The settings in :data:`NEVER_OVERRIDE` cannot be overridden.
    :param float max_loss: stop with ``FloatingPointError`` (naming epoch and step; the last
        good checkpoint is kept and nothing of the failed epoch is written) when a step's loss
        per data point exceeds this in absolute value; a non-finite loss always stops.
    :param int seed: seeds Pyro, torch, numpy and the shuffling.
    :param str binarize: ``"dynamic"`` draws a fresh Bernoulli binarization of the first data
        tensor every epoch (Burda et al. 2016); ``None`` uses the data as given.
    :param bool pass_num_data: call ``loss(model, guide, *batch, num_data=N)`` so that the
        data plate scales minibatch terms by ``N / batch_size``.
    :param callback: called as ``callback(epoch, history)`` after every epoch.
    :param step_kwargs: ``t -> dict``, called before every optimizer step with its 0-based global
        index ``t`` (``history.steps`` before the step; a resumed run continues the count); the
        dict is merged into (and overrides) the keyword arguments of that step's loss call.
        Validation is not affected. For example an annealed inverse temperature
        :math:`\beta_t = \min(1, 0.01 + t/1000)` for a model taking ``beta``:
        ``step_kwargs=lambda t: {"beta": min(1.0, 0.01 + t / 1000)}``.
    :returns: a :class:`History`. A non-finite loss raises ``FloatingPointError`` naming the epoch
        and step; the last good checkpoint is kept. NaN or infinite data raise a ``ValueError``
        naming the tensor (e.g. ``train_data[0]``) before training.

    **Under torchrun** (a started :mod:`torch.distributed` group of ``W`` > 1 processes, see
    :mod:`pyro_deepgen.distributed`) the same call trains data-parallel: ``batch_size`` is the
    global minibatch (a multiple of ``W``), each rank takes its ``batch_size / W`` points from
    :class:`~torch.utils.data.DistributedSampler`, gradients and loss are summed over the ranks
    after every step (a rank's loss weighted ``1 / W`` with ``pass_num_data`` or without data,
    whose losses estimate the whole objective; ``1`` otherwise, a sum over its points), rank 0's
    initial parameters are broadcast, rank ``r`` is seeded from ``(seed, r)``, rank 0 validates,
    shows progress and writes the checkpoint (with every rank's random and loss states), and an
    error on one rank stops all. ``callback`` runs on every rank. A checkpoint resumes only with
    the same ``W``.
    """
    train_data, val_data = _check_arguments(train_data, val_data, epochs, batch_size, eval_every, patience,
                                            binarize, pass_num_data, checkpoint, resume, step_kwargs, max_loss,
                                            run_settings)
    overrides = _check_overrides(resume_override, run_settings)
    if loss is None:
        loss = pyro.infer.Trace_ELBO()
    dctx = _distributed.Context() if _distributed.world_size() > 1 else None
    if dctx is not None and batch_size % dctx.world:
        raise ValueError(f"batch_size={batch_size} is the global minibatch, split evenly over the {dctx.world} "
                         f"processes: pass a multiple of {dctx.world}")
    modules = _modules_of(model, guide, module)
    settings = _settings(modules, loss, optimizer, lr, batch_size, seed, train_data, val_data, binarize,
                         pass_num_data, clip_norm, patience, eval_every, run_settings) if checkpoint else {}
    if dctx is not None and checkpoint:
        settings["world_size"] = dctx.world
    saved, applied = (_resume(checkpoint, modules, loss, settings, overrides, run_settings, dctx) if resume
                      else (None, []))
    if saved is None:
        pyro.set_rng_seed(seed if dctx is None else _distributed.rank_seed(seed, dctx.rank))
    run = _Run.start(saved)
    run.overrides = applied
    history = run.history

    n = train_data[0].shape[0] if train_data is not None else 1
    steps_per_epoch = math.ceil(n / batch_size) if train_data is not None else 1  # one step without data
    kwargs = {"num_data": n} if pass_num_data else {}
    denominator = (lambda b: n) if pass_num_data else (lambda b: b)
    # a rank's loss is a sum over its points (its piece of the global minibatch's sum: weight 1), or, scaled
    # by num_data / (rank's points) or without data, an estimate of the whole objective (weight 1 / ranks)
    weight = 1.0 if dctx is None or (train_data is not None and not pass_num_data) else 1.0 / dctx.world
    step = _Step(loss, model, guide, modules, kwargs, step_kwargs, clip_norm, denominator, max_loss, dctx, weight)
    if dctx is not None:
        if train_data is not None:
            steps_per_epoch = math.ceil(math.ceil(n / dctx.world) / (batch_size // dctx.world))
        if saved is None:
            _sync_start(dctx, step, train_data, batch_size, seed)
    main = dctx is None or dctx.rank == 0

    def build(run: _Run, captured: List[torch.Tensor]) -> None:
        _build_optimizer(run, captured, modules, optimizer, lr, lr_schedule, saved)

    t0 = time.time() - history.seconds
    bar = tqdm(total=epochs * steps_per_epoch, initial=run.epoch * steps_per_epoch, disable=not (progress and main),
               desc="fit", dynamic_ncols=True)
    try:
        for epoch in range(run.epoch, epochs):
            batches = _epoch_batches(train_data, batch_size, binarize, seed, epoch, dctx)
            history.loss.append(_run_epoch(run, step, batches, build, epoch, bar, checkpoint))
            history.lr.append(float(run.optim.param_groups[0]["lr"]))
            if run.scheduler is not None:
                run.scheduler.step()
            run.epoch = history.epochs = epoch + 1
            stop = False
            if val_data is not None and run.epoch % eval_every == 0:
                val = (_validate(loss, model, guide, val_data, eval_fn, batch_size, kwargs, denominator)
                       if dctx is None else
                       dctx.on_main(lambda: _validate(loss, model, guide, val_data, eval_fn, batch_size, kwargs,
                                                      denominator), "validating"))
                stop = _track_best(run, val, run.epoch, modules, patience)
                bar.set_postfix(epoch=run.epoch, loss=f"{history.loss[-1]:.4g}", val=f"{val:.4g}")
            history.stopped_early = stop
            history.seconds = time.time() - t0
            if checkpoint is not None:
                _save(checkpoint, run, modules, seed, settings, loss, dctx)
            if callback is not None:
                callback(run.epoch, history)
            if stop:
                break
    finally:
        bar.close()
    if restore_best and run.best is not None:
        _restore(modules, run.best)
    history.seconds = time.time() - t0
    return history

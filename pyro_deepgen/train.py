r"""The one training loop of the package.

:func:`fit` trains any Pyro model/guide pair with any Pyro ELBO (through its ``loss_and_grads``)
or any loss callable ``loss(model, guide, *batch) -> Tensor`` (through ``backward``), such as the
contrastive-divergence surrogate of an RBM or a diffusion model's training loss. It handles
minibatches and epochs, a progress bar, validation, early stopping, a learning-rate schedule,
gradient clipping, dynamic binarization, per-step keyword arguments (e.g. an annealed inverse
temperature), and atomic checkpoints from which a resumed run continues the very same trajectory.

:func:`fit` reads as a short sequence of parts, each a private helper of this module:

- :func:`_resume` restores modules, param store and random states from a :class:`Checkpoint`;
- :func:`_epoch_batches` shuffles (and, if asked, binarizes) the data of one epoch;
- :func:`_run_epoch` takes the optimizer steps of one epoch; its first step records the
  parameters in use and :func:`_build_optimizer` builds the optimizer over them;
- :func:`_validate` and :func:`_track_best` evaluate, keep the best parameters, and decide on
  early stopping;
- :func:`_save` writes a :class:`Checkpoint` after every epoch.
"""
import copy
import dataclasses
import math
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.optim import PyroOptim
from tqdm.auto import tqdm

from .data.binarization import dynamic_binarize

CHECKPOINT_VERSION = 1
BINARIZE_CHOICES = (None, "dynamic")

Data = Union[torch.Tensor, Sequence[torch.Tensor]]
Batch = Tuple[torch.Tensor, ...]


@dataclasses.dataclass
class History:
    """What :func:`fit` returns; ``dataclasses.asdict(history)`` gives plain data.

    ``loss[e]`` is the mean training loss per data point in epoch ``e`` (for an ELBO: the negative
    ELBO per data point; with ``train_data=None``, the value of the epoch's one step); ``val``
    holds ``(epoch, value)`` pairs from the validation function.
    """

    loss: List[float] = dataclasses.field(default_factory=list)
    val: List[Tuple[int, float]] = dataclasses.field(default_factory=list)
    lr: List[float] = dataclasses.field(default_factory=list)
    epochs: int = 0
    steps: int = 0
    seconds: float = 0.0
    best_epoch: Optional[int] = None
    stopped_early: bool = False

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Checkpoint:
    """Everything a resumed :func:`fit` needs to continue the very same trajectory.

    On disk it is the plain dict :meth:`to_dict` (written by :func:`save_checkpoint`, read by
    :func:`load_checkpoint`), so files need no pyro_deepgen class to unpickle. ``version`` is the
    format version, :data:`CHECKPOINT_VERSION`; a file of another version is refused with a clear
    error.

    :ivar epoch: epochs completed.
    :ivar modules: the ``state_dict`` of each trained module, in :func:`fit`'s order.
    :ivar param_store: the Pyro param store without the modules' own parameters.
    :ivar optimizer: the optimizer's ``state_dict``; ``scheduler`` likewise, or ``None``.
    :ivar rng: the torch, Python, numpy (and CUDA) random states.
    :ivar history: the :class:`History` so far.
    :ivar best_value: the best validation value (``inf`` before any); ``best`` the snapshot of the
        parameters that reached it (``None`` before any); ``bad_evals`` the evaluations since.
    :ivar seed: the run's seed.
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
            f"version reads format {CHECKPOINT_VERSION}: resume it with the pyro_deepgen that wrote it, "
            "or delete it to start afresh."
        )


def save_checkpoint(path: Union[str, Path], state: Dict[str, Any]) -> None:
    """Write ``state`` with :func:`torch.save` atomically: to a temporary file in the same
    folder, flushed to disk, then renamed over ``path``. A crash never leaves a broken file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_checkpoint(path: Union[str, Path], map_location=None) -> Dict[str, Any]:
    """Read a checkpoint written by :func:`fit` as a plain dict (:meth:`Checkpoint.from_dict`
    turns it into a :class:`Checkpoint`); raises a clear error for a broken file or another
    format version."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:
        raise ValueError(
            f"could not read checkpoint {path}: {e}. Delete it to start afresh or pass another path."
        ) from e
    _check_version(state, path)
    return state


def _rng_state() -> Dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
        "constraints": {k: v for k, v in state["constraints"].items() if k not in exclude},
    }


def _load_param_store(state: Dict[str, Any]) -> None:
    params = {k: v.detach().clone().requires_grad_() for k, v in state["params"].items()}
    pyro.get_param_store().set_state({"params": params, "constraints": dict(state["constraints"])})


def _snapshot(modules, param_store_state) -> Dict[str, Any]:
    return {
        "modules": [copy.deepcopy(m.state_dict()) for m in modules],
        "param_store": copy.deepcopy(param_store_state),
    }


def _restore(modules, snapshot) -> None:
    for m, s in zip(modules, snapshot["modules"]):
        m.load_state_dict(s)
    _load_param_store(snapshot["param_store"])


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


def _resume(path: Union[str, Path], modules: List[torch.nn.Module]) -> Optional[Checkpoint]:
    """Restore ``modules``, the param store and the random states from the checkpoint at ``path``;
    ``None`` if there is no such file. The optimizer's state is loaded once it is built."""
    if not Path(path).exists():
        return None
    saved = Checkpoint.from_dict(load_checkpoint(path), path)
    if len(saved.modules) != len(modules):
        raise ValueError(
            f"{path} holds {len(saved.modules)} modules but this run trains {len(modules)}: "
            "resume with the same model, guide and module, or delete it to start afresh."
        )
    for m, s in zip(modules, saved.modules):
        m.load_state_dict(s)
    _load_param_store(saved.param_store)
    _set_rng_state(saved.rng)
    return saved


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
        run.optim.load_state_dict(saved.optimizer)
        if run.scheduler is not None and saved.scheduler is not None:
            run.scheduler.load_state_dict(saved.scheduler)


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
                   epoch: int) -> Iterable[Tuple[Batch, int]]:
    """The ``(minibatch, size)`` pairs of one epoch, drawn lazily.

    The permutation (and the dynamic binarization) come from generators seeded by ``(seed,
    epoch)``, not from the global random state, so a resumed run shuffles alike. Without data, an
    epoch is one step on the empty batch, of size 1.
    """
    if train_data is None:
        return (((), 1),)
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(train_data[0].shape[0], generator=g).to(train_data[0].device)
    data = train_data
    if binarize == "dynamic":
        gb = torch.Generator(device=train_data[0].device).manual_seed(seed * 1_000_003 + epoch)
        data = (dynamic_binarize(train_data[0], gb),) + train_data[1:]
    # index_select: several times faster than d[idx] for a row gather on CPU
    return ((tuple(d.index_select(0, idx) for d in data), len(idx)) for idx in order.split(batch_size))


def _run_epoch(run: _Run, step: _Step, batches: Iterable[Tuple[Batch, int]], build: Callable,
               epoch: int, bar, checkpoint) -> float:
    """Take one optimizer step per minibatch and return the epoch's mean loss per data point.

    The run's first step also builds the optimizer (``build(run, captured)``). A non-finite loss
    raises ``FloatingPointError`` naming the epoch and step (and the kept ``checkpoint``).
    """
    loss, model, guide, kwargs, step_kwargs = step.loss, step.model, step.guide, step.kwargs, step.step_kwargs
    clip_norm, per_point, history, show = step.clip_norm, step.per_point, run.history, not bar.disable
    optim, params = run.optim, run.params
    total, seen = 0.0, 0
    for i, (batch, b) in enumerate(batches):
        kw = kwargs if step_kwargs is None else {**kwargs, **step_kwargs(history.steps)}
        if optim is None:
            value, captured = _first_step(run, step, batch, kw)
            build(run, captured)
            optim, params = run.optim, run.params
        else:
            value = _step_loss(loss, model, guide, batch, kw)
        if not math.isfinite(value):
            where = f" (the last good checkpoint {checkpoint} is kept)" if checkpoint else ""
            raise FloatingPointError(
                f"non-finite loss {value} at epoch {epoch + 1}, step {i + 1}{where}; "
                "try a smaller lr or clip_norm"
            )
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


def _save(path: Union[str, Path], run: _Run, modules, seed: int) -> None:
    """Write the run after ``run.epoch`` epochs as a :class:`Checkpoint` (atomically)."""
    save_checkpoint(
        path,
        Checkpoint(
            version=CHECKPOINT_VERSION,
            epoch=run.epoch,
            modules=[m.state_dict() for m in modules],
            param_store=_param_store_state(run.module_names),
            optimizer=run.optim.state_dict(),
            scheduler=run.scheduler.state_dict() if run.scheduler is not None else None,
            rng=_rng_state(),
            history=run.history,
            best_value=run.best_value,
            best=run.best,
            bad_evals=run.bad_evals,
            seed=seed,
        ).to_dict(),
    )


def _check_arguments(train_data, val_data, epochs, batch_size, eval_every, patience, binarize,
                     pass_num_data, checkpoint, resume, step_kwargs) -> Tuple[Optional[Batch], Optional[Batch]]:
    """Reject bad arguments early; return the data as tuples of Tensors (or ``None``)."""
    if train_data is not None:
        train_data = _as_tuple(train_data, "train_data")
    else:
        for name, value in (("binarize", binarize), ("pass_num_data", pass_num_data)):
            if value:
                raise ValueError(f"{name}={value!r} needs train_data; with train_data=None the loss takes no data")
    if val_data is not None:
        val_data = _as_tuple(val_data, "val_data")
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
        same trajectory as an uninterrupted one.
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
        and step; the last good checkpoint is kept.
    """
    train_data, val_data = _check_arguments(train_data, val_data, epochs, batch_size, eval_every, patience,
                                            binarize, pass_num_data, checkpoint, resume, step_kwargs)
    if loss is None:
        loss = pyro.infer.Trace_ELBO()
    modules = _modules_of(model, guide, module)
    saved = _resume(checkpoint, modules) if resume else None
    if saved is None:
        pyro.set_rng_seed(seed)
    run = _Run.start(saved)
    history = run.history

    n = train_data[0].shape[0] if train_data is not None else 1
    steps_per_epoch = math.ceil(n / batch_size) if train_data is not None else 1  # one step without data
    kwargs = {"num_data": n} if pass_num_data else {}
    denominator = (lambda b: n) if pass_num_data else (lambda b: b)
    step = _Step(loss, model, guide, modules, kwargs, step_kwargs, clip_norm, denominator)

    def build(run: _Run, captured: List[torch.Tensor]) -> None:
        _build_optimizer(run, captured, modules, optimizer, lr, lr_schedule, saved)

    t0 = time.time() - history.seconds
    bar = tqdm(total=epochs * steps_per_epoch, initial=run.epoch * steps_per_epoch, disable=not progress,
               desc="fit", dynamic_ncols=True)
    try:
        for epoch in range(run.epoch, epochs):
            batches = _epoch_batches(train_data, batch_size, binarize, seed, epoch)
            history.loss.append(_run_epoch(run, step, batches, build, epoch, bar, checkpoint))
            history.lr.append(float(run.optim.param_groups[0]["lr"]))
            if run.scheduler is not None:
                run.scheduler.step()
            run.epoch = history.epochs = epoch + 1
            stop = False
            if val_data is not None and run.epoch % eval_every == 0:
                val = _validate(loss, model, guide, val_data, eval_fn, batch_size, kwargs, denominator)
                stop = _track_best(run, val, run.epoch, modules, patience)
                bar.set_postfix(epoch=run.epoch, loss=f"{history.loss[-1]:.4g}", val=f"{val:.4g}")
            history.stopped_early = stop
            history.seconds = time.time() - t0
            if checkpoint is not None:
                _save(checkpoint, run, modules, seed)
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

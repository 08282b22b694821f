"""The one training loop of the package.

:func:`fit` trains any Pyro model/guide pair with any Pyro ELBO (through its ``loss_and_grads``)
or any loss callable ``loss(model, guide, *batch) -> Tensor`` (through ``backward``), such as the
contrastive-divergence surrogate of an RBM or a diffusion model's training loss. It handles
minibatches and epochs, a progress bar, validation, early stopping, a learning-rate schedule,
gradient clipping, dynamic binarization, and atomic checkpoints from which a resumed run
continues the very same trajectory.
"""
import copy
import dataclasses
import math
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.optim import PyroOptim
from tqdm.auto import tqdm

from .data.binarization import dynamic_binarize

CHECKPOINT_VERSION = 1
BINARIZE_CHOICES = (None, "dynamic")


@dataclasses.dataclass
class History:
    """What :func:`fit` returns; ``dataclasses.asdict(history)`` gives plain data.

    ``loss[e]`` is the mean training loss per data point in epoch ``e`` (for an ELBO: the negative
    ELBO per data point); ``val`` holds ``(epoch, value)`` pairs from the validation function.
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
    """Read a checkpoint written by :func:`fit`; raises a clear error for a broken file."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:
        raise ValueError(
            f"could not read checkpoint {path}: {e}. Delete it to start afresh or pass another path."
        ) from e
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path} is not a pyro_deepgen checkpoint (version {CHECKPOINT_VERSION})")
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


def _as_tuple(data, name: str) -> Tuple[torch.Tensor, ...]:
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


@torch.no_grad()
def _eval_loss(loss, model, guide, batch, kwargs) -> float:
    if hasattr(loss, "loss"):
        return float(loss.loss(model, guide, *batch, **kwargs))
    return float(loss(model, guide, *batch, **kwargs))


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


def fit(
    model: Callable,
    guide: Optional[Callable],
    train_data: Union[torch.Tensor, Sequence[torch.Tensor]],
    *,
    loss: Any = None,
    module: Optional[torch.nn.Module] = None,
    optimizer: Any = None,
    lr: float = 1e-3,
    epochs: int = 10,
    batch_size: int = 100,
    val_data: Union[None, torch.Tensor, Sequence[torch.Tensor]] = None,
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
) -> History:
    r"""Train ``model``/``guide`` on ``train_data`` by stochastic gradient descent on ``loss``.

    :param model: a Pyro model (or any object the loss understands, e.g. an RBM).
    :param guide: a Pyro guide, or ``None`` for losses that need none.
    :param train_data: a Tensor or a tuple of Tensors with a common leading dimension; each step
        passes a minibatch ``loss(model, guide, *batch)``. Data stay on their device.
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
    :param checkpoint: file written atomically after every epoch (modules, param store,
        optimizer, scheduler, RNG states and history).
    :param bool resume: continue from ``checkpoint`` if it exists; the resumed run follows the
        same trajectory as an uninterrupted one.
    :param int seed: seeds Pyro, torch, numpy and the shuffling.
    :param str binarize: ``"dynamic"`` draws a fresh Bernoulli binarization of the first data
        tensor every epoch (Burda et al. 2016); ``None`` uses the data as given.
    :param bool pass_num_data: call ``loss(model, guide, *batch, num_data=N)`` so that the
        data plate scales minibatch terms by ``N / batch_size``.
    :param callback: called as ``callback(epoch, history)`` after every epoch.
    :returns: a :class:`History`. A non-finite loss raises ``FloatingPointError`` naming the epoch
        and step; the last good checkpoint is kept.
    """
    train_data = _as_tuple(train_data, "train_data")
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
    if loss is None:
        loss = pyro.infer.Trace_ELBO()

    modules = _modules_of(model, guide, module)
    module_names: set = set()  # filled after the first step, once PyroModules know their names
    n = train_data[0].shape[0]
    steps_per_epoch = math.ceil(n / batch_size)
    history = History()
    start_epoch = 0
    best = (math.inf, None)  # (value, snapshot)
    bad_evals = 0
    saved = None
    if resume and Path(checkpoint).exists():
        saved = load_checkpoint(checkpoint)
        for m, s in zip(modules, saved["modules"]):
            m.load_state_dict(s)
        _load_param_store(saved["param_store"])
        history = History(**saved["history"])
        start_epoch = saved["epoch"]
        best = (saved["best_value"], saved["best"])
        bad_evals = saved["bad_evals"]
        _set_rng_state(saved["rng"])
    else:
        pyro.set_rng_seed(seed)

    optim = scheduler = None
    params: List[torch.Tensor] = []

    def build_optimizer(captured):
        nonlocal optim, scheduler, params
        seen = set()
        params = []
        for p in [p for m in modules for p in m.parameters()] + captured:
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                params.append(p)
        if not params:
            raise ValueError(
                "fit() found no parameters to train: use pyro.param / PyroModule in the model "
                "or guide, or pass module=<nn.Module>"
            )
        optim = _make_optimizer(optimizer, params, lr)
        scheduler = lr_schedule(optim) if lr_schedule is not None else None
        if saved is not None:
            optim.load_state_dict(saved["optimizer"])
            if scheduler is not None and saved["scheduler"] is not None:
                scheduler.load_state_dict(saved["scheduler"])

    kwargs = {"num_data": n} if pass_num_data else {}
    denominator = (lambda b: n) if pass_num_data else (lambda b: b)
    t0 = time.time() - history.seconds
    bar = tqdm(
        total=epochs * steps_per_epoch,
        initial=start_epoch * steps_per_epoch,
        disable=not progress,
        desc="fit",
        dynamic_ncols=True,
    )
    try:
        for epoch in range(start_epoch, epochs):
            g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            order = torch.randperm(n, generator=g).to(train_data[0].device)
            epoch_data = train_data
            if binarize == "dynamic":
                gb = torch.Generator(device=train_data[0].device).manual_seed(seed * 1_000_003 + epoch)
                epoch_data = (dynamic_binarize(train_data[0], gb),) + train_data[1:]
            total, seen = 0.0, 0
            for step in range(steps_per_epoch):
                idx = order[step * batch_size:(step + 1) * batch_size]
                # index_select: several times faster than d[idx] for a row gather on CPU
                batch = tuple(d.index_select(0, idx) for d in epoch_data)
                if optim is None:
                    with poutine.trace(param_only=True) as capture:
                        value = _step_loss(loss, model, guide, batch, kwargs)
                    module_names = _module_param_names(modules)
                    captured = [
                        site["value"].unconstrained()
                        for name, site in capture.trace.nodes.items()
                        if name not in module_names
                    ]
                    build_optimizer(captured)
                else:
                    value = _step_loss(loss, model, guide, batch, kwargs)
                if not math.isfinite(value):
                    where = f" (the last good checkpoint {checkpoint} is kept)" if checkpoint else ""
                    raise FloatingPointError(
                        f"non-finite loss {value} at epoch {epoch + 1}, step {step + 1}{where}; "
                        "try a smaller lr or clip_norm"
                    )
                if clip_norm is not None:
                    torch.nn.utils.clip_grad_norm_(params, clip_norm)
                optim.step()
                optim.zero_grad(set_to_none=True)
                b = len(idx)
                total += value / denominator(b) * b
                seen += b
                history.steps += 1
                if progress:
                    bar.update(1)
                    bar.set_postfix(epoch=epoch + 1, loss=f"{total / seen:.4g}", refresh=False)
            history.loss.append(total / seen)
            history.lr.append(float(optim.param_groups[0]["lr"]))
            if scheduler is not None:
                scheduler.step()
            history.epochs = epoch + 1
            stop = False
            if val_data is not None and (epoch + 1) % eval_every == 0:
                val = _validate(loss, model, guide, val_data, eval_fn, batch_size, kwargs, denominator)
                history.val.append((epoch + 1, val))
                bar.set_postfix(epoch=epoch + 1, loss=f"{history.loss[-1]:.4g}", val=f"{val:.4g}")
                if val < best[0]:
                    best = (val, _snapshot(modules, _param_store_state(module_names)))
                    history.best_epoch = epoch + 1
                    bad_evals = 0
                else:
                    bad_evals += 1
                    stop = patience is not None and bad_evals >= patience
            history.stopped_early = stop
            history.seconds = time.time() - t0
            if checkpoint is not None:
                save_checkpoint(
                    checkpoint,
                    {
                        "version": CHECKPOINT_VERSION,
                        "epoch": epoch + 1,
                        "modules": [m.state_dict() for m in modules],
                        "param_store": _param_store_state(module_names),
                        "optimizer": optim.state_dict(),
                        "scheduler": scheduler.state_dict() if scheduler is not None else None,
                        "rng": _rng_state(),
                        "history": history.to_dict(),
                        "best_value": best[0],
                        "best": best[1],
                        "bad_evals": bad_evals,
                        "seed": seed,
                    },
                )
            if callback is not None:
                callback(epoch + 1, history)
            if stop:
                break
    finally:
        bar.close()
    if restore_best and best[1] is not None:
        _restore(modules, best[1])
    history.seconds = time.time() - t0
    return history


def _validate(loss, model, guide, val_data, eval_fn, batch_size, kwargs, denominator) -> float:
    if eval_fn is not None:
        return float(eval_fn(model, guide, *val_data))
    n = val_data[0].shape[0]
    total = 0.0
    for start in range(0, n, batch_size):
        batch = tuple(d[start:start + batch_size] for d in val_data)
        b = batch[0].shape[0]
        total += _eval_loss(loss, model, guide, batch, kwargs) / denominator(b) * b
    return total / n

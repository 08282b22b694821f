r"""Data-parallel training with :mod:`torch.distributed`: the process group, the per-rank seeds,
and the collectives that :func:`pyro_deepgen.train.fit` uses when it runs under ``torchrun``.

Under ``torchrun --nproc_per_node N`` every process (rank) runs the same program on its own
shard of the data. :func:`init_from_env` starts the default process group from torchrun's
environment (gloo on CPU, NCCL on CUDA); :func:`fit <pyro_deepgen.train.fit>` notices it
(:func:`world_size` > 1) and

- draws each rank's minibatches with :class:`torch.utils.data.DistributedSampler` (``set_epoch``
  every epoch), so the ranks' minibatches of one step together form the global minibatch of a
  single-process run;
- sums the ranks' gradients after every step with one ``all_reduce`` per dtype
  (:meth:`Context.reduce_step`), each rank's contribution weighted so that the sum is the
  gradient of the global minibatch's loss;
- seeds each rank from the run seed and its rank (:func:`rank_seed`), so ranks draw different
  guide noise;
- lets rank 0 alone validate and write checkpoints, broadcasting its decisions and errors
  (:meth:`Context.on_main`).

Why not :class:`~torch.nn.parallel.DistributedDataParallel`: DDP all-reduces the gradients of
the backward pass of its own ``forward``'s output. ``fit``'s losses run their own backward
inside ``loss_and_grads`` (Pyro's ELBO contract), several with gradients that are not the
gradient of any returned value (DReG, VIMCO, CD/PCD's precomputed update), and Pyro creates
``pyro.param`` parameters lazily at the first step, after DDP would have registered them.
Reducing the ``.grad`` buffers after the backward is what Pyro's own Horovod example does
(``pyro.optim.HorovodOptimizer``), with :func:`torch.distributed.all_reduce` in place of Horovod.
"""
import datetime
import os
from typing import Any, Callable, List, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist

#: environment variables that torchrun sets for every worker
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


class DistributedError(RuntimeError):
    """Raised on every rank when one rank failed: names the rank and its error."""


def available() -> bool:
    """Whether :mod:`torch.distributed` is built into this torch."""
    return dist.is_available()


def world_size() -> int:
    """The number of processes of the default process group (1 without one)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank in the default process group (0 without one)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """Whether this process is rank 0 (always true without a process group)."""
    return rank() == 0


def env_world_size() -> int:
    """``WORLD_SIZE`` from torchrun's environment (1 when unset)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ValueError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} in the environment is not an integer") from None


def init_from_env(device: Any = "cpu", timeout: Optional[float] = None) -> bool:
    """Start the default process group from torchrun's environment variables (``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) when ``WORLD_SIZE`` > 1 and none is
    started yet: NCCL when ``device`` is a CUDA device (each rank then uses
    ``cuda:LOCAL_RANK``), gloo otherwise. ``timeout`` (seconds) bounds every collective, so a rank
    that died makes the others fail instead of waiting forever. Returns whether a group is up."""
    if dist.is_available() and dist.is_initialized():
        return world_size() > 1
    if env_world_size() <= 1:
        return False
    missing = [k for k in TORCHRUN_ENV if k not in os.environ]
    if missing:
        raise ValueError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {', '.join(missing)} are not set: "
                         "launch with torchrun --nproc_per_node N")
    if not dist.is_available():
        raise ValueError("this torch is built without torch.distributed: run a single process")
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    kwargs = {} if timeout is None else {"timeout": datetime.timedelta(seconds=timeout)}
    dist.init_process_group("nccl" if cuda else "gloo", **kwargs)
    return True


def shutdown() -> None:
    """Destroy the default process group, if one is up."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank_seed(seed: int, rank_: int) -> int:
    """The seed of rank ``rank_`` of a run seeded ``seed``: ``seed`` itself on rank 0 (so one
    process runs exactly as without torchrun), else a 32-bit draw of
    :class:`numpy.random.SeedSequence` ``([seed, rank])``, independent across ranks."""
    if rank_ == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank_]).generate_state(1)[0])


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


class Context:
    """The process group as :func:`fit <pyro_deepgen.train.fit>` uses it: ``world`` ranks, this
    one ``rank``."""

    def __init__(self) -> None:
        self.world = world_size()
        self.rank = rank()

    def barrier(self) -> None:
        dist.barrier()

    def gather(self, obj: Any) -> List[Any]:
        """Every rank's ``obj``, in rank order (on every rank)."""
        out: List[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]

    def on_main(self, fn: Callable[[], Any], what: str) -> Any:
        """Run ``fn`` on rank 0 only and return its value on every rank. An exception on rank 0
        is re-raised there and raised on the other ranks as :class:`DistributedError` naming it
        (so no rank waits for a rank that failed)."""
        result, error = None, None
        if self.rank == 0:
            try:
                result = fn()
            except BaseException as e:  # noqa: B902 - re-raised below, after telling the others
                error = e
        message = self.broadcast(None if error is None else (type(error), str(error)))
        if error is not None:
            raise error
        if message is not None:
            kind, text = message
            if issubclass(kind, (ValueError, OSError, FloatingPointError)):
                raise kind(text)  # the same one-line error on every rank (the CLI maps it to its exit status)
            raise DistributedError(f"rank 0 failed while {what}: {kind.__name__}: {text}")
        return self.broadcast(result)

    def check(self, error: Optional[BaseException], where: str) -> None:
        """Collective: raise on every rank if any rank passes an ``error`` (the failing rank
        re-raises its own; the others a :class:`DistributedError` naming rank and error)."""
        flag = torch.tensor([0.0 if error is None else 1.0], dtype=torch.float64, device=self._device())
        dist.all_reduce(flag)
        if flag.item() == 0:
            return
        self._raise_failures(error, where)

    def _raise_failures(self, error: Optional[BaseException], where: str) -> None:
        failures = self.gather(None if error is None else _first_line(error))
        if error is not None:
            raise error
        named = "; ".join(f"rank {r}: {m}" for r, m in enumerate(failures) if m is not None)
        raise DistributedError(f"{where}: {named}")

    def _device(self, like: Optional[torch.Tensor] = None) -> torch.device:
        if like is not None:
            return like.device
        if dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def reduce_step(self, params: Sequence[torch.Tensor], value: float, weight: float,
                    error: Optional[BaseException], where: str) -> float:
        r"""Collective after one rank's backward: set every parameter's ``.grad`` to
        :math:`\sum_r w\, g_r` over the ranks and return :math:`\sum_r w\, \ell_r` (the loss
        ``value`` of each rank, weighted alike). A parameter without a gradient on some rank
        counts as a zero there; one without a gradient on every rank keeps ``grad = None``, as
        in one process. A rank that passes an ``error`` makes every rank raise (see
        :meth:`check`)."""
        groups = {}
        for i, p in enumerate(params):
            groups.setdefault((p.dtype, p.device), []).append(i)
        failed = error is not None
        meta = torch.zeros(2 + len(params), dtype=torch.float64, device=self._device(params[0] if params else None))
        meta[0] = 0.0 if failed else value * weight
        meta[1] = float(failed)
        for i, p in enumerate(params):
            meta[2 + i] = float(p.grad is not None and not failed)
        flats = []  # (flat buffer, parameter indices, whether meta rides at its end)
        for (dtype, device), idx in groups.items():
            parts = [params[i].grad.reshape(-1) if params[i].grad is not None and not failed
                     else params[i].new_zeros(params[i].numel()) for i in idx]
            flat = torch.cat(parts)
            if not failed and weight != 1:
                flat.mul_(weight)
            rides = meta is not None and dtype == torch.float64 and device == meta.device
            if rides:
                flat = torch.cat([flat, meta])
                meta = None
            flats.append((flat, idx, rides))
        if meta is not None:  # no float64 parameters: the loss and flags travel on their own
            dist.all_reduce(meta)
        for flat, _, rides in flats:
            dist.all_reduce(flat)
            if rides:
                meta = flat[-(2 + len(params)):]
        summary = meta.tolist()
        if summary[1] > 0:
            self._raise_failures(error, where)
        for flat, idx, _ in flats:
            offset = 0
            for i in idx:
                p, n = params[i], params[i].numel()
                p.grad = flat[offset:offset + n].view_as(p).clone() if summary[2 + i] > 0 else None
                offset += n
        return summary[0]

    def broadcast_tensors(self, tensors: Sequence[torch.Tensor], src: int = 0) -> None:
        """Overwrite ``tensors`` (in the same order on every rank) with rank ``src``'s values."""
        with torch.no_grad():
            for t in tensors:
                dist.broadcast(t.data if t.is_leaf else t, src=src)

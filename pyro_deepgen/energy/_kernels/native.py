r"""The optional compiled CPU kernels (``cpu_kernels.c``): built on first use, cached, loaded by ctypes.

Two steps of RBM training on CPU run fastest as small AVX2 kernels that no torch operator
provides: the products of binary unit states with a weight matrix
(:mod:`pyro_deepgen.energy._kernels.sparse_matmul`) and 16-bit Bernoulli draws
(:func:`pyro_deepgen.energy.rbm.bernoulli_sample_16bit`). The first call compiles
``cpu_kernels.c`` with the system C compiler (``$CC``, else ``cc``/``gcc``; about a second) into
``$PYRO_DEEPGEN_CACHE`` (default ``~/.cache/pyro_deepgen``), under a name that hashes the source
and the flags, written atomically so that concurrent first uses do not see a half-written file.
The library links the OpenMP runtime by its soname, so it shares torch's thread pool when torch
has loaded it.

Nothing requires it: when the CPU lacks AVX2/FMA, no compiler is found, the build fails, or
``PYRO_DEEPGEN_NATIVE=0`` is set, :func:`library` returns ``None`` (the reason is in
:func:`unavailable_reason`) and the callers use torch's dense products, with the same results up
to float rounding.
"""
import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

import torch

SOURCE = Path(__file__).with_name("cpu_kernels.c")
FLAGS = ["-O3", "-mavx2", "-mfma", "-fopenmp", "-shared", "-fPIC", "-std=c99"]
LIBS = ["-lm"]
_reason: Optional[str] = None


def cache_dir() -> Path:
    """Where the compiled library is kept: ``$PYRO_DEEPGEN_CACHE`` or ``~/.cache/pyro_deepgen``."""
    root = os.environ.get("PYRO_DEEPGEN_CACHE")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pyro_deepgen"


def _cpu_has_avx2() -> bool:
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):  # pragma: no cover - old torch
        return False
    return capability.startswith("AVX2") or capability.startswith("AVX512")


def _compiler() -> Optional[str]:
    for name in filter(None, [os.environ.get("CC"), "cc", "gcc"]):
        path = shutil.which(name)
        if path:
            return path
    return None


def _build(compiler: str, target: Path) -> None:
    """Compile into a temporary file beside ``target``, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", tmp, *LIBS], check=True,
                       capture_output=True, text=True, timeout=120)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    ptr, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    lib.pyro_deepgen_sparse_rows.argtypes = [ptr, i64, i64, ptr, i64, ptr, ptr, i64, i32]
    lib.pyro_deepgen_sparse_rows.restype = i32
    lib.pyro_deepgen_sparse_rows_t.argtypes = [ptr, i64, i64, ptr, i64, ptr, i64, i32]
    lib.pyro_deepgen_sparse_rows_t.restype = i32
    lib.pyro_deepgen_bernoulli16.argtypes = [ptr, i64, ctypes.c_uint64, ptr, i32]
    lib.pyro_deepgen_bernoulli16.restype = None
    lib.pyro_deepgen_sigmoid_softplus.argtypes = [ptr, i64, i64, ptr, ptr, i32]
    lib.pyro_deepgen_sigmoid_softplus.restype = None
    return lib


@functools.lru_cache(maxsize=None)
def library() -> Optional[ctypes.CDLL]:
    """The loaded kernel library, or ``None`` where it cannot be used (see the module doc)."""
    global _reason
    if os.environ.get("PYRO_DEEPGEN_NATIVE", "1") == "0":
        _reason = "disabled by PYRO_DEEPGEN_NATIVE=0"
        return None
    if not _cpu_has_avx2():
        _reason = "the CPU has no AVX2"
        return None
    compiler = _compiler()
    key = hashlib.sha256(SOURCE.read_bytes() + " ".join(FLAGS + LIBS).encode()).hexdigest()[:16]
    target = cache_dir() / f"cpu_kernels_{key}.so"
    try:
        if not target.exists():
            if compiler is None:
                _reason = "no C compiler found (set CC)"
                return None
            _build(compiler, target)
        return _declare(ctypes.CDLL(str(target)))
    except (OSError, subprocess.SubprocessError) as e:
        detail = getattr(e, "stderr", None) or str(e)
        _reason = f"building or loading {target} failed: {detail.strip()[:500]}"
        return None


def unavailable_reason() -> Optional[str]:
    """Why :func:`library` is ``None`` (``None`` when it is available or not yet tried)."""
    return _reason


def takes(*tensors: torch.Tensor) -> bool:
    """Whether the kernels take these tensors (CPU, float32, contiguous; None entries are
    skipped); the library itself is checked separately (:func:`library`)."""
    return all(t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous()
               for t in tensors if t is not None)


def bernoulli16(probs: torch.Tensor, out: torch.Tensor) -> bool:
    """``out = 1[u < 2^16 probs]`` with 16-bit uniforms ``u`` from a splitmix64 stream seeded by
    one draw of torch's generator (see ``cpu_kernels.c``); False (nothing done) where the kernel
    does not apply."""
    lib = library()
    if lib is None or not takes(probs, out):
        return False
    seed = int(torch.empty((), dtype=torch.int64).random_())
    lib.pyro_deepgen_bernoulli16(probs.data_ptr(), probs.numel(), seed, out.data_ptr(),
                                 torch.get_num_threads())
    return True


def sigmoid_softplus(x: torch.Tensor, probs: torch.Tensor, softplus_sums: torch.Tensor) -> bool:
    r"""``probs = sigmoid(x)`` for a 2-D ``x`` and ``softplus_sums`` (float64, one per row) =
    :math:`\sum_j \operatorname{softplus}(x_{rj})`, in one pass; False (nothing done) where the
    kernel does not apply."""
    lib = library()
    if (lib is None or x.dim() != 2 or not takes(x, probs) or x.numel() == 0
            or softplus_sums.dtype != torch.float64 or not softplus_sums.is_contiguous()):
        return False
    lib.pyro_deepgen_sigmoid_softplus(x.data_ptr(), x.shape[0], x.shape[1], probs.data_ptr(),
                                      softplus_sums.data_ptr(), torch.get_num_threads())
    return True

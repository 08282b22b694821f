r"""Matrix products whose left factor is mostly zeros (binary unit states), for CPU.

An RBM's Gibbs sweeps and its CD/PCD gradient multiply *binary* state matrices: binarized MNIST
is about 13% ones, and so are the visible samples of a model trained on it. For
:math:`x\in\mathbb R^{n\times k}` with few nonzeros, both products below are sums of selected
rows,

.. math:: (x T)_r = \sum_{i:\,x_{ri}\neq 0} x_{ri}\,T_i, \qquad
          (x^\top P)_i = \sum_{r:\,x_{ri}\neq 0} x_{ri}\,P_r,

which cost :math:`O(\mathrm{nnz}(x)\,m)` instead of the dense :math:`O(nkm)`.

**Backends.** On CPU in float32 they run in a small compiled AVX2 kernel
(:mod:`pyro_deepgen.energy._kernels.native`, built on first use): at 13% density a 200 x 784 x 500 product
takes about half the time of torch's dense one. Where that kernel is unavailable,
:func:`sparse_rows_matmul` uses :func:`torch.nn.functional.embedding_bag` and
:func:`sparse_rows_matmul_t` the dense product. On CUDA, in other dtypes, and above
``max_density`` the dense product is used. Results equal the dense products up to float
rounding (summation order).
"""
from typing import Optional

import torch
from torch.nn import functional as F

from . import native

#: above this fraction of nonzeros the dense product is used
DEFAULT_MAX_DENSITY = 0.25


def _check(name: str, x: torch.Tensor, other: torch.Tensor, dim: int, what: str) -> None:
    if x.dim() != 2 or other.dim() != 2 or x.shape[dim] != other.shape[0]:
        raise ValueError(f"{name} needs {what}; got {tuple(x.shape)} and {tuple(other.shape)}")


def _native_operands(x: torch.Tensor, other: torch.Tensor, *optional) -> bool:
    """Whether the compiled kernel takes these operands (:func:`~pyro_deepgen.energy._kernels.native.takes`,
    non-empty, library available)."""
    return (x.numel() > 0 and other.numel() > 0 and native.takes(x, other, *optional)
            and native.library() is not None)


def _call_native(function: str, x: torch.Tensor, other: torch.Tensor, extra: list,
                 out: torch.Tensor, max_density: float) -> bool:
    """Run a kernel of :mod:`~pyro_deepgen.energy._kernels.native` (arguments: ``x``, its shape, ``other``,
    its width, ``extra``, ``out``, the nonzero limit, the threads); False when ``x`` is too
    dense (``out`` is then not written)."""
    n, k = x.shape
    args = [x.data_ptr(), n, k, other.data_ptr(), other.shape[1], *extra, out.data_ptr(),
            int(max_density * n * k), torch.get_num_threads()]
    status = getattr(native.library(), function)(*args)
    if status < 0:
        raise MemoryError(f"{function}: out of memory for x of shape {(n, k)}")
    return status == 0


def sparse_rows_matmul(x: torch.Tensor, table: torch.Tensor, *, bias: Optional[torch.Tensor] = None,
                       binary: bool = False, max_density: float = DEFAULT_MAX_DENSITY,
                       out: Optional[torch.Tensor] = None) -> torch.Tensor:
    r"""``bias + x @ table`` for a 2-D ``x`` of shape ``(n, k)`` and ``table`` of shape ``(k, m)``,
    computed as sums of the rows of ``table`` selected by the nonzeros of ``x`` when that is
    cheaper (see the module doc), else densely.

    :param x: the left factor; any values (nonzeros other than 1 weight their rows).
    :param table: the right factor, shape ``(k, m)``; a contiguous table avoids a copy.
    :param bias: optional ``(m,)`` vector added to every row.
    :param bool binary: promise that ``x`` holds only 0 and 1 (the ``embedding_bag`` fallback then
        skips gathering the values). A wrong promise gives a wrong result there.
    :param float max_density: use the dense product above this fraction of nonzeros.
    :param out: optional ``(n, m)`` tensor for the result (returned).
    """
    _check("sparse_rows_matmul", x, table, 1, "x (n, k) and table (k, m)")
    n, k = x.shape
    m = table.shape[1]
    if bias is not None and bias.shape != (m,):
        raise ValueError(f"bias must have shape ({m},); got {tuple(bias.shape)}")
    if out is not None and (out.shape != (n, m) or out.dtype != x.dtype):
        raise ValueError(f"out must have shape {(n, m)} and dtype {x.dtype}; got "
                         f"{tuple(out.shape)} and {out.dtype}")
    if _native_operands(x, table, bias, out):
        result = torch.empty(n, m, dtype=x.dtype) if out is None else out
        bias_ptr = None if bias is None else bias.data_ptr()
        if _call_native("pyro_deepgen_sparse_rows", x, table, [bias_ptr], result, max_density):
            return result
    elif x.device.type == "cpu" and table.is_contiguous():
        product = _gathered_rows(x, table, binary, max_density)
        if product is not None:
            product = product if bias is None else product.add_(bias)
            return product if out is None else out.copy_(product)
    if bias is None:
        return torch.mm(x, table, out=out)
    return torch.addmm(bias, x, table, out=out)


def _gathered_rows(x: torch.Tensor, table: torch.Tensor, binary: bool,
                   max_density: float) -> Optional[torch.Tensor]:
    """The ``embedding_bag`` fallback of :func:`sparse_rows_matmul` (``None``: use the dense
    product)."""
    n, k = x.shape
    if x.dtype != table.dtype or not x.dtype.is_floating_point or n * k == 0:
        return None
    nnz = float(x.sum()) if binary else int(torch.count_nonzero(x))
    if nnz > max_density * n * k:
        return None
    rows, cols = x.nonzero(as_tuple=True)  # row-major order: each row's nonzeros are one bag
    offsets = torch.searchsorted(rows, torch.arange(n, device=x.device))
    weights = None if binary else x[rows, cols]
    return F.embedding_bag(cols, table, offsets, mode="sum", per_sample_weights=weights)


def sparse_rows_matmul_t(x: torch.Tensor, other: torch.Tensor, *,
                         max_density: float = DEFAULT_MAX_DENSITY) -> torch.Tensor:
    r"""``x.T @ other`` for ``x`` of shape ``(n, k)`` and ``other`` of shape ``(n, m)``, a
    contiguous ``(k, m)`` result: row ``i`` sums the rows of ``other`` where column ``i`` of ``x``
    is nonzero. Used for the CD/PCD weight gradient :math:`S^\top P` (``S`` the stacked binary
    states). The compiled kernel computes it where available (see the module doc), else the dense
    product."""
    _check("sparse_rows_matmul_t", x, other, 0, "x (n, k) and other (n, m)")
    if _native_operands(x, other):
        out = torch.empty(x.shape[1], other.shape[1], dtype=x.dtype)
        if _call_native("pyro_deepgen_sparse_rows_t", x, other, [], out, max_density):
            return out
    return torch.mm(x.t(), other)

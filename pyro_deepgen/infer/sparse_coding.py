r"""Sparse coding (the lasso) solved by ISTA and FISTA, batched over points on the device.

For points :math:`x_i \in \mathbb{R}^d` (the rows of ``x``, shape ``(n, d)``) and a dictionary
:math:`D \in \mathbb{R}^{K \times d}` whose rows are the atoms (the layout of scikit-learn's
``components_``), the codes :math:`z_i \in \mathbb{R}^K` minimize

.. math::

    F(Z) = \frac{1}{n} \sum_{i=1}^n \tfrac12 \lVert x_i - z_i D \rVert_2^2 + \lambda \lVert z_i \rVert_1,

one lasso per point (:func:`sparse_coding_objective`). With :math:`L = \lVert D \rVert_2^2` (the
largest eigenvalue of the Gram matrix :math:`G = D D^\top`, a Lipschitz constant of the smooth
part's gradient :math:`z G - x D^\top`), **ISTA** (iterative shrinkage-thresholding, Daubechies
et al. 2004) is the proximal-gradient step

.. math::

    z_{k+1} = h_{\lambda/L}\big(z_k - (z_k G - x D^\top)/L\big)
            = h_{\lambda/L}\big(x D^\top / L + z_k (I - G/L)\big),
    \qquad h_\theta(v) = \operatorname{sign}(v)\,\max(\lvert v\rvert - \theta, 0),

with :math:`F(Z_k) - F(Z^*) = O(1/k)`; **FISTA** (Beck & Teboulle 2009) takes the same step
from the extrapolated point :math:`y_k = z_k + \frac{t_{k-1} - 1}{t_k}(z_k - z_{k-1})`,
:math:`t_{k} = (1 + \sqrt{1 + 4 t_{k-1}^2})/2`, and reaches :math:`O(1/k^2)`. Both start from
:math:`Z_0 = 0` (or a warm start), so that one ISTA iteration is :math:`h_{\lambda/L}(x D^\top/L)`:
the first layer of LISTA (:class:`pyro_deepgen.models.lista.LISTA`).

Every point's lasso is solved at once: an iteration is two matrix products of shape
``(n, K) x (K, K)`` on the device of ``x``; the Gram matrix and :math:`x D^\top` are computed once.
The stopping rule is on the whole batch: stop when :math:`\lVert Z_{k+1} - Z_k \rVert_F \le
\mathrm{tol} \cdot \lVert Z_{k+1} \rVert_F`.

The optimum satisfies the lasso's KKT conditions, per point and atom:
:math:`(x - z D) D_k^\top = \lambda \operatorname{sign}(z_k)` where :math:`z_k \ne 0` and
:math:`\lvert (x - z D) D_k^\top\rvert \le \lambda` where :math:`z_k = 0`. In scikit-learn's
terms the codes are ``sklearn.decomposition.sparse_encode(x, D, alpha=lam,
algorithm="lasso_cd")``, and each point's code is ``sklearn.linear_model.Lasso(alpha=lam / d,
fit_intercept=False).fit(D.T, x_i).coef_`` (``Lasso`` divides the squared error by the number of
its samples, here the ``d`` features).

References: I. Daubechies, M. Defrise, C. De Mol, *An iterative thresholding algorithm for
linear inverse problems with a sparsity constraint*, CPAM 2004. A. Beck, M. Teboulle, *A fast
iterative shrinkage-thresholding algorithm for linear inverse problems*, SIAM J. Imaging Sci.
2009.
"""
import math
from typing import Callable, List, NamedTuple, Optional, Sequence, Union

import torch

from .._checks import finite_float, non_negative_int


class SparseCodingResult(NamedTuple):
    """What :func:`ista` and :func:`fista` return.

    :ivar codes: the codes :math:`Z`, shape ``(n, K)``.
    :ivar iterations: the iterations taken.
    :ivar objective: :func:`sparse_coding_objective` at ``codes`` (a float).
    :ivar converged: whether the stopping tolerance was met before ``max_iter``.
    """

    codes: torch.Tensor
    iterations: int
    objective: float
    converged: bool


def soft_threshold(v: torch.Tensor, threshold: Union[float, torch.Tensor]) -> torch.Tensor:
    r""":math:`h_\theta(v) = \operatorname{sign}(v)\max(\lvert v\rvert - \theta, 0)`, elementwise,
    the proximal operator of :math:`\theta\lVert\cdot\rVert_1`; ``threshold`` (>= 0) is a number or
    a tensor broadcasting against ``v`` (e.g. one threshold per atom). Differentiable in both."""
    return torch.sign(v) * torch.relu(v.abs() - threshold)


def _check(x: torch.Tensor, dictionary: torch.Tensor, lam) -> float:
    if not torch.is_tensor(x) or x.dim() != 2:
        raise ValueError(f"x must be a 2-D tensor (points, features), got {getattr(x, 'shape', type(x))}")
    if not torch.is_tensor(dictionary) or dictionary.dim() != 2 or dictionary.shape[1] != x.shape[1]:
        raise ValueError(f"dictionary must be a 2-D tensor (atoms, features) with {x.shape[1]} features like x, "
                         f"got {getattr(dictionary, 'shape', type(dictionary))}")
    return finite_float(lam, "lam", low=0.0)


def sparse_coding_objective(x: torch.Tensor, codes: torch.Tensor, dictionary: torch.Tensor,
                            lam: float) -> torch.Tensor:
    r"""The mean over points of :math:`\tfrac12\lVert x_i - z_i D\rVert^2 + \lambda\lVert z_i\rVert_1`
    (a scalar tensor, differentiable). scikit-learn's ``DictionaryLearning`` reports the sum over
    points of the same terms: divide its ``error_`` by ``n`` to compare."""
    lam = _check(x, dictionary, lam)
    residual = x - codes @ dictionary
    return (0.5 * residual.pow(2).sum(-1) + lam * codes.abs().sum(-1)).mean()


def lipschitz_constant(dictionary: torch.Tensor) -> torch.Tensor:
    r""":math:`L = \lVert D\rVert_2^2`, the largest eigenvalue of :math:`D D^\top` (a scalar tensor)."""
    return torch.linalg.matrix_norm(dictionary, ord=2).pow(2)


def _iterate(x, dictionary, lam, accelerated, max_iter, tol, init, step, callback) -> SparseCodingResult:
    lam = _check(x, dictionary, lam)
    max_iter = non_negative_int(max_iter, "max_iter")
    tol = finite_float(tol, "tol", low=0.0)
    gram = dictionary @ dictionary.T
    if step is None:
        lipschitz = torch.linalg.eigvalsh(gram)[-1]
    else:
        lipschitz = torch.tensor(1.0 / finite_float(step, "step", low=0.0, strict=True), dtype=x.dtype,
                                 device=x.device)
    if not float(lipschitz) > 0:
        raise ValueError("dictionary is all zeros: give it at least one non-zero atom")
    eye = torch.eye(gram.shape[0], dtype=x.dtype, device=x.device)
    drive = (x @ dictionary.T) / lipschitz                 # x D^T / L, computed once
    recurrent = eye - gram / lipschitz                     # I - G / L
    threshold = lam / lipschitz
    if init is None:
        z = torch.zeros(x.shape[0], dictionary.shape[0], dtype=x.dtype, device=x.device)
    else:
        if init.shape != (x.shape[0], dictionary.shape[0]):
            raise ValueError(f"init must have shape (points, atoms) = {(x.shape[0], dictionary.shape[0])}, "
                             f"got {tuple(init.shape)}")
        z = init.to(dtype=x.dtype, device=x.device).clone()
    y, t = z, 1.0
    converged = False
    k = 0
    while k < max_iter:
        z_new = soft_threshold(torch.addmm(drive, y, recurrent), threshold)
        k += 1
        if callback is not None:
            callback(k, z_new)
        if accelerated:
            t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
            y = z_new + ((t - 1.0) / t_new) * (z_new - z)
            t = t_new
        else:
            y = z_new
        change = torch.linalg.vector_norm(z_new - z)
        z = z_new
        if float(change) <= tol * float(torch.linalg.vector_norm(z)):
            converged = True
            break
    objective = float(sparse_coding_objective(x, z, dictionary, lam))
    return SparseCodingResult(z, k, objective, converged)


@torch.no_grad()
def ista(x: torch.Tensor, dictionary: torch.Tensor, lam: float, *, max_iter: int = 1000, tol: float = 1e-6,
         init: Optional[torch.Tensor] = None, step: Optional[float] = None,
         callback: Optional[Callable[[int, torch.Tensor], None]] = None) -> SparseCodingResult:
    r"""Sparse codes of the rows of ``x`` by ISTA (see the module's docstring for the math).

    :param x: points, shape ``(n, d)``; its device and dtype are used throughout.
    :param dictionary: atoms as rows, shape ``(K, d)``.
    :param lam: :math:`\lambda \ge 0`.
    :param max_iter: the most iterations (``0`` returns ``init``, or zeros).
    :param tol: stop when :math:`\lVert Z_{k+1} - Z_k\rVert_F \le \mathrm{tol}\,\lVert Z_{k+1}\rVert_F`;
        ``0`` runs ``max_iter`` iterations unless the iterates stop moving.
    :param init: warm start :math:`Z_0`, shape ``(n, K)`` (default zeros).
    :param step: step size (default :math:`1/L`; larger than :math:`1/L` may diverge).
    :param callback: ``callback(k, Z_k)`` after every iteration ``k = 1, 2, ...``.
    :returns: a :class:`SparseCodingResult`.
    """
    return _iterate(x, dictionary, lam, False, max_iter, tol, init, step, callback)


@torch.no_grad()
def fista(x: torch.Tensor, dictionary: torch.Tensor, lam: float, *, max_iter: int = 1000, tol: float = 1e-6,
          init: Optional[torch.Tensor] = None, step: Optional[float] = None,
          callback: Optional[Callable[[int, torch.Tensor], None]] = None) -> SparseCodingResult:
    r"""Sparse codes of the rows of ``x`` by FISTA (Beck & Teboulle 2009): ISTA's step taken from
    an extrapolated point, :math:`O(1/k^2)` instead of :math:`O(1/k)` in the objective. The
    arguments are :func:`ista`'s."""
    return _iterate(x, dictionary, lam, True, max_iter, tol, init, step, callback)


def relative_code_error(codes: torch.Tensor, reference: torch.Tensor) -> float:
    r""":math:`\lVert Z - Z^*\rVert_F / \lVert Z^*\rVert_F` over the whole set of points."""
    return float(torch.linalg.vector_norm(codes - reference) / torch.linalg.vector_norm(reference))


@torch.no_grad()
def ista_iterations_to_reach(x: torch.Tensor, dictionary: torch.Tensor, lam: float, z_star: torch.Tensor,
                             target_error: Union[float, Sequence[float]], *, max_iter: int = 10000
                             ) -> Union[Optional[int], List[Optional[int]]]:
    r"""The first ISTA iteration :math:`k` (from :math:`Z_0 = 0`, step :math:`1/L`) at which
    :math:`\lVert Z_k - Z^*\rVert_F / \lVert Z^*\rVert_F \le` ``target_error``.

    This is how many ISTA iterations a faster encoder's code error is worth (LISTA's
    ``ista_iterations_matched``). ``z_star`` is the optimum, e.g. from :func:`fista` with a small
    ``tol``. ``target_error`` may be a sequence: one run answers all, in order. A target not
    reached within ``max_iter`` iterations gives ``None``.
    """
    single = isinstance(target_error, (int, float))
    targets = [finite_float(t, "target_error", low=0.0) for t in ([target_error] if single else target_error)]
    if z_star.shape != (x.shape[0], dictionary.shape[0]):
        raise ValueError(f"z_star must have shape (points, atoms) = {(x.shape[0], dictionary.shape[0])}, "
                         f"got {tuple(z_star.shape)}")
    norm = float(torch.linalg.vector_norm(z_star))
    if norm == 0:
        raise ValueError("z_star is all zeros, so the relative error is undefined: use a smaller lam")
    found: List[Optional[int]] = [None] * len(targets)
    order = sorted(range(len(targets)), key=lambda i: -targets[i])  # largest target is reached first
    pending = list(order)

    class _Done(Exception):
        pass

    def record(k: int, z: torch.Tensor) -> None:
        error = float(torch.linalg.vector_norm(z - z_star)) / norm
        while pending and error <= targets[pending[0]]:
            found[pending.pop(0)] = k
        if not pending:
            raise _Done

    if pending and 1.0 <= targets[pending[0]]:  # Z_0 = 0 already has relative error 1
        while pending and 1.0 <= targets[pending[0]]:
            found[pending.pop(0)] = 0
    if pending:
        try:
            ista(x, dictionary, lam, max_iter=max_iter, tol=0.0, callback=record)
        except _Done:
            pass
    return found[0] if single else found

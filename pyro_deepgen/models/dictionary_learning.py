r"""Dictionary learning: the autoencoder with a linear decoder and L1-sparse codes.

With the rows of ``x`` as points :math:`x_i \in \mathbb{R}^d` and a dictionary
:math:`D \in \mathbb{R}^{K \times d}` of ``K`` atoms (rows, scikit-learn's ``components_`` layout),
dictionary learning (Olshausen & Field 1996; Mairal et al. 2009) solves

.. math::

    \min_{D,\,Z}\ \frac1n \sum_{i=1}^n \tfrac12 \lVert x_i - z_i D \rVert_2^2 + \lambda \lVert z_i\rVert_1
    \quad\text{subject to}\quad \lVert D_k \rVert_2 \le 1,

the autoencoder :math:`\min \frac1n\sum_i \ell(x_i, \Psi(\Phi(x_i))) + R(\Phi(X))` whose decoder
:math:`\Psi(z) = z D` is linear, whose regularizer is :math:`R = \lambda\lVert Z\rVert_1`, and
whose "encoder" :math:`\Phi(x) = \arg\min_z \tfrac12\lVert x - zD\rVert^2 + \lambda\lVert z\rVert_1`
is the lasso itself, solved by FISTA (:func:`pyro_deepgen.infer.sparse_coding.fista`). Without the norm bound
the penalty could be driven to zero by growing the atoms and shrinking the codes.

:meth:`DictionaryLearning.fit` alternates exact-ish steps, as scikit-learn's
``DictionaryLearning`` does:

1. **codes**: FISTA on every point at once, warm-started from the previous codes;
2. **dictionary**, either by *block coordinate descent* (``update="bcd"``, Mairal et al. 2009,
   Algorithm 2; scikit-learn's ``_update_dict``): with :math:`A = Z^\top Z` and
   :math:`B = Z^\top X`, for each atom :math:`D_k \leftarrow D_k + (B_k - A_k D)/A_{kk}`, then
   :math:`D_k \leftarrow D_k / \max(\lVert D_k\rVert, 1)` (an atom no code uses is redrawn
   from a random point); or by :data:`GRADIENT_STEPS` accelerated *projected gradient* steps
   (``update="projected_gradient"``): :math:`D \leftarrow \Pi(D - (A D - B)/\lVert A\rVert_2)`
   with :math:`\Pi` scaling each row into the unit ball (a convex set, so every step descends;
   at the optimum the used atoms have unit norm, as growing an atom lets its codes shrink).

It stops when the objective's relative decrease falls below ``tol``. The initial atoms are the
top right-singular vectors of ``x`` (scikit-learn's initialization), with random points filling
the atoms beyond the rank. scikit-learn's ``error_`` is the objective summed over points:
divide by ``n`` to compare.

References: B. Olshausen, D. Field, *Emergence of simple-cell receptive field properties by
learning a sparse code for natural images*, Nature 1996. J. Mairal, F. Bach, J. Ponce, G. Sapiro,
*Online dictionary learning for sparse coding*, ICML 2009.
"""
import math
from typing import List, Optional

import torch
from torch import nn

from .._checks import finite_float, non_negative_int, one_of, positive_int
from ..infer.sparse_coding import fista, sparse_coding_objective

UPDATES = ("bcd", "projected_gradient")
#: projected gradient steps on the dictionary per iteration of ``update="projected_gradient"``
GRADIENT_STEPS = 50


class DictionaryLearning(nn.Module):
    r"""A linear decoder with L1 codes found by FISTA; see the module's docstring for the math.

    :param n_features: :math:`d`.
    :param n_atoms: :math:`K` (over-complete when ``K > d``).
    :param lam: :math:`\lambda \ge 0`, scikit-learn's ``alpha``.
    :param update: ``"bcd"`` (block coordinate descent, as scikit-learn) or
        ``"projected_gradient"``.
    :param code_max_iter: FISTA iterations per code step of :meth:`fit`.
    :param code_tol: FISTA's stopping tolerance in :meth:`fit`.

    The dictionary is the buffer ``dictionary`` (``(K, d)``); ``history`` holds the objective after
    each iteration of the last :meth:`fit`.
    """

    def __init__(self, n_features: int, n_atoms: int, lam: float, *, update: str = "bcd",
                 code_max_iter: int = 200, code_tol: float = 1e-4) -> None:
        super().__init__()
        self.n_features = positive_int(n_features, "n_features")
        self.n_atoms = positive_int(n_atoms, "n_atoms")
        self.lam = finite_float(lam, "lam", low=0.0)
        self.update = one_of(update, "update", UPDATES)
        self.code_max_iter = positive_int(code_max_iter, "code_max_iter")
        self.code_tol = finite_float(code_tol, "code_tol", low=0.0)
        self.register_buffer("dictionary", nn.functional.normalize(torch.randn(self.n_atoms, self.n_features), dim=1))
        self.history: List[float] = []

    def _check_x(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(x) or x.dim() != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"x must be a tensor of shape (points, {self.n_features}), "
                             f"got {getattr(x, 'shape', type(x))}")
        return x.to(self.dictionary)

    def encode(self, x: torch.Tensor, max_iter: int = 1000, tol: float = 1e-6,
               init: Optional[torch.Tensor] = None) -> torch.Tensor:
        r"""The lasso codes :math:`\arg\min_z \tfrac12\lVert x - zD\rVert^2 + \lambda\lVert z\rVert_1`
        by FISTA, shape ``(n, K)``."""
        return fista(self._check_x(x), self.dictionary, self.lam, max_iter=max_iter, tol=tol, init=init).codes

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """:math:`z D`, shape ``(n, d)``."""
        return codes @ self.dictionary

    def objective(self, x: torch.Tensor, codes: Optional[torch.Tensor] = None) -> float:
        """The mean per point of the objective, at ``codes`` (default: :meth:`encode`)."""
        x = self._check_x(x)
        codes = self.encode(x) if codes is None else codes
        return float(sparse_coding_objective(x, codes, self.dictionary, self.lam))

    def reconstruction_error(self, x: torch.Tensor, codes: Optional[torch.Tensor] = None) -> float:
        r"""The mean per point of :math:`\lVert x - zD\rVert^2` (no factor 1/2)."""
        x = self._check_x(x)
        codes = self.encode(x) if codes is None else codes
        return float((x - self.decode(codes)).pow(2).sum(-1).mean())

    @torch.no_grad()
    def init_dictionary(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> None:
        """The top right-singular vectors of ``x`` as the first atoms (unit norm), random points
        (normalized) for the atoms beyond its rank."""
        x = self._check_x(x)
        _, s, vh = torch.linalg.svd(x, full_matrices=False)
        rank = int((s > s[0] * 1e-6).sum()) if s.numel() else 0
        atoms = vh[:min(rank, self.n_atoms)]
        if atoms.shape[0] < self.n_atoms:
            idx = torch.randint(x.shape[0], (self.n_atoms - atoms.shape[0],), generator=generator).to(x.device)
            atoms = torch.cat([atoms, x[idx]])
        self.dictionary.copy_(self._project(atoms, generator, x))

    def _project(self, atoms: torch.Tensor, generator, x: torch.Tensor) -> torch.Tensor:
        norms = atoms.norm(dim=1, keepdim=True)
        dead = norms.squeeze(1) < 1e-10
        if bool(dead.any()):
            noise = torch.randn(int(dead.sum()), atoms.shape[1], generator=generator).to(atoms)
            atoms = atoms.clone()
            atoms[dead] = noise
            norms = atoms.norm(dim=1, keepdim=True)
        return atoms / norms

    @torch.no_grad()
    def _update_bcd(self, x, codes, generator) -> torch.Tensor:
        gram = codes.T @ codes                      # A = Z^T Z
        cross = codes.T @ x                         # B = Z^T X
        d = self.dictionary.clone()
        diag = gram.diagonal().tolist()
        for k in range(self.n_atoms):
            if diag[k] > 1e-6:
                d[k] += (cross[k] - gram[k] @ d) / diag[k]
            else:                                   # an unused atom: redraw it from a point
                i = int(torch.randint(x.shape[0], (1,), generator=generator))
                d[k] = x[i] + 0.01 * torch.randn(x.shape[1], generator=generator).to(x)
                codes[:, k] = 0
            d[k] /= max(float(d[k].norm()), 1.0)
        return d

    @torch.no_grad()
    def _update_gradient(self, codes, x) -> torch.Tensor:
        gram = codes.T @ codes
        cross = codes.T @ x
        lipschitz = float(torch.linalg.matrix_norm(gram, ord=2))
        d = self.dictionary.clone()
        if lipschitz <= 0:
            return d
        y, t = d, 1.0
        for _ in range(GRADIENT_STEPS):             # accelerated (FISTA) projected gradient
            d_new = y - (gram @ y - cross) / lipschitz
            d_new = d_new / d_new.norm(dim=1, keepdim=True).clamp(min=1.0)
            t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
            y = d_new + ((t - 1.0) / t_new) * (d_new - d)
            d, t = d_new, t_new
        return d

    @torch.no_grad()
    def fit(self, x: torch.Tensor, max_iter: int = 100, tol: float = 1e-4, seed: int = 0,
            init: bool = True) -> "DictionaryLearning":
        """Learn the dictionary on the rows of ``x`` by alternating codes and dictionary steps
        (the module's docstring), at most ``max_iter`` iterations; stop when the objective's
        relative decrease is below ``tol``. ``init=False`` continues from the current dictionary.
        Returns ``self``; ``self.history`` holds the objective after each iteration."""
        x = self._check_x(x)
        max_iter = non_negative_int(max_iter, "max_iter")
        tol = finite_float(tol, "tol", low=0.0)
        generator = torch.Generator().manual_seed(int(seed))
        if init:
            self.init_dictionary(x, generator)
        self.history = []
        codes = None
        for _ in range(max_iter):
            codes = fista(x, self.dictionary, self.lam, max_iter=self.code_max_iter, tol=self.code_tol,
                          init=codes).codes
            if self.update == "bcd":
                new = self._update_bcd(x, codes, generator)
            else:
                new = self._update_gradient(codes, x)
            self.dictionary.copy_(new)
            self.history.append(float(sparse_coding_objective(x, codes, self.dictionary, self.lam)))
            if len(self.history) > 1 and self.history[-2] - self.history[-1] < tol * abs(self.history[-1]):
                break
        return self

r"""Predictive sparse decomposition (PSD, Kavukcuoglu, Ranzato & LeCun 2008): dictionary learning
with a fast feed-forward encoder trained to predict the sparse codes.

With atoms as the rows of :math:`D \in \mathbb{R}^{K\times d}` (unit norm) and the encoder
:math:`\Phi(x) = \beta \odot \tanh(x W^\top + b)` (:math:`W \in \mathbb{R}^{K\times d}`, a bias
:math:`b` and a gain :math:`\beta` per code unit; the paper's :math:`G\tanh(WX + b)` with
:math:`G = \operatorname{diag}(\beta)`), PSD minimizes over :math:`D, W, b, \beta` and the codes

.. math::

    E(x, z) = \tfrac12\lVert x - z D\rVert_2^2 + \lambda\lVert z\rVert_1
              + \tfrac{\alpha}{2}\lVert z - \Phi(x)\rVert_2^2 ,

the paper's :math:`\lVert X - DZ\rVert^2 + \lambda_p\lVert Z\rVert_1 + \alpha_p\lVert Z - F(X)\rVert^2`
halved (:math:`\lambda = \lambda_p/2`, :math:`\alpha = \alpha_p`), so that :math:`\lambda` means
what it means in :func:`pyro_deepgen.infer.sparse_coding.sparse_coding_objective`.
Training alternates, as in the paper:

1. **code inference** (:meth:`PSD.infer_codes`): :math:`z^* = \arg\min_z E(x, z)` with the
   encoder's term, by FISTA started from :math:`\Phi(x)`. The two quadratic terms are one least
   squares problem with the augmented dictionary :math:`[D,\ \sqrt{\alpha} I]` and target
   :math:`[x,\ \sqrt{\alpha}\,\Phi(x)]`, so :func:`pyro_deepgen.infer.sparse_coding.fista` solves it unchanged;
2. **parameter step** (:meth:`PSD.loss`, one stochastic gradient step per minibatch, taken by
   the caller's optimizer): :math:`D` descends :math:`\tfrac12\lVert x - z^* D\rVert^2` and the
   encoder descends :math:`\tfrac{\alpha}{2}\lVert z^* - \Phi(x)\rVert^2`, with :math:`z^*` fixed.

The paper renormalizes the atoms after each step; here :math:`D` is parametrized as
:math:`D_k = V_k / \lVert V_k\rVert` (any optimizer keeps unit atoms). At test time the encoder
alone predicts the codes, :math:`\hat z = \Phi(x)`, in one matrix product instead of an
iterative solve; :meth:`PSD.optimal_codes` gives the lasso codes of the learned dictionary
(without the encoder's term), against which :math:`\hat z` is measured. :math:`\Phi(x)` is dense
(tanh is never exactly zero): its sparsity is approximate.

Reference: K. Kavukcuoglu, M. Ranzato, Y. LeCun, *Fast inference in sparse coding algorithms with
applications to object recognition*, Technical Report CBLL-TR-2008-12-01, NYU 2008
(arXiv:1010.3467).
"""
import math
from typing import Optional

import torch
from torch import nn

from .._checks import finite_float, positive_int
from ..infer.sparse_coding import fista, sparse_coding_objective


class PSD(nn.Module):
    r"""Predictive sparse decomposition; see the module's docstring for the math.

    :param n_features: :math:`d`.
    :param n_atoms: :math:`K`.
    :param lam: :math:`\lambda \ge 0` (the L1 weight, halved convention).
    :param alpha: :math:`\alpha \ge 0`, the weight of the encoder's prediction term.
    :param dictionary: initial atoms ``(K, d)`` (normalized); default random unit vectors.
    :param code_max_iter: FISTA iterations of :meth:`infer_codes`.
    :param code_tol: FISTA's stopping tolerance in :meth:`infer_codes`.
    """

    def __init__(self, n_features: int, n_atoms: int, lam: float, alpha: float = 1.0, *,
                 dictionary: Optional[torch.Tensor] = None, code_max_iter: int = 100,
                 code_tol: float = 1e-4) -> None:
        super().__init__()
        self.n_features = positive_int(n_features, "n_features")
        self.n_atoms = positive_int(n_atoms, "n_atoms")
        self.lam = finite_float(lam, "lam", low=0.0)
        self.alpha = finite_float(alpha, "alpha", low=0.0)
        self.code_max_iter = positive_int(code_max_iter, "code_max_iter")
        self.code_tol = finite_float(code_tol, "code_tol", low=0.0)
        if dictionary is None:
            dictionary = torch.randn(self.n_atoms, self.n_features)
        elif not torch.is_tensor(dictionary) or tuple(dictionary.shape) != (self.n_atoms, self.n_features):
            raise ValueError(f"dictionary must be a tensor of shape (n_atoms, n_features) = "
                             f"{(self.n_atoms, self.n_features)}, got {getattr(dictionary, 'shape', type(dictionary))}")
        atoms = nn.functional.normalize(dictionary.detach(), dim=1)
        self.atoms = nn.Parameter(atoms.clone())
        # encoder: start from the dictionary's correlations, in tanh's near-linear range
        self.weight = nn.Parameter(atoms.clone() / math.sqrt(self.n_features))
        self.bias = nn.Parameter(atoms.new_zeros(self.n_atoms))
        self.gain = nn.Parameter(atoms.new_ones(self.n_atoms))

    @property
    def dictionary(self) -> torch.Tensor:
        r""":math:`D`, the rows of ``atoms`` normalized to unit length, shape ``(K, d)``."""
        return nn.functional.normalize(self.atoms, dim=1)

    def _check_x(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(x) or x.dim() != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"x must be a tensor of shape (points, {self.n_features}), "
                             f"got {getattr(x, 'shape', type(x))}")
        return x

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        r"""The fast encoder :math:`\Phi(x) = \beta\odot\tanh(xW^\top + b)`, shape ``(n, K)``."""
        return self.gain * torch.tanh(nn.functional.linear(self._check_x(x), self.weight, self.bias))

    forward = encode

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """:math:`z D`, shape ``(n, d)``."""
        return codes @ self.dictionary

    @torch.no_grad()
    def infer_codes(self, x: torch.Tensor, max_iter: Optional[int] = None, tol: Optional[float] = None
                    ) -> torch.Tensor:
        r""":math:`\arg\min_z E(x, z)` (with the encoder's term) by FISTA from :math:`\Phi(x)`."""
        x = self._check_x(x)
        prediction = self.encode(x)
        root = math.sqrt(self.alpha)
        dictionary = self.dictionary
        eye = torch.eye(self.n_atoms, dtype=x.dtype, device=x.device)
        augmented = torch.cat([dictionary, root * eye], dim=1)
        target = torch.cat([x, root * prediction], dim=1)
        return fista(target, augmented, self.lam, init=prediction,
                     max_iter=self.code_max_iter if max_iter is None else max_iter,
                     tol=self.code_tol if tol is None else tol).codes

    @torch.no_grad()
    def optimal_codes(self, x: torch.Tensor, max_iter: int = 3000, tol: float = 1e-6) -> torch.Tensor:
        r"""The lasso codes of the learned dictionary, :math:`\arg\min_z \tfrac12\lVert x - zD\rVert^2
        + \lambda\lVert z\rVert_1` (no encoder term), by FISTA."""
        return fista(self._check_x(x), self.dictionary, self.lam, max_iter=max_iter, tol=tol).codes

    def energy(self, x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        r"""The mean over points of :math:`E(x, z)`."""
        prediction = self.encode(x)
        return (sparse_coding_objective(x, codes, self.dictionary, self.lam)
                + 0.5 * self.alpha * (codes - prediction).pow(2).sum(-1).mean())

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        r"""One PSD step's loss: infer :math:`z^*` (no gradient), then return the mean over points
        of :math:`E(x, z^*)`, whose gradient moves the dictionary and the encoder."""
        return self.energy(x, self.infer_codes(x))

    def reconstruction_error(self, x: torch.Tensor) -> float:
        r"""The mean per point of :math:`\lVert x - \Phi(x) D\rVert^2` (the fast encoder's codes)."""
        with torch.no_grad():
            return float((x - self.decode(self.encode(x))).pow(2).sum(-1).mean())

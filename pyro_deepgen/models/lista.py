r"""LISTA (Gregor & LeCun 2010): ISTA unrolled into ``T`` layers whose matrices and thresholds
are learned, a fast encoder that approximates the lasso codes of a fixed dictionary.

ISTA for the codes of :math:`x` under the dictionary :math:`D \in \mathbb{R}^{K\times d}` (atoms
as rows; :mod:`pyro_deepgen.infer.sparse_coding`) iterates
:math:`z_{k+1} = h_{\lambda/L}(x D^\top/L + z_k (I - DD^\top/L))` from :math:`z_0 = 0`.
LISTA keeps that shape and learns its pieces:

.. math::

    b = x W_e,\qquad z_1 = h_{\theta_1}(b),\qquad z_{t+1} = h_{\theta_{t+1}}(b + z_t S_t),
    \quad t = 1, \dots, T-1,

with the encoder matrix :math:`W_e \in \mathbb{R}^{d\times K}`, the "mutual inhibition" matrices
:math:`S_t \in \mathbb{R}^{K\times K}` and one threshold per atom and layer :math:`\theta_t \in
\mathbb{R}^K`. At initialization :math:`W_e = D^\top/L`, :math:`S_t = I - DD^\top/L`,
:math:`\theta_t = \lambda/L`, so ``T`` layers compute exactly ``T`` ISTA iterations from zero.
The paper shares one :math:`S` and :math:`\theta` across layers (``tied=True``, a recurrent
network); untied layers (the default; Chen et al. 2018 study both) train to lower error.

Training regresses the optimal codes :math:`Z^*` (e.g. from
:func:`pyro_deepgen.infer.sparse_coding.fista`): :meth:`LISTA.code_loss` is the mean over points of
:math:`\lVert z_T(x) - z^*\rVert^2`, Gregor & LeCun's loss. The code error reported is
:math:`\lVert Z_T - Z^*\rVert_F / \lVert Z^*\rVert_F`, and
:func:`pyro_deepgen.infer.sparse_coding.ista_iterations_to_reach` says how many ISTA iterations
reach the same error. The dictionary and :math:`\lambda` are fixed buffers: they define the target.

References: K. Gregor, Y. LeCun, *Learning fast approximations of sparse coding*, ICML 2010.
X. Chen, J. Liu, Z. Wang, W. Yin, *Theoretical linear convergence of unfolded ISTA and its
practical weights and thresholds*, NeurIPS 2018.
"""
import torch
from torch import nn

from .._checks import finite_float, positive_int
from ..infer.sparse_coding import lipschitz_constant, soft_threshold, sparse_coding_objective


class LISTA(nn.Module):
    r"""``T`` unrolled ISTA layers with learned :math:`W_e`, :math:`S_t`, :math:`\theta_t`,
    initialized to ISTA (see the module's docstring for the math).

    :param dictionary: :math:`D`, shape ``(K, d)`` (atoms as rows); kept as a buffer.
    :param lam: :math:`\lambda \ge 0` of the lasso whose codes are approximated.
    :param layers: :math:`T \ge 1`.
    :param tied: share :math:`S` and :math:`\theta` across layers (the paper's recurrent form).
    """

    def __init__(self, dictionary: torch.Tensor, lam: float, layers: int, *, tied: bool = False) -> None:
        super().__init__()
        if not torch.is_tensor(dictionary) or dictionary.dim() != 2:
            raise ValueError(f"dictionary must be a 2-D tensor (atoms, features), "
                             f"got {getattr(dictionary, 'shape', type(dictionary))}")
        self.lam = finite_float(lam, "lam", low=0.0)
        self.layers = positive_int(layers, "layers")
        self.tied = bool(tied)
        dictionary = dictionary.detach().clone()
        lipschitz = lipschitz_constant(dictionary)
        if not float(lipschitz) > 0:
            raise ValueError("dictionary is all zeros: give it at least one non-zero atom")
        atoms = dictionary.shape[0]
        self.register_buffer("dictionary", dictionary)
        self.W_e = nn.Parameter(dictionary.T / lipschitz)
        inhibition = torch.eye(atoms, dtype=dictionary.dtype, device=dictionary.device) \
            - dictionary @ dictionary.T / lipschitz
        n_s = 1 if tied else self.layers - 1
        self.S = nn.Parameter(inhibition.expand(n_s, atoms, atoms).clone())
        n_theta = 1 if tied else self.layers
        self.theta = nn.Parameter(torch.full((n_theta, atoms), float(self.lam / lipschitz),
                                             dtype=dictionary.dtype, device=dictionary.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r"""The codes :math:`z_T(x)`, shape ``(n, K)``."""
        if x.dim() != 2 or x.shape[1] != self.dictionary.shape[1]:
            raise ValueError(f"x must be a tensor of shape (points, {self.dictionary.shape[1]}), got {tuple(x.shape)}")
        b = x @ self.W_e
        z = soft_threshold(b, self.theta[0])
        for t in range(1, self.layers):
            s = self.S[0 if self.tied else t - 1]
            z = soft_threshold(torch.addmm(b, z, s), self.theta[0 if self.tied else t])
        return z

    encode = forward

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """:math:`z D`, shape ``(n, d)``."""
        return codes @ self.dictionary

    def code_loss(self, x: torch.Tensor, z_star: torch.Tensor) -> torch.Tensor:
        r"""The mean over points of :math:`\lVert z_T(x) - z^*\rVert^2` (the training loss)."""
        return (self(x) - z_star).pow(2).sum(-1).mean()

    def objective(self, x: torch.Tensor) -> torch.Tensor:
        r"""The lasso objective at LISTA's codes, the mean over points of
        :math:`\tfrac12\lVert x - z_T D\rVert^2 + \lambda\lVert z_T\rVert_1`."""
        return sparse_coding_objective(x, self(x), self.dictionary, self.lam)

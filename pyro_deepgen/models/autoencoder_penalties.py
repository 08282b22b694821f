r"""The regularizers of :class:`~pyro_deepgen.models.Autoencoder`, as small objects.

An autoencoder minimizes

.. math:: \frac1n \sum_i \ell\big(x_i, \Psi(\Phi(\tilde x_i))\big) + \sum_r R_r(\Phi, x_i),

and each object here supplies one piece: a per-point penalty :math:`R_r` (``value``)
and/or a corruption :math:`x \mapsto \tilde x` of the encoder's input (``corrupt``).

- :class:`L1`: :math:`\lambda \|\Phi(x)\|_1`, the sparse autoencoder (equivalently a Laplace
  prior on the code, see :meth:`~pyro_deepgen.models.Autoencoder.model`);
- :class:`Contractive`: :math:`\lambda \|J_\Phi(x)\|_F^2`, the contractive autoencoder
  (Rifai et al. 2011), exact or by Hutchinson's estimator;
- :class:`Denoising`: no penalty; the encoder sees a corrupted input (masking noise or
  Gaussian noise) and the loss compares the decoder's output with the clean input (Vincent et
  al. 2008).

**References**: S. Rifai, P. Vincent, X. Muller, X. Glorot, Y. Bengio, *Contractive
Auto-Encoders: Explicit Invariance During Feature Extraction*, ICML 2011. P. Vincent,
H. Larochelle, Y. Bengio, P.-A. Manzagol, *Extracting and Composing Robust Features with
Denoising Autoencoders*, ICML 2008. M. F. Hutchinson, *A stochastic estimator of the trace of
the influence matrix for Laplacian smoothing splines*, 1990.
"""
from typing import Optional, Tuple

import torch
from torch import nn
from torch.func import jacrev, vmap

from .._checks import finite_float, one_of, positive_int

CONTRACTIVE_METHODS = ("auto", "closed_form", "jacobian", "hutchinson")
CORRUPTIONS = ("masking", "gaussian")
#: activations with a closed-form derivative :math:`\sigma'(a)` written through the output
#: :math:`h = \sigma(a)`: sigmoid :math:`h(1-h)`, tanh :math:`1-h^2`, ReLU :math:`1[h>0]`,
#: identity :math:`1`.
_DERIVATIVE_FROM_OUTPUT = {
    nn.Sigmoid: lambda h: h * (1 - h),
    nn.Tanh: lambda h: 1 - h * h,
    nn.ReLU: lambda h: (h > 0).to(h.dtype),
    nn.Identity: lambda h: torch.ones_like(h),
}


class Penalty:
    """The contract of a regularizer: ``value(encoder, x, code)`` returns the per-point penalty,
    shape ``(batch,)``, of the code ``code = encoder(x)``; ``corrupt(x)`` returns the input the
    encoder sees in training (default: ``x`` itself). Both are called by
    :meth:`~pyro_deepgen.models.Autoencoder.objective`."""

    def value(self, encoder: nn.Module, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return code.new_zeros(code.shape[:-1])

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        return x


class L1(Penalty):
    r""":math:`R(z) = \lambda \|z\|_1` on the code :math:`z = \Phi(x)`.

    :param float lam: :math:`\lambda \ge 0`.
    """

    def __init__(self, lam: float) -> None:
        self.lam = finite_float(lam, "lam", low=0.0)

    def value(self, encoder, x, code):
        return self.lam * code.abs().sum(-1)

    def __repr__(self) -> str:
        return f"L1(lam={self.lam:g})"


def one_layer(encoder: nn.Module) -> Optional[Tuple[nn.Linear, type]]:
    """``(linear, activation class)`` when ``encoder`` is ``Linear`` or ``Sequential(Linear,
    act)`` with ``act`` one of sigmoid, tanh, ReLU or identity; else ``None``."""
    if isinstance(encoder, nn.Linear):
        return encoder, nn.Identity
    if isinstance(encoder, nn.Sequential) and len(encoder) == 2 and isinstance(encoder[0], nn.Linear):
        kind = type(encoder[1])
        if kind in _DERIVATIVE_FROM_OUTPUT:
            return encoder[0], kind
    return None


def jacobian_frobenius_sq(encoder: nn.Module, x: torch.Tensor, method: str = "auto", probes: int = 1,
                          code: Optional[torch.Tensor] = None) -> torch.Tensor:
    r""":math:`\|J_\Phi(x_i)\|_F^2` for each row of ``x`` (shape ``(batch,)``), differentiable in
    the encoder's parameters.

    - ``"closed_form"`` (one-layer encoder :math:`h = \sigma(Wx + b)`, see :func:`one_layer`):
      :math:`J = \mathrm{diag}(\sigma'(a)) W`, so
      :math:`\|J\|_F^2 = \sum_j \sigma'(a_j)^2 \|W_{j\cdot}\|^2`, with :math:`\sigma'` written
      through :math:`h` (sigmoid: :math:`h(1-h)`, tanh: :math:`1-h^2`): :math:`O(d h)` per point
      and no Jacobian is formed.
    - ``"jacobian"``: the exact Jacobian of any encoder, ``torch.func.vmap(jacrev(encoder))``,
      :math:`O(h)` backward passes per point (vectorized). The encoder must map each row on its
      own (no batch statistics).
    - ``"hutchinson"``: :math:`\frac1P \sum_{p=1}^P \|J^\top u_p\|^2` with Rademacher
      :math:`u_p \in \{\pm1\}^h`, unbiased since :math:`\mathbb E[u u^\top] = I`; its variance
      is :math:`\frac2P \sum_{j\ne k} (J J^\top)_{jk}^2` (zero for orthogonal rows). One
      vector-Jacobian product per probe, by double backpropagation.
    - ``"auto"``: ``"closed_form"`` when it applies, else ``"jacobian"``.

    :param code: ``encoder(x)`` if already computed (the closed form reuses it).
    """
    method = one_of(method, "method", CONTRACTIVE_METHODS)
    layer = one_layer(encoder)
    if method == "auto":
        method = "closed_form" if layer is not None else "jacobian"
    if method == "closed_form":
        if layer is None:
            raise ValueError("method='closed_form' needs a one-layer encoder, nn.Linear or nn.Sequential(nn.Linear, "
                             "nn.Sigmoid|nn.Tanh|nn.ReLU); use method='jacobian' or 'hutchinson' for this encoder")
        linear, kind = layer
        h = encoder(x) if code is None else code
        slope = _DERIVATIVE_FROM_OUTPUT[kind](h)
        return (slope * slope) @ (linear.weight * linear.weight).sum(1)
    if method == "jacobian":
        jac = vmap(jacrev(encoder))(x)  # (batch, h, d)
        return jac.pow(2).flatten(1).sum(-1)
    probes = positive_int(probes, "probes")
    x_in = x.detach().unsqueeze(0).expand(probes, *x.shape).reshape(-1, x.shape[-1]).requires_grad_(True)
    with torch.enable_grad():
        out = encoder(x_in)
        u = torch.randint(0, 2, out.shape, device=out.device).to(out.dtype) * 2 - 1
        (vjp,) = torch.autograd.grad(out, x_in, grad_outputs=u, create_graph=True)
    return vjp.pow(2).sum(-1).reshape(probes, x.shape[0]).mean(0)


class Contractive(Penalty):
    r""":math:`R(x) = \lambda \|J_\Phi(x)\|_F^2`, the squared Frobenius norm of the encoder's
    Jacobian at the (possibly corrupted) input (Rifai et al. 2011).

    :param float lam: :math:`\lambda \ge 0`.
    :param str method: ``"auto"``, ``"closed_form"``, ``"jacobian"`` or ``"hutchinson"`` (see
        :func:`jacobian_frobenius_sq`).
    :param int probes: Rademacher probes of the Hutchinson estimate (default 1).
    """

    def __init__(self, lam: float, method: str = "auto", probes: int = 1) -> None:
        self.lam = finite_float(lam, "lam", low=0.0)
        self.method = one_of(method, "method", CONTRACTIVE_METHODS)
        self.probes = positive_int(probes, "probes")

    def value(self, encoder, x, code):
        return self.lam * jacobian_frobenius_sq(encoder, x, self.method, self.probes, code=code)

    def __repr__(self) -> str:
        return f"Contractive(lam={self.lam:g}, method={self.method!r}, probes={self.probes})"


class Denoising(Penalty):
    r"""The denoising autoencoder's corruption :math:`\tilde x \sim C(\tilde x\mid x)` of the
    encoder's input (no penalty term):

    - ``"masking"``: each entry is set to 0 with probability ``level`` (Vincent et al. 2008);
    - ``"gaussian"``: :math:`\tilde x = x + \text{level}\cdot\varepsilon`,
      :math:`\varepsilon\sim\mathcal N(0, I)`.

    For small Gaussian noise the denoising objective approaches the reconstruction error plus
    :math:`\text{level}^2 \|J_{\Psi\circ\Phi}(x)\|_F^2` (Alain & Bengio 2014), a contractive
    penalty on the whole reconstruction map. The noise uses torch's global generator (seeded by
    :func:`~pyro_deepgen.train.fit`).

    :param str corruption: ``"masking"`` or ``"gaussian"``.
    :param float level: masking probability in [0, 1), or the noise standard deviation >= 0.
    """

    def __init__(self, corruption: str = "masking", level: float = 0.3) -> None:
        self.corruption = one_of(corruption, "corruption", CORRUPTIONS)
        self.level = finite_float(level, "level", low=0.0)
        if corruption == "masking" and not self.level < 1:
            raise ValueError(f"level must be a masking probability in [0, 1) for corruption='masking', got {level!r}")

    def corrupt(self, x):
        if self.level == 0:
            return x
        if self.corruption == "masking":
            keep = torch.rand_like(x) >= self.level
            return x * keep.to(x.dtype)
        return x + self.level * torch.randn_like(x)

    def __repr__(self) -> str:
        return f"Denoising(corruption={self.corruption!r}, level={self.level:g})"

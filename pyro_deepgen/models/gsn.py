r"""Generative stochastic networks: a denoising autoencoder whose Markov chain is the model.

A GSN (Bengio et al. 2013, 2014) learns a reconstruction distribution :math:`P_\theta(x\mid\tilde
x)` from a fixed corruption process :math:`C(\tilde x\mid x)`. The two define the Markov chain

.. math:: x_t \;\xrightarrow{\;C\;}\; \tilde x_t \;\xrightarrow{\;P_\theta\;}\; x_{t+1},\qquad
          T(x' \mid x) = \sum_{\tilde x} C(\tilde x\mid x)\,P_\theta(x'\mid\tilde x),

and the model is its stationary distribution :math:`\pi_\theta`. When :math:`P_\theta(x\mid\tilde
x)` is a consistent estimator of the true conditional :math:`P(x\mid\tilde x)` of the pair
:math:`x\sim p_\text{data}`, :math:`\tilde x\sim C(\cdot\mid x)`, and the chain is ergodic, then
:math:`\pi_\theta\to p_\text{data}` (Bengio, Yao, Alain, Vincent 2013, Theorem 1). No energy or
normalized density is ever written down: the chain is the model.

**Corruption** :math:`C(\tilde x\mid x)`, per pixel with level :math:`p`:

- ``"salt-and-pepper"`` (binary data): with probability :math:`p` the pixel is replaced by a fair
  coin, :math:`C(\tilde x_i\mid x_i) = (1-p)[\tilde x_i = x_i] + p/2`;
- ``"flip"`` (binary data): the bit is flipped with probability :math:`p`;
- ``"gaussian"`` (continuous data): :math:`\tilde x = x + p\,\varepsilon`,
  :math:`\varepsilon\sim\mathcal N(0, I)`.

**Reconstruction** :math:`P_\theta(x\mid\tilde x)`: an MLP; factorized Bernoulli logits for the
binary corruptions, a factorized Gaussian (mean from the MLP, a learned per-pixel scale) for
``"gaussian"``.

**Walkback** (Bengio et al. 2013, Sec. 3.4): training only on :math:`\tilde x\sim C(\cdot\mid
x)` leaves the chain's spurious modes far from the data unvisited. Walkback runs the chain
:math:`K` steps from each training point, :math:`\tilde x_1\sim C(\cdot\mid x)`,
:math:`x^*_k\sim P_\theta(\cdot\mid\tilde x_k)`, :math:`\tilde x_{k+1}\sim C(\cdot\mid x^*_k)`,
and asks every step to reconstruct the *original* :math:`x`:

.. math:: \mathcal L(x) = \frac1K\sum_{k=1}^K -\log P_\theta(x\mid\tilde x_k)

(the samples :math:`x^*_k` are not differentiated through). :math:`K=1` is the denoising
autoencoder's loss. :meth:`GSN.walkback_loss` is a loss callable for
:func:`pyro_deepgen.train.fit`.

**Sampling** runs many chains at once (:meth:`GSN.chain`), and :class:`GSNKernel` exposes one
transition of all of them as a :class:`pyro.infer.mcmc.MCMCKernel`, so that
:class:`pyro.infer.MCMC` gives progress bars and draws, and arviz the mixing diagnostics
(:math:`\hat R` and ESS of summary statistics of the chains).

**References**: Y. Bengio, L. Yao, G. Alain, P. Vincent, *Generalized Denoising Auto-Encoders as
Generative Models*, NeurIPS 2013, arXiv:1305.6663. Y. Bengio, E. Thibodeau-Laufer, G. Alain,
J. Yosinski, *Deep Generative Stochastic Networks Trainable by Backprop*, ICML 2014,
arXiv:1306.1091.
"""
import math
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from pyro.infer.mcmc.mcmc_kernel import MCMCKernel
from torch import nn

from .._checks import finite_float, one_of, positive_int, positive_ints
from ..nn import MLP

NOISES = ("salt-and-pepper", "flip", "gaussian")
#: the corruption level when none is given (Bengio et al. 2014 used salt-and-pepper 0.4 on MNIST)
DEFAULT_NOISE_LEVEL = {"salt-and-pepper": 0.4, "flip": 0.2, "gaussian": 0.3}


class GSN(nn.Module):
    r"""A generative stochastic network (see the module doc): corruption ``noise`` at level
    ``noise_level``, a reconstruction MLP ``x_dim -> hidden -> x_dim`` (tanh), and ``walkback``
    steps in :meth:`walkback_loss`.

    :param x_dim: data dimension.
    :param hidden: hidden layer sizes of the reconstruction network.
    :param noise: ``"salt-and-pepper"`` (default), ``"flip"`` (binary data) or ``"gaussian"``.
    :param noise_level: :math:`p` (a probability in (0, 1) for the binary corruptions, a standard
        deviation > 0 for ``"gaussian"``); ``None``: :data:`DEFAULT_NOISE_LEVEL`.
    :param walkback: :math:`K`, the walkback steps of the training loss.
    """

    def __init__(self, x_dim: int, hidden: Sequence[int] = (500,), noise: str = "salt-and-pepper",
                 noise_level: Optional[float] = None, walkback: int = 1) -> None:
        super().__init__()
        self.x_dim = positive_int(x_dim, "x_dim")
        self.noise = one_of(noise, "noise", NOISES)
        level = DEFAULT_NOISE_LEVEL[noise] if noise_level is None else noise_level
        level = finite_float(level, "noise_level", low=0.0, strict=True)
        if self.binary and level >= 1:
            raise ValueError(f"noise_level must be a probability in (0, 1) for noise={noise!r}, got {level!r}")
        self.noise_level = level
        self.walkback = positive_int(walkback, "walkback")
        self.net = MLP(self.x_dim, positive_ints(hidden, "hidden"), self.x_dim, activation="tanh")
        if not self.binary:
            self.log_scale = nn.Parameter(torch.full((self.x_dim,), math.log(0.2)))

    @property
    def binary(self) -> bool:
        """Whether the data are binary (salt-and-pepper or flip corruption, Bernoulli reconstruction)."""
        return self.noise != "gaussian"

    def corrupt(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        r"""One draw :math:`\tilde x\sim C(\cdot\mid x)`."""
        p = self.noise_level
        if self.noise == "gaussian":
            return x + p * torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)
        hit = torch.rand(x.shape, dtype=x.dtype, device=x.device, generator=generator) < p
        if self.noise == "flip":
            return torch.where(hit, 1 - x, x)
        coin = (torch.rand(x.shape, dtype=x.dtype, device=x.device, generator=generator) < 0.5).to(x.dtype)
        return torch.where(hit, coin, x)

    def reconstruction_params(self, x_tilde: torch.Tensor) -> torch.Tensor:
        """The Bernoulli logits (binary) or Gaussian means of :math:`P_\\theta(x\\mid\\tilde x)`."""
        return self.net(x_tilde)

    def reconstruction_log_prob(self, x: torch.Tensor, x_tilde: torch.Tensor) -> torch.Tensor:
        r""":math:`\log P_\theta(x\mid\tilde x)` per row (summed over pixels); binary: the Bernoulli
        cross-entropy, also for grey values :math:`x\in[0, 1]`."""
        out = self.reconstruction_params(x_tilde)
        if self.binary:
            return -F.binary_cross_entropy_with_logits(out, x, reduction="none").sum(-1)
        scale = self.log_scale.exp()
        return (-0.5 * ((x - out) / scale).pow(2) - self.log_scale - 0.5 * math.log(2 * math.pi)).sum(-1)

    def reconstruct(self, x_tilde: torch.Tensor,
                    generator: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        r"""One draw :math:`x'\sim P_\theta(\cdot\mid\tilde x)` and the mean of that distribution."""
        out = self.reconstruction_params(x_tilde)
        if self.binary:
            mean = torch.sigmoid(out)
            draw = (torch.rand(mean.shape, dtype=mean.dtype, device=mean.device, generator=generator) < mean)
            return draw.to(mean.dtype), mean
        eps = torch.randn(out.shape, dtype=out.dtype, device=out.device, generator=generator)
        return out + self.log_scale.exp() * eps, out

    def step(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        r"""One transition :math:`x\to\tilde x\to x'` of every row (chain) of ``x``: returns
        :math:`x'` and the mean of :math:`P_\theta(\cdot\mid\tilde x)`."""
        return self.reconstruct(self.corrupt(x, generator), generator)

    def walkback_loss(self, x: torch.Tensor, walkback: Optional[int] = None) -> torch.Tensor:
        r"""The walkback loss :math:`\sum_n\frac1K\sum_k -\log P_\theta(x_n\mid\tilde x_{n,k})`
        (summed over the batch, so :func:`~pyro_deepgen.train.fit` reports it per data point)."""
        k_steps = self.walkback if walkback is None else positive_int(walkback, "walkback")
        total = x.new_zeros(())
        current = x
        for k in range(k_steps):
            x_tilde = self.corrupt(current)
            total = total - self.reconstruction_log_prob(x, x_tilde).sum()
            if k + 1 < k_steps:
                with torch.no_grad():
                    current, _ = self.reconstruct(x_tilde)
        return total / k_steps

    def loss(self, model, guide, x: torch.Tensor, *rest: torch.Tensor, **kwargs) -> torch.Tensor:
        """:meth:`walkback_loss` as a loss callable ``loss(model, guide, x, ...)`` for
        :func:`~pyro_deepgen.train.fit` (``model`` and ``guide`` are ignored; pass the GSN as
        ``module``)."""
        return self.walkback_loss(x)

    def initial_state(self, num_chains: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``num_chains`` starting points: fair coins (binary) or :math:`U(0, 1)` pixels."""
        ref = self.net.net[0].weight
        u = torch.rand(num_chains, self.x_dim, dtype=ref.dtype, device=ref.device, generator=generator)
        return (u < 0.5).to(ref.dtype) if self.binary else u

    @torch.no_grad()
    def chain(self, num_chains: int, steps: int, x0: Optional[torch.Tensor] = None,
              generator: Optional[torch.Generator] = None, every: Optional[int] = None):
        """Run ``num_chains`` chains (vectorized) for ``steps`` transitions from ``x0`` (default
        :meth:`initial_state`); returns the last state and the last reconstruction mean, or, with
        ``every``, the means after every ``every``-th step stacked ``(steps // every, chains, D)``."""
        x = self.initial_state(num_chains, generator) if x0 is None else x0
        means = []
        mean = x
        for t in range(steps):
            x, mean = self.step(x, generator)
            if every is not None and (t + 1) % every == 0:
                means.append(mean)
        if every is not None:
            return torch.stack(means)
        return x, mean

    @torch.no_grad()
    def sample(self, num_samples: int, steps: int = 100, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``num_samples`` independent chains run ``steps`` transitions; returns their last
        reconstruction means (grey values in [0, 1] for binary data, clamped for Gaussian)."""
        _, mean = self.chain(num_samples, steps, generator=generator)
        return mean if self.binary else mean.clamp(0, 1)


def mean_intensity(x: torch.Tensor, mean: torch.Tensor) -> Dict[str, torch.Tensor]:
    """The default summary statistic of :class:`GSNKernel`: each chain's mean reconstruction
    intensity, shape ``(chains,)``."""
    return {"mean_intensity": mean.mean(-1)}


class GSNKernel(MCMCKernel):
    r"""The GSN chain as a :class:`pyro.infer.mcmc.MCMCKernel`: one :meth:`sample` call moves all
    ``num_chains`` chains one step :math:`x\to\tilde x\to x'` (vectorized).

    The state is ``{"x": (num_chains, D)}`` plus the summary statistics
    ``statistics(x', mean)`` (a dict of ``(num_chains, ...)`` tensors; default
    :func:`mean_intensity`). ``save_params`` (what :class:`~pyro.infer.MCMC` keeps) is the
    statistics only, unless ``keep_state``. All chains live in *one* Pyro chain (``MCMC(...,
    num_chains=1)``), because Pyro runs several chains in separate processes or one after the
    other; :meth:`by_chain` reshapes ``mcmc.get_samples()`` to ``(num_chains, draws, ...)`` for
    :func:`pyro_deepgen.diagnostics.rhat` / ``ess`` and arviz.

    Unlike Pyro's HMC/NUTS, this kernel has no ``model`` and no ``potential_fn``: a GSN defines
    its transition operator directly and its stationary distribution only implicitly, so there is
    no energy to evaluate, no Metropolis correction and no constrained sites (``transforms`` is
    empty). :class:`~pyro.infer.MCMC` serves as the runner (warm-up, progress, draws,
    ``summary()``); ``MCMC.run()`` takes no arguments.

    :param gsn: a trained :class:`GSN`.
    :param num_chains: chains run side by side.
    :param x0: starting states ``(num_chains, D)``; default :meth:`GSN.initial_state`.
    :param statistics: ``(x, mean) -> dict`` of per-chain summaries.
    :param keep_state: also keep the states ``x`` in the draws.
    """

    def __init__(self, gsn: GSN, num_chains: int = 16, x0: Optional[torch.Tensor] = None,
                 statistics: Callable[[torch.Tensor, torch.Tensor], Dict[str, torch.Tensor]] = mean_intensity,
                 keep_state: bool = False) -> None:
        self.gsn = gsn
        self.num_chains = positive_int(num_chains, "num_chains")
        if x0 is not None and tuple(x0.shape) != (self.num_chains, gsn.x_dim):
            raise ValueError(f"x0 must have shape ({self.num_chains}, {gsn.x_dim}), got {tuple(x0.shape)}")
        self.statistics = statistics
        self.keep_state = keep_state
        self.transforms: Dict[str, object] = {}
        self.model = None
        self._initial = None if x0 is None else self._with_statistics(x0, x0)
        self._changed = float("nan")
        self.save_params = None

    def _with_statistics(self, x: torch.Tensor, mean: torch.Tensor) -> Dict[str, torch.Tensor]:
        stats = self.statistics(x, mean)
        if "x" in stats:
            raise ValueError("statistics must not return the key 'x' (the chain state)")
        return {"x": x, **stats}

    def setup(self, warmup_steps: int, *args, **kwargs) -> None:
        if args or kwargs:
            raise ValueError("GSNKernel takes no model arguments: call MCMC(...).run() without arguments")
        if self._initial is None:
            x0 = self.gsn.initial_state(self.num_chains)
            self._initial = self._with_statistics(x0, x0)
        names = sorted(self._initial)
        self.save_params = names if self.keep_state else [n for n in names if n != "x"]

    @property
    def initial_params(self) -> Dict[str, torch.Tensor]:
        if self._initial is None:
            x0 = self.gsn.initial_state(self.num_chains)
            self._initial = self._with_statistics(x0, x0)
        return self._initial

    @initial_params.setter
    def initial_params(self, params: Dict[str, torch.Tensor]) -> None:
        x = params["x"]
        self._initial = self._with_statistics(x, x)

    @torch.no_grad()
    def sample(self, params: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        x = params["x"]
        x_next, mean = self.gsn.step(x)
        self._changed = float((x_next != x).to(x.dtype).mean())
        return self._with_statistics(x_next, mean)

    def logging(self) -> Dict[str, str]:
        return {"changed": f"{self._changed:.3f}"}

    def diagnostics(self) -> Dict[str, float]:
        return {}

    @staticmethod
    def by_chain(samples: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """``mcmc.get_samples()`` (draws, num_chains, ...) as (num_chains, draws, ...), the
        layout of :func:`pyro_deepgen.diagnostics.rhat` with ``group_by_chain=True``."""
        return {k: v.transpose(0, 1) for k, v in samples.items()}

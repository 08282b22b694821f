r"""A Gaussian discretized onto an evenly spaced grid, the decoder of 8-bit images."""
from typing import Optional

import torch
from pyro.distributions import TorchDistribution, constraints
from torch.distributions.utils import broadcast_all
from torch.special import log_ndtr


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x <= 0, accurate at both ends."""
    return torch.where(x > -0.6931, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def log_normal_cdf_diff(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r""":math:`\log(\Phi(b) - \Phi(a))` for :math:`a < b`, stable in both tails."""
    flip = a > 0  # right tail: Phi(b) - Phi(a) = Phi(-a) - Phi(-b)
    lo, hi = torch.where(flip, -b, a), torch.where(flip, -a, b)
    log_hi = log_ndtr(hi)
    return log_hi + _log1mexp((log_ndtr(lo) - log_hi).clamp(max=0))


class DiscretizedNormal(TorchDistribution):
    r"""A Normal distribution discretized onto ``num_levels`` points evenly spaced in [low, high].

    The grid point :math:`v_k` gets the mass of the Normal in its bin of width
    :math:`\delta = (\mathrm{high}-\mathrm{low})/(\mathrm{num\_levels}-1)`, and the two end
    points get the tails:

    .. math::

        P(v_k) = \Phi\Big(\frac{v_k + \delta/2 - \mu}{\sigma}\Big)
               - \Phi\Big(\frac{v_k - \delta/2 - \mu}{\sigma}\Big),
        \quad \text{with } v_0 - \delta/2 \to -\infty,\ v_{K-1} + \delta/2 \to +\infty.

    This is Ho et al.'s decoder :math:`p(x_0\mid x_1)` for 8-bit images scaled to [-1, 1]
    (``num_levels=256``); its log-probabilities are in nats of the discrete data, so that
    :math:`-\log P/(D\log 2)` is in bits per dimension. ``log_prob`` is univariate; use
    ``.to_event(...)`` for images.

    :param loc: mean :math:`\mu`.
    :param scale: standard deviation :math:`\sigma > 0`.
    :param int num_levels: number of grid points (256 for 8-bit data), at least 2.
    :param float low: first grid point (default -1).
    :param float high: last grid point (default 1).

    **Reference**: J. Ho, A. Jain, P. Abbeel, *Denoising Diffusion Probabilistic Models*,
    arXiv:2006.11239, Eq. (13).
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.real  # the grid points
    has_rsample = False

    def __init__(
        self,
        loc: torch.Tensor,
        scale: torch.Tensor,
        num_levels: int = 256,
        low: float = -1.0,
        high: float = 1.0,
        validate_args: Optional[bool] = None,
    ) -> None:
        if int(num_levels) < 2:
            raise ValueError(f"num_levels must be at least 2, got {num_levels}")
        if not high > low:
            raise ValueError(f"need low < high, got low={low}, high={high}")
        self.loc, self.scale = broadcast_all(loc, scale)
        self.num_levels, self.low, self.high = int(num_levels), float(low), float(high)
        self.bin_width = (self.high - self.low) / (self.num_levels - 1)
        super().__init__(self.loc.shape, torch.Size(), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(DiscretizedNormal, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc, new.scale = self.loc.expand(batch_shape), self.scale.expand(batch_shape)
        new.num_levels, new.low, new.high = self.num_levels, self.low, self.high
        new.bin_width = self.bin_width
        super(DiscretizedNormal, new).__init__(batch_shape, torch.Size(), validate_args=False)
        new._validate_args = self._validate_args
        return new

    def round(self, x: torch.Tensor) -> torch.Tensor:
        """The grid point nearest to ``x`` (clamped to [low, high])."""
        k = ((x - self.low) / self.bin_width).round().clamp(0, self.num_levels - 1)
        return self.low + k * self.bin_width

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            noise = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
            return self.round(self.loc + self.scale * noise)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        half = 0.5 * self.bin_width
        a = (value - half - self.loc) / self.scale
        b = (value + half - self.loc) / self.scale
        interior = log_normal_cdf_diff(a, b)
        lowest = log_ndtr(b)
        highest = log_ndtr(-a)
        upper = torch.where(value > self.high - half, highest, interior)
        return torch.where(value < self.low + half, lowest, upper)

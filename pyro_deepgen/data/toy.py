r"""Two-dimensional toy data sets and the test energies of Rezende & Mohamed (2015).

**Data sets** (for flow densities trained by maximum likelihood): ``make_<name>(n, seed=0,
noise=...) -> Tensor (n, 2)``, all roughly inside the window :math:`[-4, 4]^2`, drawn with a
private :class:`torch.Generator` so that they never touch the global random state. They are
collected in :data:`TOY_DATASETS`.

**Energies** (for flows fitted by minimizing :math:`\mathrm{KL}(q\,\|\,p)`): the four
unnormalized densities :math:`p(z) \propto e^{-U(z)}` of Table 1 of [1],

.. math::

    U_1(z) &= \tfrac12\Big(\frac{\|z\| - 2}{0.4}\Big)^2
        - \log\Big(e^{-\frac12 (\frac{z_1 - 2}{0.6})^2}
        + e^{-\frac12 (\frac{z_1 + 2}{0.6})^2}\Big),\\
    U_2(z) &= \tfrac12\Big(\frac{z_2 - w_1(z)}{0.4}\Big)^2,\\
    U_3(z) &= -\log\Big(e^{-\frac12 (\frac{z_2 - w_1(z)}{0.35})^2}
        + e^{-\frac12 (\frac{z_2 - w_1(z) + w_2(z)}{0.35})^2}\Big),\\
    U_4(z) &= -\log\Big(e^{-\frac12 (\frac{z_2 - w_1(z)}{0.4})^2}
        + e^{-\frac12 (\frac{z_2 - w_1(z) + w_3(z)}{0.35})^2}\Big),

with :math:`w_1(z) = \sin(2\pi z_1 / 4)`, :math:`w_2(z) = 3 e^{-\frac12 ((z_1 - 1)/0.6)^2}`,
:math:`w_3(z) = 3\,\sigma((z_1 - 1)/0.3)`. The functions ``energy_u1`` ... ``energy_u4`` return
exactly these :math:`U` (the log-sum-exps are computed stably).

:math:`U_2, U_3, U_4` do not depend on :math:`z_1` far from the origin, so
:math:`\int e^{-U} = \infty`: they are not densities, and :math:`\mathrm{KL}(q\,\|\,p)` is
undefined for them. [1] only shows them on the window :math:`[-4, 4]^2`. :class:`EnergyModel`
makes them proper with a **box wall** that is zero inside the window and quadratic outside,

.. math::

    U^{\mathrm{box}}(z) = U(z) + \sum_i \tfrac12
        \Big(\frac{\max(|z_i| - b, 0)}{s}\Big)^2, \qquad b = 4,\ s = 0.5,

so inside the window the target is exactly the paper's, and outside it decays like a Gaussian
of scale :math:`s`. (For :math:`U_1` the wall changes :math:`\log Z` by less than
:math:`10^{-5}`.) The Pyro model puts an improper flat prior on :math:`z \in \mathbb R^2` and
adds :math:`-\beta U^{\mathrm{box}}(z)` with :func:`pyro.factor`, so the joint is
:math:`\tilde p_\beta(z) = e^{-\beta U^{\mathrm{box}}(z)}` and for any guide :math:`q`,

.. math::

    -\mathrm{ELBO}_{\beta=1} + \log Z = \mathrm{KL}(q\,\|\,p) \ge 0,

with :math:`\log Z` from :func:`log_partition_grid`.

**References**: [1] D. J. Rezende, S. Mohamed, *Variational Inference with Normalizing Flows*,
ICML 2015, arXiv:1505.05770. [2] W. Grathwohl et al., *FFJORD*, arXiv:1810.01367 (the
rings, 8 Gaussians and checkerboard data sets).
"""
import math
from typing import Callable, Dict, Optional, Union

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints

Energy = Callable[[torch.Tensor], torch.Tensor]


# -- data sets ------------------------------------------------------------------------------
def _check(n: int, noise: float) -> torch.Generator:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0 (a standard deviation), got {noise!r}")
    return torch.Generator()


def _jitter(x: torch.Tensor, noise: float, gen: torch.Generator) -> torch.Tensor:
    x = x.to(torch.get_default_dtype())
    if noise > 0:
        x = x + noise * torch.randn(x.shape, generator=gen, dtype=x.dtype)
    return x


def make_two_moons(n: int, seed: int = 0, noise: float = 0.1) -> torch.Tensor:
    """Two interleaved half circles (as :func:`sklearn.datasets.make_moons`), centred and
    scaled by 2 so that they fill about :math:`[-3, 3] \\times [-1.5, 1.5]`.

    :param int n: number of points (the upper moon gets ``n - n // 2``).
    :param int seed: seed of the private generator.
    :param float noise: standard deviation of the Gaussian noise before scaling.
    """
    gen = _check(n, noise)
    gen.manual_seed(seed)
    n_out = n - n // 2
    t = math.pi * torch.rand(n, generator=gen, dtype=torch.float64)
    upper = torch.stack([t.cos(), t.sin()], -1)
    lower = torch.stack([1 - t.cos(), 0.5 - t.sin()], -1)
    x = torch.where((torch.arange(n) < n_out)[:, None], upper, lower)
    x = _jitter(x, noise, gen)
    return 2.0 * (x - x.new_tensor([0.5, 0.25]))


def make_rings(n: int, seed: int = 0, noise: float = 0.08) -> torch.Tensor:
    """Three concentric circles of radii 1, 2 and 3 with equal numbers of points ([2]).

    :param float noise: standard deviation of the Gaussian noise added to each point.
    """
    gen = _check(n, noise)
    gen.manual_seed(seed)
    radius = 1.0 + (torch.arange(n) % 3).double()
    t = 2 * math.pi * torch.rand(n, generator=gen, dtype=torch.float64)
    return _jitter(radius[:, None] * torch.stack([t.cos(), t.sin()], -1), noise, gen)


def make_swiss_roll(n: int, seed: int = 0, noise: float = 0.5) -> torch.Tensor:
    """The 2-D swiss roll :math:`t(\\cos t, \\sin t)`, :math:`t \\in [1.5\\pi, 4.5\\pi]`,
    scaled by 1/5 (the roll of :func:`sklearn.datasets.make_swiss_roll` seen from above).

    :param float noise: standard deviation of the Gaussian noise before scaling by 1/5.
    """
    gen = _check(n, noise)
    gen.manual_seed(seed)
    t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=gen, dtype=torch.float64))
    return _jitter(t[:, None] * torch.stack([t.cos(), t.sin()], -1), noise, gen) / 5


def make_8gaussians(n: int, seed: int = 0, noise: float = 0.2) -> torch.Tensor:
    """A mixture of 8 equally weighted Gaussians centred on the circle of radius 2.5 ([2]).

    :param float noise: standard deviation of each component.
    """
    gen = _check(n, noise)
    gen.manual_seed(seed)
    k = torch.randint(8, (n,), generator=gen)
    angle = k.double() * (math.pi / 4)
    return _jitter(2.5 * torch.stack([angle.cos(), angle.sin()], -1), noise, gen)


def make_checkerboard(n: int, seed: int = 0, noise: float = 0.0) -> torch.Tensor:
    """Uniform on the 8 dark squares of a 4x4 checkerboard of side 2 over :math:`[-4, 4]^2` ([2]).

    :param float noise: standard deviation of optional Gaussian jitter (default none).
    """
    gen = _check(n, noise)
    gen.manual_seed(seed)
    x1 = 4 * torch.rand(n, generator=gen, dtype=torch.float64) - 2
    x2 = torch.rand(n, generator=gen, dtype=torch.float64) - 2 * torch.randint(
        2, (n,), generator=gen
    ).double()
    x2 = x2 + torch.floor(x1) % 2
    return _jitter(2 * torch.stack([x1, x2], -1), noise, gen)


#: The data sets by name, ``TOY_DATASETS[name](n, seed=0) -> Tensor (n, 2)``.
TOY_DATASETS: Dict[str, Callable[..., torch.Tensor]] = {
    "two_moons": make_two_moons,
    "rings": make_rings,
    "swiss_roll": make_swiss_roll,
    "8gaussians": make_8gaussians,
    "checkerboard": make_checkerboard,
}


# -- energies -------------------------------------------------------------------------------
def _check_z(z: torch.Tensor) -> None:
    if not isinstance(z, torch.Tensor) or z.dim() < 1 or z.shape[-1] != 2:
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise ValueError(f"z must be a tensor of shape (..., 2), got {shape}")


def _w1(z1: torch.Tensor) -> torch.Tensor:
    return torch.sin(0.5 * math.pi * z1)


def _log_two_bumps(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log(exp(-a^2/2) + exp(-b^2/2)), stably."""
    return torch.logaddexp(-0.5 * a**2, -0.5 * b**2)


def energy_u1(z: torch.Tensor) -> torch.Tensor:
    """:math:`U_1` of [1] (a ring of radius 2 with two modes on the :math:`z_1` axis);
    ``z`` of shape ``(..., 2)``, returns shape ``(...)``."""
    _check_z(z)
    z1 = z[..., 0]
    ring = 0.5 * ((z.norm(dim=-1) - 2) / 0.4) ** 2
    return ring - _log_two_bumps((z1 - 2) / 0.6, (z1 + 2) / 0.6)


def energy_u2(z: torch.Tensor) -> torch.Tensor:
    """:math:`U_2` of [1] (a sine-shaped ridge); improper in :math:`z_1`."""
    _check_z(z)
    return 0.5 * ((z[..., 1] - _w1(z[..., 0])) / 0.4) ** 2


def energy_u3(z: torch.Tensor) -> torch.Tensor:
    """:math:`U_3` of [1] (the sine ridge split by a Gaussian bump); improper in :math:`z_1`."""
    _check_z(z)
    z1, z2 = z[..., 0], z[..., 1]
    d = z2 - _w1(z1)
    w2 = 3 * torch.exp(-0.5 * ((z1 - 1) / 0.6) ** 2)
    return -_log_two_bumps(d / 0.35, (d + w2) / 0.35)


def energy_u4(z: torch.Tensor) -> torch.Tensor:
    """:math:`U_4` of [1] (the sine ridge split by a sigmoid step); improper in :math:`z_1`."""
    _check_z(z)
    z1, z2 = z[..., 0], z[..., 1]
    d = z2 - _w1(z1)
    w3 = 3 * torch.sigmoid((z1 - 1) / 0.3)
    return -_log_two_bumps(d / 0.4, (d + w3) / 0.35)


#: The test energies of Rezende & Mohamed (2015) by name, ``"U1"`` ... ``"U4"``.
ENERGIES: Dict[str, Energy] = {
    "U1": energy_u1,
    "U2": energy_u2,
    "U3": energy_u3,
    "U4": energy_u4,
}


def box_wall(z: torch.Tensor, box: float = 4.0, scale: float = 0.5) -> torch.Tensor:
    r""":math:`\sum_i \frac12 (\max(|z_i| - b, 0)/s)^2`: zero inside :math:`[-b, b]^d`."""
    return 0.5 * ((z.abs() - box).clamp(min=0) / scale).pow(2).sum(-1)


def log_partition_grid(
    energy: Energy, lim: float = 8.0, n: int = 800, dtype: torch.dtype = torch.float64
) -> float:
    r""":math:`\log Z = \log \int e^{-U(z)}\,dz` by the midpoint rule on an ``n`` x ``n`` grid
    over :math:`[-\mathrm{lim}, \mathrm{lim}]^2`, in ``dtype`` (float64 by default).

    The midpoint rule converges like :math:`O(h^2)` for a twice differentiable integrand
    (faster for smooth, rapidly decaying ones); the window must hold essentially all the mass.
    """
    if not lim > 0:
        raise ValueError(f"lim must be positive, got {lim}")
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    h = 2 * lim / n
    axis = -lim + h * (torch.arange(n, dtype=dtype) + 0.5)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), -1).reshape(-1, 2)
    with torch.no_grad():
        log_f = -energy(grid)
    return float(torch.logsumexp(log_f, 0)) + 2 * math.log(h)


class _FlatPrior(dist.ImproperUniform):
    """Pyro's ``ImproperUniform`` with a ``log_prob`` that follows the value's device and dtype
    (Pyro 1.9.2 returns ``torch.zeros(())`` of the default dtype on the CPU)."""

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        batch = value.shape[: value.dim() - self.event_dim]
        return value.new_zeros(()).expand(torch.broadcast_shapes(batch, self.batch_shape))


class EnergyModel:
    r"""The unnormalized Pyro model :math:`\tilde p_\beta(z) = e^{-\beta U^{\mathrm{box}}(z)}`
    on :math:`\mathbb R^2` (see the module docstring).

    ``model(beta=1.0)`` samples the site ``"z"`` (event shape ``(2,)``) from an improper flat
    prior (log density 0, so a guide must provide ``z``) and adds the factor ``"energy"``
    :math:`-\beta U^{\mathrm{box}}(z)`. The inverse temperature ``beta`` is the annealing of
    [1]; with ``beta=1``, :math:`-\mathrm{ELBO} + \log Z = \mathrm{KL}(q\,\|\,p)`.

    :param energy: a name in :data:`ENERGIES` (``"U1"`` ... ``"U4"``) or a callable
        ``U(z)`` mapping ``(..., 2)`` to ``(...)``.
    :param box: half width :math:`b` of the window where the target is exactly ``exp(-U)``;
        ``None`` for no wall (then only :math:`U_1` is proper).
    :param float wall_scale: the wall's Gaussian scale :math:`s` outside the window.
    """

    def __init__(
        self, energy: Union[str, Energy], box: Optional[float] = 4.0, wall_scale: float = 0.5
    ) -> None:
        if isinstance(energy, str):
            if energy not in ENERGIES:
                raise ValueError(f"unknown energy {energy!r}; use one of {sorted(ENERGIES)}")
            self.name, self.base_energy = energy, ENERGIES[energy]
        elif callable(energy):
            self.name, self.base_energy = getattr(energy, "__name__", "energy"), energy
        else:
            raise TypeError(f"energy must be a name or a callable, got {type(energy).__name__}")
        if box is not None and not box > 0:
            raise ValueError(f"box must be positive or None, got {box}")
        if not wall_scale > 0:
            raise ValueError(f"wall_scale must be positive, got {wall_scale}")
        self.box, self.wall_scale = box, float(wall_scale)

    def __repr__(self) -> str:
        return f"EnergyModel({self.name!r}, box={self.box}, wall_scale={self.wall_scale})"

    def energy(self, z: torch.Tensor) -> torch.Tensor:
        """:math:`U^{\\mathrm{box}}(z)`, shape ``z.shape[:-1]``."""
        u = self.base_energy(z)
        return u if self.box is None else u + box_wall(z, self.box, self.wall_scale)

    def log_density(self, z: torch.Tensor) -> torch.Tensor:
        """The unnormalized log density :math:`-U^{\\mathrm{box}}(z)`."""
        return -self.energy(z)

    def log_partition(self, n: int = 800) -> float:
        """:math:`\\log Z` of ``exp(-energy)`` by :func:`log_partition_grid`, on a window that
        reaches 8 wall scales beyond the box (``[-8, 8]^2`` by default)."""
        lim = 8.0 if self.box is None else self.box + 8 * self.wall_scale
        return log_partition_grid(self.energy, lim=lim, n=n)

    def __call__(self, beta: Union[float, torch.Tensor] = 1.0) -> torch.Tensor:
        z = pyro.sample("z", _FlatPrior(constraints.real, (), (2,)))
        pyro.factor("energy", -beta * self.energy(z))
        return z

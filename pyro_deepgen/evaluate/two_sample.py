r"""Two-sample tests: is a set of samples distributed like the data?

**Kernel MMD** (Gretton et al. 2012). With a Gaussian kernel
:math:`k(x, y) = \exp(-\lVert x - y\rVert^2 / 2\sigma^2)` the unbiased estimate of the squared
maximum mean discrepancy between :math:`X = (x_i)_{i \le n}` and :math:`Y = (y_j)_{j \le m}` is

.. math:: \widehat{\mathrm{MMD}}^2_u = \frac{1}{n(n-1)}\sum_{i \ne i'} k(x_i, x_{i'})
          + \frac{1}{m(m-1)}\sum_{j \ne j'} k(y_j, y_{j'}) - \frac{2}{nm}\sum_{i,j} k(x_i, y_j),

which can be negative when the distributions agree. The bandwidth is the median heuristic,
:math:`\sigma` = the median distance between distinct points of the pooled sample (at most 1000
of them). The p-value is that of a permutation test: the statistic recomputed for ``B`` random
relabellings of the pooled sample (all at once, as quadratic forms of one kernel matrix),
:math:`p = (1 + \#\{b: T_b \ge T\}) / (1 + B)`, exact in level for any sample size.

**Classifier two-sample test** (C2ST; Lopez-Paz & Oquab 2017): a logistic regression trained to
tell :math:`X` from :math:`Y` on a random half of the pooled (standardized) features and tested
on the other half. Under :math:`H_0` its held-out accuracy is Binomial(:math:`n_\text{test}`,
1/2)/:math:`n_\text{test}`; the p-value is the one-sided binomial tail. Accuracy near 1/2 means
the classifier cannot tell them apart.
"""
import dataclasses
from typing import Optional

import torch

from ..data.checks import check_finite


@dataclasses.dataclass
class MMDResult:
    """``mmd2``: the unbiased statistic; ``p_value`` of the permutation test; ``bandwidth``
    :math:`\\sigma`; ``num_permutations`` B."""

    mmd2: float
    p_value: float
    bandwidth: float
    num_permutations: int


@dataclasses.dataclass
class C2STResult:
    """``accuracy`` on the held-out half, its one-sided binomial ``p_value``, ``num_test``."""

    accuracy: float
    p_value: float
    num_test: int


def _check_pair(x: torch.Tensor, y: torch.Tensor, least: int = 2) -> None:
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, torch.Tensor) or t.dim() != 2 or t.shape[0] < least:
            raise ValueError(f"{name} must be a (n, d) tensor with at least {least} rows, got "
                             f"{getattr(t, 'shape', type(t))}")
        check_finite(t, name)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same number of columns, got {x.shape[1]} and {y.shape[1]}")


def _sq_dists(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.pow(2).sum(-1, keepdim=True) + b.pow(2).sum(-1) - 2 * a @ b.T).clamp(min=0)


def median_bandwidth(x: torch.Tensor, y: torch.Tensor, max_points: int = 1000, seed: int = 0) -> float:
    """The median heuristic: the median distance between distinct points of the pooled sample
    (a seeded subset of ``max_points``)."""
    z = torch.cat([x, y]).to(torch.float64)
    if z.shape[0] > max_points:
        gen = torch.Generator().manual_seed(seed)
        z = z[torch.randperm(z.shape[0], generator=gen)[:max_points].to(z.device)]
    d2 = _sq_dists(z, z)
    iu = torch.triu_indices(z.shape[0], z.shape[0], offset=1, device=z.device)
    med = d2[iu[0], iu[1]].median().sqrt().item()
    return med if med > 0 else 1.0


def gaussian_kernel(a: torch.Tensor, b: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """:math:`\\exp(-\\lVert a_i - b_j\\rVert^2 / 2\\sigma^2)`, ``(n_a, n_b)``."""
    return torch.exp(-_sq_dists(a, b) / (2 * bandwidth ** 2))


def _mmd2_of_labels(k: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Unbiased MMD² for each row of the 0/1 matrix ``a`` ``(B, N)`` (1: in X) given the pooled
    kernel matrix ``k`` ``(N, N)`` with zero diagonal."""
    b = 1 - a
    n, m = a.sum(1), b.sum(1)
    ka = a @ k
    sxx = (ka * a).sum(1)
    sxy = (ka * b).sum(1)
    syy = ((b @ k) * b).sum(1)
    return sxx / (n * (n - 1)) + syy / (m * (m - 1)) - 2 * sxy / (n * m)


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor, bandwidth: Optional[float] = None) -> float:
    """:math:`\\widehat{\\mathrm{MMD}}^2_u` of the module doc (median-heuristic bandwidth by default)."""
    _check_pair(x, y)
    x, y = x.to(torch.float64), y.to(torch.float64)
    sigma = median_bandwidth(x, y) if bandwidth is None else float(bandwidth)
    z = torch.cat([x, y])
    k = gaussian_kernel(z, z, sigma)
    k.fill_diagonal_(0)
    a = torch.zeros(1, z.shape[0], dtype=k.dtype, device=k.device)
    a[0, :x.shape[0]] = 1
    return _mmd2_of_labels(k, a).item()


def mmd_test(x: torch.Tensor, y: torch.Tensor, num_permutations: int = 500, bandwidth: Optional[float] = None,
             seed: int = 0, chunk: int = 100) -> MMDResult:
    """The MMD permutation test of the module doc. Permutations come from a generator seeded
    with ``seed`` and are evaluated ``chunk`` at a time (memory ``chunk * (n+m)``)."""
    _check_pair(x, y)
    if isinstance(num_permutations, bool) or not isinstance(num_permutations, int) or num_permutations < 1:
        raise ValueError(f"num_permutations must be a positive integer, got {num_permutations!r}")
    x, y = x.to(torch.float64), y.to(torch.float64)
    sigma = median_bandwidth(x, y, seed=seed) if bandwidth is None else float(bandwidth)
    z = torch.cat([x, y])
    n_all, n = z.shape[0], x.shape[0]
    k = gaussian_kernel(z, z, sigma)
    k.fill_diagonal_(0)
    observed = torch.zeros(1, n_all, dtype=k.dtype, device=k.device)
    observed[0, :n] = 1
    t = _mmd2_of_labels(k, observed).item()
    gen = torch.Generator().manual_seed(seed)
    exceed = 0
    for start in range(0, num_permutations, chunk):
        b = min(chunk, num_permutations - start)
        ranks = torch.rand(b, n_all, generator=gen).argsort(1)
        a = (ranks < n).to(k).to(k.device)
        exceed += int((_mmd2_of_labels(k, a) >= t).sum())
    return MMDResult(t, (1 + exceed) / (1 + num_permutations), sigma, num_permutations)


def classifier_two_sample_test(x: torch.Tensor, y: torch.Tensor, seed: int = 0, steps: int = 200,
                               weight_decay: float = 1e-3) -> C2STResult:
    """The C2ST of the module doc with an L2-regularized logistic regression (L-BFGS,
    ``steps`` iterations) on standardized features; ``x`` and ``y`` are subsampled to the same
    size so that chance is 1/2."""
    _check_pair(x, y, least=4)
    from scipy.stats import binom

    gen = torch.Generator().manual_seed(seed)
    size = min(x.shape[0], y.shape[0])
    x = x[torch.randperm(x.shape[0], generator=gen)[:size].to(x.device)].to(torch.float64)
    y = y[torch.randperm(y.shape[0], generator=gen)[:size].to(y.device)].to(torch.float64).to(x.device)
    z = torch.cat([x, y])
    label = torch.cat([torch.ones(size), torch.zeros(size)]).to(z)
    order = torch.randperm(2 * size, generator=gen).to(z.device)
    train, test = order[:size], order[size:]
    mu, sd = z[train].mean(0), z[train].std(0).clamp(min=1e-6)
    z = (z - mu) / sd
    w = torch.zeros(z.shape[1] + 1, dtype=z.dtype, device=z.device, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=steps, line_search_fn="strong_wolfe")
    zt, lt = z[train], label[train]

    def closure():
        opt.zero_grad()
        logits = zt @ w[:-1] + w[-1]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, lt) + weight_decay * w[:-1].pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        correct = int((((z[test] @ w[:-1] + w[-1]) > 0).to(z) == label[test]).sum())
    n_test = test.shape[0]
    p = float(binom.sf(correct - 1, n_test, 0.5))
    return C2STResult(correct / n_test, min(max(p, 0.0), 1.0), n_test)


__all__ = ["MMDResult", "C2STResult", "median_bandwidth", "gaussian_kernel", "mmd2_unbiased", "mmd_test",
           "classifier_two_sample_test"]

r"""The Fréchet (2-Wasserstein) distance between Gaussians fitted to two sets of features.

For :math:`\mathcal N(\mu_1, \Sigma_1)` and :math:`\mathcal N(\mu_2, \Sigma_2)`,

.. math:: d^2 = \lVert \mu_1 - \mu_2 \rVert^2 + \operatorname{tr}\Sigma_1 + \operatorname{tr}\Sigma_2
          - 2 \operatorname{tr}\bigl(\Sigma_1^{1/2} \Sigma_2 \Sigma_1^{1/2}\bigr)^{1/2}

(Dowson & Landau 1982). Computed in the features of a classifier this is the statistic of
Heusel et al. (2017), "FID", when the classifier is Inception-v3; here the classifier is the
package's own (:mod:`~pyro_deepgen.evaluate.features`), so the number is called the **Fréchet
distance in classifier features** and compares only runs scored with the same classifier.

The trace term is computed with two symmetric eigen-decompositions in float64 (no
non-symmetric matrix square root, so no spurious imaginary parts): :math:`S = \Sigma_1^{1/2}`
from the eigenvalues of :math:`\Sigma_1`, then the eigenvalues :math:`\lambda_i \ge 0` of the
symmetric :math:`S\Sigma_2 S`, and :math:`\operatorname{tr}(\cdot)^{1/2} = \sum_i \sqrt{\lambda_i}`.
The plug-in estimate from :math:`n` samples is biased upwards by :math:`O(d/n)` (Bińkowski et
al. 2018): compare values only at equal sample sizes.
"""
from typing import Tuple

import torch

from ..data.checks import check_finite


def _psd_sqrt(c: torch.Tensor) -> torch.Tensor:
    w, v = torch.linalg.eigh(c)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def gaussian_frechet_distance(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor,
                              cov2: torch.Tensor) -> float:
    """The squared Fréchet distance :math:`d^2` of the module doc between two Gaussians."""
    mu1, cov1, mu2, cov2 = (torch.as_tensor(t, dtype=torch.float64) for t in (mu1, cov1, mu2, cov2))
    d = mu1.shape[-1]
    if mu1.shape != (d,) or mu2.shape != (d,) or cov1.shape != (d, d) or cov2.shape != (d, d):
        raise ValueError(f"need means of shape (d,) and covariances (d, d) with one d; got {tuple(mu1.shape)}, "
                         f"{tuple(cov1.shape)}, {tuple(mu2.shape)}, {tuple(cov2.shape)}")
    cov1, cov2 = (cov1 + cov1.T) / 2, (cov2 + cov2.T) / 2
    s = _psd_sqrt(cov1)
    lam = torch.linalg.eigvalsh(s @ cov2 @ s).clamp(min=0)
    value = (mu1 - mu2).pow(2).sum() + cov1.trace() + cov2.trace() - 2 * lam.sqrt().sum()
    return max(value.item(), 0.0)


def mean_and_covariance(features: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Sample mean and unbiased covariance (float64) of ``features`` ``(n, d)``, n >= 2."""
    if not isinstance(features, torch.Tensor) or features.dim() != 2 or features.shape[0] < 2:
        raise ValueError(f"features must be a (n, d) tensor with n >= 2, got {getattr(features, 'shape', None)}")
    check_finite(features, "features")
    f = features.detach().to(torch.float64)
    mu = f.mean(0)
    centred = f - mu
    return mu, centred.T @ centred / (f.shape[0] - 1)


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """:func:`gaussian_frechet_distance` between Gaussians fitted to two feature sets
    ``(n_a, d)`` and ``(n_b, d)``."""
    mu1, c1 = mean_and_covariance(features_a)
    mu2, c2 = mean_and_covariance(features_b)
    return gaussian_frechet_distance(mu1, c1, mu2.to(mu1), c2.to(c1))

r"""K-means as an autoencoder: a one-hot encoder and a linear decoder.

With decoder columns :math:`D = [d_1, \dots, d_k]` and the encoder :math:`\Phi(x) = e_{c(x)}`,
:math:`c(x) = \arg\min_j \|x - d_j\|^2` (the one-hot code of the nearest column), the
autoencoder's squared reconstruction error is the K-means objective (the *inertia*)

.. math:: \sum_i \|x_i - D\,\Phi(x_i)\|^2 = \sum_i \min_j \|x_i - d_j\|^2 .

Gradient descent does not apply (:math:`\Phi` is piecewise constant), but both halves have exact
minimizers, and alternating them is Lloyd's algorithm: the best encoder for fixed :math:`D` is
the nearest-column assignment, the best decoder for fixed codes is least squares
:math:`D = X^\top Z (Z^\top Z)^{-1}`, the cluster means. Each step lowers the objective, so it
converges in finitely many steps to a local minimum; :meth:`KMeansAutoencoder.fit` starts from
k-means++ seeds (Arthur & Vassilvitskii 2007, with scikit-learn's greedy
:math:`2 + \lfloor\ln k\rfloor` candidates per seed) and keeps the best of ``n_init`` restarts,
all run at once as one batched tensor program.

**References**: S. Lloyd, *Least squares quantization in PCM*, IEEE Trans. Inf. Theory 28
(1982). D. Arthur, S. Vassilvitskii, *k-means++: The Advantages of Careful Seeding*, SODA 2007.
"""
import math

import torch
from torch import nn

from .._checks import finite_float, positive_int


def _sq_dist(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Squared distances ``(..., n, k)`` between rows of ``x (n, d)`` and ``c (..., k, d)``."""
    d = (x * x).sum(-1, keepdim=True) - 2 * x @ c.transpose(-1, -2) + (c * c).sum(-1).unsqueeze(-2)
    return d.clamp_min(0)


class KMeansAutoencoder(nn.Module):
    r"""K-means with the autoencoder interface (module doc).

    :param int x_dim: data dimension :math:`d`.
    :param int num_clusters: :math:`k`, the code size.

    The decoder columns are the buffer ``centers`` of shape ``(k, d)`` (row :math:`j` is
    :math:`d_j`); :meth:`fit` sets them.
    """

    def __init__(self, x_dim: int, num_clusters: int) -> None:
        super().__init__()
        self.x_dim = positive_int(x_dim, "x_dim")
        self.num_clusters = positive_int(num_clusters, "num_clusters")
        self.register_buffer("centers", torch.zeros(self.num_clusters, self.x_dim))
        self.n_iter = 0

    def _check(self, x: torch.Tensor) -> None:
        if not torch.is_tensor(x) or x.dim() != 2 or x.shape[1] != self.x_dim:
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"x must have shape (n, {self.x_dim}), got {shape}")

    def assign(self, x: torch.Tensor) -> torch.Tensor:
        """The index of the nearest column for each row of ``x``, shape ``(n,)``."""
        self._check(x)
        return _sq_dist(x, self.centers.to(x.dtype)).argmin(-1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        r"""The one-hot code :math:`\Phi(x)`, shape ``(n, k)``."""
        return nn.functional.one_hot(self.assign(x), self.num_clusters).to(x.dtype)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        r"""The linear decoder :math:`D z`, shape ``(n, d)``."""
        return z @ self.centers.to(z.dtype)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.centers.to(x.dtype)[self.assign(x)]

    def reconstruction_error(self, x: torch.Tensor) -> torch.Tensor:
        r"""Per point :math:`\min_j \|x_i - d_j\|^2`, shape ``(n,)``."""
        self._check(x)
        return _sq_dist(x, self.centers.to(x.dtype)).min(-1).values

    def inertia(self, x: torch.Tensor) -> float:
        r"""The K-means objective :math:`\sum_i \min_j \|x_i - d_j\|^2` (scikit-learn's
        ``inertia_``)."""
        return float(self.reconstruction_error(x).sum())

    def _plus_plus(self, x: torch.Tensor, restarts: int, generator: torch.Generator) -> torch.Tensor:
        """Greedy k-means++ seeds for ``restarts`` runs at once, shape ``(restarts, k, d)``."""
        n, k = x.shape[0], self.num_clusters
        trials = 2 + int(math.log(k))
        ar = torch.arange(restarts, device=x.device)
        first = torch.randint(n, (restarts,), generator=generator, device=x.device)
        centers = x[first].unsqueeze(1)  # (R, 1, d)
        closest = _sq_dist(x, centers).squeeze(-1)  # (R, n)
        for _ in range(1, k):
            weights = closest / closest.sum(-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
            weights = torch.where(weights.sum(-1, keepdim=True) > 0, weights, torch.ones_like(weights))
            cand = torch.multinomial(weights, trials, replacement=True, generator=generator)  # (R, T)
            cand_dist = _sq_dist(x, x[cand])  # (R, n, T)
            new_closest = torch.minimum(closest.unsqueeze(-1), cand_dist)  # (R, n, T)
            best = new_closest.sum(1).argmin(-1)  # (R,)
            closest = new_closest[ar, :, best]
            centers = torch.cat([centers, x[cand[ar, best]].unsqueeze(1)], 1)
        return centers

    @torch.no_grad()
    def fit(self, x: torch.Tensor, n_init: int = 10, max_iter: int = 300, tol: float = 1e-4,
            seed: int = 0) -> "KMeansAutoencoder":
        r"""Lloyd's algorithm from ``n_init`` greedy k-means++ seedings (batched), keeping the
        lowest inertia.

        :param int max_iter: the most alternating steps per restart.
        :param float tol: stop a restart when the squared shift of its centers, summed, is at
            most ``tol`` times the mean per-feature variance of ``x`` (scikit-learn's rule), or
            when no assignment changed.
        :param int seed: seeds the k-means++ draws (a private generator).

        A cluster that becomes empty gets the point farthest from its current center. Sets
        ``centers`` and ``n_iter`` (the steps of the kept restart) and returns ``self``.
        """
        self._check(x)
        n_init, max_iter = positive_int(n_init, "n_init"), positive_int(max_iter, "max_iter")
        tol = finite_float(tol, "tol", low=0.0)
        if x.shape[0] < self.num_clusters:
            raise ValueError(f"x has {x.shape[0]} rows, fewer than num_clusters={self.num_clusters}")
        generator = torch.Generator(device=x.device).manual_seed(int(seed))
        k = self.num_clusters
        centers = self._plus_plus(x, n_init, generator)
        threshold = tol * float(x.var(0, unbiased=False).mean())
        labels = None
        active = torch.ones(n_init, dtype=torch.bool, device=x.device)
        iters = torch.zeros(n_init, dtype=torch.long, device=x.device)
        for _ in range(max_iter):
            dist = _sq_dist(x, centers)  # (R, n, k)
            new_labels = dist.argmin(-1)  # (R, n)
            onehot = nn.functional.one_hot(new_labels, k).to(x.dtype)  # (R, n, k)
            counts = onehot.sum(1)  # (R, k)
            sums = onehot.transpose(1, 2) @ x  # (R, k, d)
            means = sums / counts.clamp_min(1).unsqueeze(-1)
            empty = counts == 0
            if empty.any():  # give each empty cluster the point farthest from its center
                far = dist.min(-1).values.argmax(-1)  # (R,)
                means = torch.where(empty.unsqueeze(-1), x[far].unsqueeze(1).expand_as(means), means)
            shift = (means - centers).pow(2).sum((1, 2))
            unchanged = labels is not None and bool((new_labels == labels)[active].all())
            centers = torch.where(active.view(-1, 1, 1), means, centers)
            iters += active.long()
            active = active & (shift > threshold)
            labels = new_labels
            if unchanged or not active.any():
                break
        inertia = _sq_dist(x, centers).min(-1).values.sum(-1)  # (R,)
        best = int(inertia.argmin())
        self.centers = centers[best].to(self.centers.dtype).clone()
        self.n_iter = int(iters[best])
        return self

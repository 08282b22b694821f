"""A probabilistic-PCA model with closed-form log p(x), shared by the tests.

z ~ N(0, I_K),  x | z ~ N(W z + b, s^2 I_D)  =>  x ~ N(b, W W^T + s^2 I).
The exact posterior is q*(z|x) = N(M^{-1} W^T (x - b), s^2 M^{-1}) with M = W^T W + s^2 I.
"""
import pyro
import pyro.distributions as dist
import torch


class LinearGaussian:
    def __init__(self, x_dim=5, z_dim=2, noise=0.5, seed=0, dtype=torch.float64, device="cpu"):
        g = torch.Generator().manual_seed(seed)
        self.W = torch.randn(x_dim, z_dim, generator=g, dtype=dtype).to(device)
        self.b = torch.randn(x_dim, generator=g, dtype=dtype).to(device)
        self.s = noise
        self.x_dim, self.z_dim = x_dim, z_dim

    def data(self, n, seed=1):
        g = torch.Generator().manual_seed(seed)
        return self._sample(n, g)

    def _sample(self, n, g):
        z = torch.randn(n, self.z_dim, generator=g, dtype=self.W.dtype).to(self.W.device)
        eps = torch.randn(n, self.x_dim, generator=g, dtype=self.W.dtype).to(self.W.device)
        return z @ self.W.T + self.b + self.s * eps

    def marginal(self):
        cov = self.W @ self.W.T + self.s**2 * torch.eye(self.x_dim, dtype=self.W.dtype, device=self.W.device)
        return dist.MultivariateNormal(self.b, cov)

    def log_marginal(self, x):
        return self.marginal().log_prob(x)

    def posterior(self, x):
        M = self.W.T @ self.W + self.s**2 * torch.eye(self.z_dim, dtype=self.W.dtype, device=self.W.device)
        Minv = torch.linalg.inv(M)
        loc = (x - self.b) @ self.W @ Minv.T
        cov = self.s**2 * Minv
        return loc, cov.diagonal().sqrt()

    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            zero = x.new_zeros(x.shape[0], self.z_dim)
            z = pyro.sample("z", dist.Normal(zero, 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.W.T + self.b, self.s).to_event(1), obs=x)

    def guide(self, x, loc_shift=0.0, scale_mult=1.0):
        """Mean-field guide with the exact posterior marginals, optionally perturbed."""
        loc, scale = self.posterior(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc + loc_shift, scale * scale_mult).to_event(1))

r"""
The latent dimension: samples and the 2-D manifold
==================================================

Kingma & Welling (2014, figures 4 and 5) trained VAEs with latent spaces of 2, 5, 10 and 20
dimensions, showed samples of each side by side, and the learned 2-D manifold. Here on the
8x8 digits, each with its held-out log-likelihood.

Samples are decoder means :math:`\mathbb E[x\mid z]` at :math:`z\sim\mathcal N(0, I)`. The
manifold of the 2-D model maps a grid of quantiles :math:`u\in(0,1)^2` through the inverse
normal CDF, :math:`z = \Phi^{-1}(u)`, so that equal areas of the picture carry equal prior
mass. The held-out :math:`\log p(x)` is the importance-sampled bound with :math:`K` = 500,

.. math::

    \log p(x) \approx \log\frac1K\sum_{k=1}^K
    \frac{p_\theta(x\mid z_k)\,p(z_k)}{q_\phi(z_k\mid x)},\qquad z_k\sim q_\phi(z\mid x).
"""
import matplotlib.pyplot as plt
import pyro
import torch
from pyro.infer import Trace_ELBO

from pyro_deepgen.data import load_train_test
from pyro_deepgen.evaluate import log_likelihood
from pyro_deepgen.models import VAE
from pyro_deepgen.train import fit

torch.set_num_threads(2)
data = load_train_test("digits", binarize="dynamic", seed=0)


def tile(images, rows, cols):
    """rows x cols 8x8 images as one picture, with a grey line between them."""
    images = torch.nn.functional.pad(images.reshape(-1, 8, 8), (0, 1, 0, 1), value=0.5)
    return images.reshape(rows, cols, 9, 9).permute(0, 2, 1, 3).reshape(rows * 9, cols * 9)


# %%
# Four VAEs
# ---------
models, ll = {}, {}
for z_dim in (2, 5, 10, 20):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    vae = VAE(x_dim=64, z_dim=z_dim, hidden_dims=(64, 64))
    fit(vae.model, vae.guide, data.x_train, loss=Trace_ELBO(), epochs=40, lr=3e-3, batch_size=100,
        binarize="dynamic", progress=False)
    models[z_dim] = vae
    ll[z_dim] = log_likelihood(vae.model, vae.guide, data.x_test, num_samples=500).mean().item()
    print(f"z = {z_dim:>2}: test log p(x) ~= {ll[z_dim]:.2f} nats")

fig, axes = plt.subplots(1, 4, figsize=(12, 3.4))
pyro.set_rng_seed(1)
for ax, (z_dim, vae) in zip(axes, models.items()):
    with torch.no_grad():
        ax.imshow(tile(vae.sample(64), 8, 8), cmap="gray")
    ax.set_title(f"z = {z_dim}\nlog p(x) ~= {ll[z_dim]:.1f}")
    ax.axis("off")
fig.tight_layout()

# %%
# The 2-D manifold
# ----------------
u = torch.linspace(0.05, 0.95, 12)
grid = torch.distributions.Normal(0.0, 1.0).icdf(torch.cartesian_prod(u, u))
with torch.no_grad():
    means = models[2].mean(grid)
fig, ax = plt.subplots(figsize=(5, 5))
ax.imshow(tile(means, 12, 12), cmap="gray")
ax.set_title(f"z = 2 manifold (test log p(x) ~= {ll[2]:.1f} nats)")
ax.axis("off")

# %%
# More latent dimensions help up to a point: the bound on :math:`\log p(x)` improves from 2 to
# 5 or 10 dimensions and then levels off, as in the paper, where the 20-dimensional models
# do not beat the 10-dimensional ones by much; unused dimensions collapse to the prior
# (see :func:`~pyro_deepgen.evaluate.active_units`).
#
# At full size
# ------------
# The paper's study used full MNIST. The package's VAE on ``mnist-5k`` (784-200-200-40,
# 10 epochs on 4 500 images, CPU shared with other jobs) reached -190.79 nats held out
# (:doc:`/flows`, "The VAE benchmark"); the command line runs any latent size::
#
#     pyro-deepgen vae --data mnist --data-root DIR --z-dim 2 --epochs 50    # writes manifold.png
#     pyro-deepgen vae --data mnist --data-root DIR --z-dim 20 --epochs 50

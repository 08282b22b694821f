r"""
Hamiltonian variational inference
=================================

Salimans, Kingma & Welling (2015) move the guide's draw :math:`z_0\sim q_\phi(z\mid x)` with
:math:`T` leapfrog steps of Hamiltonian dynamics on :math:`\log p_\theta(x, z)`, with a
momentum :math:`v_0\sim\mathcal N(0, \mathrm{diag}\,m^2)` and a learned reverse model
:math:`r_\psi(v_T\mid z_T, x)`. Leapfrog steps preserve volume, so

.. math::

    \mathcal L_{\text{aux}} = \mathbb E\Big[\log p_\theta(x, z_T) + \log r_\psi(v_T\mid z_T, x)
        - \log q_\phi(z_0\mid x) - \log q(v_0)\Big]\ \le\ \log p_\theta(x).

:class:`~pyro_deepgen.infer.TraceHVI_ELBO` is this bound as a Pyro ELBO; with ``num_steps=0``
it is ``Trace_ELBO``. Here: a VAE trained with the ELBO, then, with the model and guide frozen,
only the HVI parameters (step sizes, momentum scale, reverse model) are trained: the bound must
rise above the guide's ELBO.
"""
import matplotlib.pyplot as plt
import pyro
import torch
from pyro.infer import Trace_ELBO

from pyro_deepgen.data import load_train_test
from pyro_deepgen.evaluate import elbo
from pyro_deepgen.infer import TraceHVI_ELBO
from pyro_deepgen.models import VAE
from pyro_deepgen.train import fit

torch.set_num_threads(2)
data = load_train_test("digits", binarize="threshold", seed=0)
pyro.set_rng_seed(0)
vae = VAE(64, 8, (64, 64))
fit(vae.model, vae.guide, data.x_train, loss=Trace_ELBO(), epochs=30, lr=3e-3, progress=False)
x = data.x_test
base = elbo(vae.model, vae.guide, x, num_samples=20).mean().item()
print(f"guide's test ELBO: {base:.2f} nats")

# %%
# Training the HVI parameters only
# --------------------------------
# The VAE's parameters are frozen (``requires_grad_(False)``); the HVI parameters are Pyro
# params named ``"hvi.z.step_size"`` and so on, so ``fit`` with the HVI loss trains only them.
vae.requires_grad_(False)
gains = {}
for steps in (1, 4):
    hvi = TraceHVI_ELBO(num_steps=steps, step_size=0.05, name=f"hvi{steps}")
    history = fit(vae.model, vae.guide, data.x_train, loss=hvi, epochs=20, lr=1e-2, progress=False)
    with torch.no_grad():
        bound = sum(-hvi.loss(vae.model, vae.guide, x) for _ in range(5)) / 5 / len(x)
    gains[steps] = bound - base
    print(f"T = {steps}: test bound {bound:.2f} nats, {bound - base:+.2f} over the guide's ELBO")

fig, ax = plt.subplots(figsize=(4.5, 3))
ax.bar([f"T={t}" for t in gains], list(gains.values()))
ax.axhline(0, color="k", lw=0.8)
ax.set(ylabel="bound - ELBO (nats per digit)", title="HVI on a frozen VAE")
fig.tight_layout()

# %%
# At full size
# ------------
# On ``mnist-5k`` (z = 20, a pretrained model frozen; CPU shared with other jobs) the HVI
# parameters alone lifted the test bound above the guide's ELBO (-210.56 nats) by 0.36, 0.94
# and 1.01 nats for T = 1, 4, 8; trained jointly for two extra epochs, HVI's models were
# 0.3-0.8 nats *below* the plain ELBO's -199.70, the paper's gain is not reproduced at that
# budget (:doc:`/infer/hvi`)::
#
#     .venv/bin/python benchmarks/hvi_section.py
#     pyro-deepgen vae --data mnist --data-root DIR --elbo hvi --hvi-steps 4

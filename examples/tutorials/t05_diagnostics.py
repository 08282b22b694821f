r"""
Diagnostics: PSIS k-hat and arviz on Gibbs chains
=================================================

Two questions a user of approximate inference should ask.

**Is the guide good enough for importance sampling?** For each data point the importance
ratios :math:`r_s = p(x, z_s)/q(z_s\mid x)`, :math:`z_s\sim q`, have a right tail; Pareto-smoothed
importance sampling (Vehtari et al. 2015) fits a generalized Pareto distribution to the
largest ratios, whose shape :math:`\hat k` says how many moments the ratios have:
:math:`\hat k < 0.5` finite variance, :math:`0.5\le\hat k<0.7` usable after smoothing,
:math:`\hat k\ge 0.7` unreliable (:func:`~pyro_deepgen.diagnostics.psis_khat`).

**Have the MCMC chains mixed?** Split :math:`\hat R` compares the variance between chains
(and chain halves) with the variance within them; :math:`\hat R > 1.01` flags chains that
have not mixed. The effective sample size (ESS) is the number of independent draws worth the
same precision (Vehtari et al. 2021). Here on block-Gibbs chains of an RBM, run through
:class:`pyro.infer.MCMC` with :class:`~pyro_deepgen.energy.BlockGibbs` and summarized by arviz.
"""
import matplotlib.pyplot as plt
import pyro
import torch
from pyro.infer import MCMC, Trace_ELBO

from pyro_deepgen.data import load_train_test
from pyro_deepgen.diagnostics import importance_ess, psis_khat, summary, to_inference_data
from pyro_deepgen.energy import RBM, BlockGibbs, ContrastiveDivergence
from pyro_deepgen.evaluate import log_importance_weights
from pyro_deepgen.models import VAE
from pyro_deepgen.train import fit

torch.set_num_threads(2)
data = load_train_test("digits", binarize="threshold", seed=0)

# %%
# k-hat of a VAE's guide, early and late in training
# --------------------------------------------------
khat = {}
pyro.set_rng_seed(0)
vae = VAE(64, 8, (64, 64))
for epochs in (1, 30):
    fit(vae.model, vae.guide, data.x_train, loss=Trace_ELBO(), epochs=epochs, lr=3e-3, progress=False)
    log_w = log_importance_weights(vae.model, vae.guide, data.x_test, num_samples=500)  # (S, N)
    khat[epochs] = psis_khat(log_w)
    ess = importance_ess(log_w)
    print(f"after {epochs:>2} more epoch(s): median k-hat {khat[epochs].median():.2f}, "
          f"share with k-hat >= 0.7: {(khat[epochs] >= 0.7).float().mean():.2f}, "
          f"median importance ESS {ess.median():.0f} of 500")

fig, ax = plt.subplots(figsize=(5, 3))
for epochs, k in khat.items():
    ax.hist(k.numpy(), bins=30, alpha=0.6, label=f"after {epochs} epoch(s)")
ax.axvline(0.7, color="k", ls="--", lw=1)
ax.set(xlabel="PSIS k-hat per test digit", ylabel="count")
ax.legend()
fig.tight_layout()

# %%
# R-hat and ESS of RBM chains
# ---------------------------
# An RBM trained with CD-1, then four chains of block-Gibbs sweeps through Pyro's ``MCMC``.
# The statistics are scalars per draw that :class:`~pyro_deepgen.energy.BlockGibbs` records
# (energy, free energy, mean activities).
rbm = RBM(64, 32)
fit(rbm, None, data.x_train, loss=ContrastiveDivergence(k=1), module=rbm,
    optimizer=lambda p: torch.optim.SGD(p, lr=0.05 / 100, momentum=0.9), epochs=20, progress=False)
# (Pyro runs ``num_chains > 1`` in worker processes, or in turn when there are too few cores:
# here four runs of one chain each, seeded apart, stacked as ``(chains, draws)``.)
names = ("energy", "free_energy", "mean_hidden", "mean_visible")
chains = []
for seed in range(4):
    pyro.set_rng_seed(seed)
    mcmc = MCMC(BlockGibbs(rbm), num_samples=200, warmup_steps=50, disable_progbar=True)
    mcmc.run()
    chains.append(mcmc.get_samples())
stats = {k: torch.stack([c[k] for c in chains]) for k in names}
print(summary(stats))
idata = to_inference_data(stats)  # arviz's container (InferenceData on 0.2x, DataTree on 1.x)

fig, ax = plt.subplots(figsize=(6, 3))
for c in range(4):
    ax.plot(stats["free_energy"][c].numpy(), lw=0.8, label=f"chain {c}")
ax.set(xlabel="draw", ylabel="free energy F(v)", title="four block-Gibbs chains")
ax.legend(ncol=4, fontsize=8)
fig.tight_layout()

# %%
# At full size
# ------------
# The ``vae`` command reports the median and maximum :math:`\hat k` of its test set, the ``rbm``
# command the chains' summary (:doc:`/diagnostics`, :doc:`/energy_rbm`). On ``mnist-5k`` the
# RBMs' PCD chains do not mix across digit classes, which is why their samples miss classes
# (:doc:`/implicit`: class coverage missed)::
#
#     pyro-deepgen vae --data mnist --data-root DIR      # report.json: psis_khat median, max
#     pyro-deepgen rbm --data mnist --data-root DIR      # chain summary with R-hat and ESS

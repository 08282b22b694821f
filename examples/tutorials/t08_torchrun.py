r"""
Data-parallel training with torchrun (shown, not executed)
==========================================================

:func:`~pyro_deepgen.train.fit` and every training command run data-parallel under
``torchrun``: the same call works in one process and in :math:`W`. This page is not executed
by the documentation build (it needs ``torchrun`` and several processes); the commands are
the ones :doc:`/distributed` documents and ``tests/test_distributed.py`` runs.

What each rank computes
-----------------------
``batch_size`` is the global minibatch :math:`B`, split into :math:`B/W` points per rank,
drawn by :class:`torch.utils.data.DistributedSampler` from the same permutation a
one-process run draws. With ``pass_num_data`` the data plate is scaled by the global data size
:math:`N`, so each rank's loss :math:`\hat L_r = \frac{N}{B/W}\sum_{n\in b_r}\ell_n` is an
unbiased estimate of the whole objective, and the average of the ranks' gradients

.. math::

    \frac1W\sum_{r=1}^W \nabla\hat L_r = \frac NB\sum_{n\in b}\nabla\ell_n

is exactly the gradient of the global minibatch.
"""

# %%
# The commands
# ------------
# On one machine's CPUs (gloo)::
#
#     torchrun --standalone --nproc_per_node 2 -m pyro_deepgen.cli vae --epochs 50 --batch-size 100
#
# On GPUs (NCCL), one process per GPU::
#
#     torchrun --standalone --nproc_per_node <GPUs> -m pyro_deepgen.cli vae --device cuda
#
# In a script, start the process group and call ``fit`` as usual::
#
#     from pyro_deepgen.distributed import init_from_env
#     init_from_env()                  # reads RANK, WORLD_SIZE, ... set by torchrun
#     fit(vae.model, vae.guide, x_train, loss=Trace_ELBO(), batch_size=100, pass_num_data=True)
#
# At full size
# ------------
# The VAE (784-200-200-50, global batch 100) on ``mnist-5k``, one torch thread per process on
# a 2-core CPU machine shared with other work: 1 process 18 874 images/s, 2 processes 12 359
# images/s, a scaling efficiency of 0.33: on two CPU cores the all-reduce costs more than the
# halved compute saves; the GPU recipe has not been measured (:doc:`/distributed`).

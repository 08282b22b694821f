"""The Boltzmann family: energy-based models over layers of units, their samplers, losses,
partition-function estimators and greedy pretraining.

Layering: this package may import :mod:`pyro_deepgen.infer` (the generic annealed importance
sampler) and :mod:`pyro_deepgen.nn`; only :mod:`pyro_deepgen.energy.pretrain` imports the
training loop, and :mod:`pyro_deepgen.infer` imports nothing from here.
"""
from .base import EnergyModel  # noqa: F401
from .rbm import RBM  # noqa: F401
from .dbn import DBN  # noqa: F401
from .dbm import DBM, DoubledRBM  # noqa: F401
from .ais import ais_log_partition, base_rate_logits, mean_log_likelihood  # noqa: F401
from .sandwich import bdmc_log_partition, forward_ais_log_prob, log_likelihood_sandwich, raise_log_prob  # noqa: F401,E501
from .sandwich import dbm_posterior_ais_log_prob, dbn_raise_log_prob  # noqa: F401
from .cd import ContrastiveDivergence, MeanFieldPCD  # noqa: F401
from .cd import pseudo_log_likelihood, reconstruction_error  # noqa: F401
from .gibbs import BlockGibbs, fantasy_particles, run_chains  # noqa: F401
from .tempering import ParallelTempering, geometric_ladder, replica_swap  # noqa: F401
from .pretrain import pretrain, pretrain_dbm, pretrain_dbn  # noqa: F401

__all__ = [
    "EnergyModel", "RBM", "DBN", "DBM", "DoubledRBM",
    "ContrastiveDivergence", "MeanFieldPCD", "pseudo_log_likelihood", "reconstruction_error",
    "BlockGibbs", "fantasy_particles", "run_chains", "ParallelTempering", "geometric_ladder", "replica_swap",
    "ais_log_partition", "base_rate_logits", "mean_log_likelihood",
    "raise_log_prob", "dbn_raise_log_prob", "forward_ais_log_prob", "bdmc_log_partition", "log_likelihood_sandwich",
    "dbm_posterior_ais_log_prob",
    "pretrain", "pretrain_dbn", "pretrain_dbm",
]

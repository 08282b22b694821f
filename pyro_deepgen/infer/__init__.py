"""Inference: ELBO estimators, MCMC kernels and annealed importance sampling."""
from .util import value_with_surrogate_grad  # noqa: F401
from .diffusion_elbo import DiffusionELBO  # noqa: F401
from .score_function import TraceScoreFunction_ELBO  # noqa: F401
from .vimco import TraceVIMCO_ELBO  # noqa: F401
from .hvi import TraceHVI_ELBO  # noqa: F401
from .iwae import TraceIWAE_ELBO  # noqa: F401
from .gradient_variance import GradientStats, gradient_variance  # noqa: F401
from .wake_sleep import ReweightedWakeSleep, WakeSleep  # noqa: F401
from .ais import annealed_importance_sampling  # noqa: F401
from .ais import ais_log_partition  # noqa: F401
from .ais import base_rate_logits  # noqa: F401
from .ais import default_ais_schedule  # noqa: F401
from .ais import log_mean_exp_with_stderr  # noqa: F401
from .ais import mean_log_likelihood  # noqa: F401
from .block_gibbs import BlockGibbs  # noqa: F401
from .block_gibbs import fantasy_particles  # noqa: F401
from .contrastive_divergence import ContrastiveDivergence  # noqa: F401
from .contrastive_divergence import pseudo_log_likelihood  # noqa: F401
from .contrastive_divergence import reconstruction_error  # noqa: F401

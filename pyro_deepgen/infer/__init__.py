"""Inference: ELBO estimators, MCMC kernels and annealed importance sampling."""
from .util import value_with_surrogate_grad  # noqa: F401
from .elbo import ParticleELBO  # noqa: F401
from .diffusion_elbo import DiffusionELBO  # noqa: F401
from .score_function import TraceScoreFunction_ELBO  # noqa: F401
from .vimco import TraceVIMCO_ELBO  # noqa: F401
from .hvi import TraceHVI_ELBO  # noqa: F401
from .iwae import TraceIWAE_ELBO  # noqa: F401
from .gradient_variance import GradientStats, gradient_variance  # noqa: F401
from .wake_sleep import ReweightedWakeSleep, WakeSleep  # noqa: F401
from .ais import annealed_importance_sampling  # noqa: F401
from .ais import default_ais_schedule  # noqa: F401
from .ais import geometric_path  # noqa: F401
from .ais import log_mean_exp_with_stderr  # noqa: F401
from .ais import reverse_annealed_importance_sampling  # noqa: F401
from .adversarial import AdversarialLoss  # noqa: F401
from .sparse_coding import ista, fista  # noqa: F401
from .._compat import moved_attributes

# the Boltzmann family's samplers and losses moved to pyro_deepgen.energy (release 0.2)
__getattr__ = moved_attributes(__name__, {name: "pyro_deepgen.energy" for name in (
    "ais_log_partition", "base_rate_logits", "mean_log_likelihood", "BlockGibbs",
    "fantasy_particles", "ContrastiveDivergence", "pseudo_log_likelihood", "reconstruction_error",
)})

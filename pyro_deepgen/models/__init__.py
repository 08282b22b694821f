"""Ready-made generative models written as Pyro programs."""
from .vae import VAE  # noqa: F401
from .diffusion import GaussianDiffusion  # noqa: F401
from .helmholtz import HelmholtzMachine  # noqa: F401
from .._compat import moved_attributes

__getattr__ = moved_attributes(__name__, {
    "RBM": "pyro_deepgen.energy", "DBN": "pyro_deepgen.energy", "DBM": "pyro_deepgen.energy",
    "MeanFieldPCD": "pyro_deepgen.energy",
})

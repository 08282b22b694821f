"""Ready-made generative models written as Pyro programs."""
from .vae import VAE  # noqa: F401
from .diffusion import GaussianDiffusion  # noqa: F401
from .helmholtz import HelmholtzMachine  # noqa: F401
from .rbm import RBM  # noqa: F401
from .dbm import DBM, MeanFieldPCD  # noqa: F401
from .dbn import DBN  # noqa: F401

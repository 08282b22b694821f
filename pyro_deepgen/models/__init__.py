"""Ready-made generative models written as Pyro programs."""
from .vae import VAE  # noqa: F401
from .diffusion import GaussianDiffusion  # noqa: F401

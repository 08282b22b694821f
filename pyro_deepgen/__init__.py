"""pyro_deepgen: deep generative models and approximate posterior inference on top of Pyro."""

__version__ = "0.1.0"

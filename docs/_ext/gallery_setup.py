"""The state every tutorial of the gallery starts from (``sphinx_gallery_conf["reset_modules"]``).

Sphinx-gallery runs the tutorials one after the other in the Sphinx process; each starts with
an empty Pyro param store, Pyro's global settings back at their defaults, seed 0, and at most
2 torch threads (the budget each tutorial is written for: under a minute on 2 CPU cores).
"""
import os


def reset_torch(gallery_conf, fname, when=None):
    import pyro
    import torch

    pyro.clear_param_store()
    pyro.settings.set(module_local_params=False)
    pyro.set_rng_seed(0)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    torch.set_default_dtype(torch.float32)

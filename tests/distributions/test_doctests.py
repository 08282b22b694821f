"""Run the docstring examples of the flow modules (with ``torch``, ``pyro`` and ``dist`` in
scope, as in Pyro's own doctests)."""
import doctest
import importlib

import pyro
import pyro.distributions as dist
import pytest
import torch

MODULES = [
    "pyro_deepgen.distributions.transforms.additive_coupling",
    "pyro_deepgen.distributions.transforms.affine_autoregressive",
    "pyro_deepgen.distributions.transforms.build",
    "pyro_deepgen.distributions.transforms.family",
    "pyro_deepgen.distributions.transforms.permutation",
    "pyro_deepgen.distributions.transforms.planar",
    "pyro_deepgen.distributions.transforms.radial",
    "pyro_deepgen.distributions.transforms.scaling",
    "pyro_deepgen.guides.amortized_flow",
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    module = importlib.import_module(name)
    globs = {"torch": torch, "pyro": pyro, "dist": dist}
    result = doctest.testmod(module, extraglobs=globs, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, result

"""Test configuration: ``--device`` (or ``PYRO_DEEPGEN_TEST_DEVICE``) points the suite at CUDA."""
import os

import pyro
import pytest
import torch


def pytest_addoption(parser):
    parser.addoption(
        "--device",
        default=os.environ.get("PYRO_DEEPGEN_TEST_DEVICE", "cpu"),
        help="torch device the tests run on (cpu or cuda); env PYRO_DEEPGEN_TEST_DEVICE",
    )


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def device(request):
    name = request.config.getoption("--device")
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("--device cuda but CUDA is not available")
    return torch.device(name)


@pytest.fixture(autouse=True)
def _fresh_pyro_state():
    """Every test starts from an empty param store and a fixed seed."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()

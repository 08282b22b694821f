"""The experiment code that moved out of ``pyro_deepgen.cli`` in 0.2 still resolves from its old
path, with a DeprecationWarning naming the new one."""
import importlib

import pytest

MOVED = [
    ("pyro_deepgen.cli.common", "write_json", "pyro_deepgen.experiments.common"),
    ("pyro_deepgen.cli.common", "atomic_output_dir", "pyro_deepgen.experiments.common"),
    ("pyro_deepgen.cli.vae", "make_elbo", "pyro_deepgen.experiments.vae"),
    ("pyro_deepgen.cli.vae", "evaluate_vae", "pyro_deepgen.experiments.vae"),
    ("pyro_deepgen.cli.rbm", "monitors", "pyro_deepgen.experiments.rbm"),
    ("pyro_deepgen.cli.rbm", "make_optimizer", "pyro_deepgen.experiments.rbm"),
    ("pyro_deepgen.cli.diffusion", "DEFAULTS", "pyro_deepgen.experiments.diffusion"),
]


@pytest.mark.parametrize("old,name,new", MOVED, ids=[f"{o}.{n}" for o, n, _ in MOVED])
def test_old_cli_paths_resolve_and_warn(old, name, new):
    with pytest.warns(DeprecationWarning, match=f"{new}.{name}"):
        value = getattr(importlib.import_module(old), name)
    assert value is getattr(importlib.import_module(new), name)


def test_unknown_names_still_raise():
    with pytest.raises(AttributeError):
        importlib.import_module("pyro_deepgen.cli.vae").no_such_name

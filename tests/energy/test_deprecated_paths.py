"""The Boltzmann family's import paths before release 0.2 still resolve, for one release, to the
objects at their new homes in ``pyro_deepgen.energy``, each with a DeprecationWarning that names
the new path."""
import importlib

import pytest
import torch

import pyro_deepgen.energy as energy
from pyro_deepgen.energy import DBM, DBN, pretrain_dbm, pretrain_dbn
from pyro_deepgen.energy._kernels import native, sparse_matmul

PACKAGE_ATTRIBUTES = [
    ("pyro_deepgen.models", name, getattr(energy, name))
    for name in ("RBM", "DBN", "DBM", "MeanFieldPCD")
] + [
    ("pyro_deepgen.infer", name, getattr(energy, name))
    for name in ("ais_log_partition", "base_rate_logits", "mean_log_likelihood", "BlockGibbs",
                 "fantasy_particles", "ContrastiveDivergence", "pseudo_log_likelihood",
                 "reconstruction_error")
] + [
    ("pyro_deepgen.infer.ais", name, getattr(energy, name))
    for name in ("ais_log_partition", "base_rate_logits", "mean_log_likelihood")
] + [
    ("pyro_deepgen.nn", "sparse_rows_matmul", sparse_matmul.sparse_rows_matmul),
    ("pyro_deepgen.nn", "sparse_rows_matmul_t", sparse_matmul.sparse_rows_matmul_t),
]

MODULES = [
    ("pyro_deepgen.models.rbm", "RBM", energy.RBM),
    ("pyro_deepgen.models.rbm", "binary_states", energy.rbm.binary_states),
    ("pyro_deepgen.models.dbn", "DBN", energy.DBN),
    ("pyro_deepgen.models.dbm", "DBM", energy.DBM),
    ("pyro_deepgen.models.dbm", "DoubledRBM", energy.DoubledRBM),
    ("pyro_deepgen.models.dbm", "MeanFieldPCD", energy.MeanFieldPCD),
    ("pyro_deepgen.infer.block_gibbs", "BlockGibbs", energy.BlockGibbs),
    ("pyro_deepgen.infer.contrastive_divergence", "ContrastiveDivergence",
     energy.ContrastiveDivergence),
    ("pyro_deepgen.nn.native", "library", native.library),
    ("pyro_deepgen.nn.sparse_matmul", "sparse_rows_matmul", sparse_matmul.sparse_rows_matmul),
]


@pytest.mark.parametrize("module, name, new", PACKAGE_ATTRIBUTES + MODULES,
                         ids=[f"{m}.{n}" for m, n, _ in PACKAGE_ATTRIBUTES + MODULES])
def test_old_path_warns_and_resolves(module, name, new):
    old = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=rf"{module}\.{name} has moved to pyro_deepgen\."):
        assert getattr(old, name) is new


def test_unknown_names_still_raise():
    with pytest.raises(AttributeError):
        importlib.import_module("pyro_deepgen.models").NotAModel
    with pytest.raises(AttributeError):
        importlib.import_module("pyro_deepgen.models.rbm").not_a_function


def test_pretrain_methods_warn_and_call_the_functions():
    """``dbn.pretrain`` / ``dbm.pretrain`` (one release) equal ``pretrain_dbn`` / ``pretrain_dbm``
    from the same seed."""
    x = torch.bernoulli(torch.full((40, 4), 0.3))
    kwargs = dict(epochs=1, lr=0.01, batch_size=20, progress=False)
    for model_fn, new in ((lambda: DBN((4, 3, 2)), pretrain_dbn), (lambda: DBM(4, 3, 2), pretrain_dbm)):
        torch.manual_seed(0)
        a = model_fn()
        with pytest.warns(DeprecationWarning, match=r"\.pretrain has moved to pyro_deepgen\.energy\.pretrain_"):
            a.pretrain(x, **kwargs)
        torch.manual_seed(0)
        b = model_fn()
        new(b, x, **kwargs)
        for p, q in zip(a.parameters(), b.parameters()):
            assert torch.equal(p, q)

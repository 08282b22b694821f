"""Exact resume for every loss class of the package: ``fit`` for 2 epochs, then resumed from the
checkpoint for 2 more, gives bit for bit the parameters and the history of 4 uninterrupted
epochs. The resumed run uses fresh model, loss and param store objects, as a new process would;
what carries over is only the checkpoint (including the loss's ``state_dict``, e.g. PCD's
persistent chains and sparsity averages)."""
import dataclasses

import pyro
import pytest
import torch

from pyro_deepgen.energy import DBM, RBM, ContrastiveDivergence, MeanFieldPCD
from pyro_deepgen.infer import (DiffusionELBO, ReweightedWakeSleep, TraceHVI_ELBO, TraceIWAE_ELBO,
                                TraceScoreFunction_ELBO, TraceVIMCO_ELBO, WakeSleep)
from pyro_deepgen.models import VAE, GaussianDiffusion, HelmholtzMachine
from pyro_deepgen.nn import TimeMLP
from pyro_deepgen.train import fit, load_checkpoint


def _binary(n=40, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, dim, generator=g) < 0.3).float()


def _vae(loss):
    def make():
        vae = VAE(8, 2, (8,))
        return vae.model, vae.guide, None, loss(), {"val_data": _binary(10, seed=1)}
    return make


def _helmholtz(loss):
    def make():
        hm = HelmholtzMachine(8, (4,))
        return hm.model, hm.guide, None, loss(), {"pass_num_data": True, "val_data": _binary(10, seed=1)}
    return make


def _diffusion():
    d = GaussianDiffusion(TimeMLP(1, (8,)), 1, num_steps=5, schedule="cosine", mean_type="v")
    x = torch.randn(40, 1, generator=torch.Generator().manual_seed(2))
    return d.model, d.guide, None, DiffusionELBO("ddpm"), {"train_data": x, "val_data": x[:10]}


def _rbm(**cd):
    def make():
        rbm = RBM(8, 4)
        return rbm, None, rbm, ContrastiveDivergence(**cd), {"optimizer": torch.optim.SGD, "lr": 0.05}
    return make


def _dbm():
    dbm = DBM(8, 4, 3)
    return dbm, None, dbm, MeanFieldPCD(), {"optimizer": torch.optim.SGD, "lr": 0.05}


CASES = {
    "Trace_ELBO": _vae(pyro.infer.Trace_ELBO),
    "TraceIWAE_ELBO-iwae": _vae(lambda: TraceIWAE_ELBO(3)),
    "TraceIWAE_ELBO-dreg": _vae(lambda: TraceIWAE_ELBO(3, estimator="dreg")),
    "TraceHVI_ELBO": _vae(lambda: TraceHVI_ELBO(num_steps=2)),
    "TraceVIMCO_ELBO": _helmholtz(lambda: TraceVIMCO_ELBO(3)),
    "TraceScoreFunction_ELBO": _helmholtz(lambda: TraceScoreFunction_ELBO(3)),
    "TraceScoreFunction_ELBO-baseline": _helmholtz(lambda: TraceScoreFunction_ELBO(1, control_variate="baseline")),
    "ReweightedWakeSleep": _helmholtz(lambda: ReweightedWakeSleep(num_particles=3)),
    "WakeSleep": _helmholtz(WakeSleep),
    "DiffusionELBO": _diffusion,
    "ContrastiveDivergence-CD1": _rbm(),
    "ContrastiveDivergence-PCD": _rbm(persistent=True, num_chains=10),
    "ContrastiveDivergence-PCD-sparsity": _rbm(persistent=True, sparsity_target=0.1, sparsity_cost=0.1),
    "MeanFieldPCD": _dbm,
}


def _run(make, epochs, ckpt=None, resume=False):
    pyro.clear_param_store()
    pyro.set_rng_seed(11)  # the modules' initialization
    model, guide, module, loss, kw = make()
    kw = dict(kw)
    data = kw.pop("train_data", _binary())
    history = fit(model, guide, data, loss=loss, module=module, epochs=epochs, batch_size=16, seed=5,
                  progress=False, checkpoint=ckpt, resume=resume, **kw)
    modules = [m for m in (module, getattr(model, "__self__", None)) if isinstance(m, torch.nn.Module)]
    params = {f"{i}.{k}": v.detach().clone() for i, m in enumerate(modules) for k, v in m.state_dict().items()}
    store = pyro.get_param_store()
    params.update({f"param.{k}": store[k].detach().clone() for k in store.keys()})
    return history, params


@pytest.mark.parametrize("name", sorted(CASES))
def test_resume_is_exact(name, tmp_path):
    make = CASES[name]
    straight, p_straight = _run(make, 4)
    ckpt = tmp_path / "run.pt"
    _run(make, 2, ckpt)
    assert load_checkpoint(ckpt)["epoch"] == 2
    resumed, p_resumed = _run(make, 4, ckpt, resume=True)
    assert set(p_resumed) == set(p_straight) and p_straight
    for k in p_straight:
        assert torch.equal(p_resumed[k], p_straight[k]), k
    a, b = dataclasses.asdict(straight), dataclasses.asdict(resumed)
    a.pop("seconds"), b.pop("seconds")
    assert a == b


def test_the_pcd_chains_and_sparsity_average_are_in_the_checkpoint(tmp_path):
    ckpt = tmp_path / "pcd.pt"
    _run(_rbm(persistent=True, num_chains=10, sparsity_target=0.1), 1, ckpt)
    state = load_checkpoint(ckpt)["loss"]
    assert state["chains"].shape == (10, 8) and state["chain_probs"].shape == (10, 4)
    assert state["mean_activation"].shape == (4,)

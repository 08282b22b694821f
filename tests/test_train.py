"""The training loop: decrease, exact resume, NaN handling, early stopping, atomic checkpoints."""
import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_deepgen.models import VAE
from pyro_deepgen.train import fit, load_checkpoint, save_checkpoint


def _data(n=200, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    proto = (torch.rand(4, dim, generator=g) > 0.5).float()
    idx = torch.randint(0, 4, (n,), generator=g)
    flip = (torch.rand(n, dim, generator=g) < 0.1).float()
    return (proto[idx] - flip).abs()


def _train(epochs, ckpt=None, resume=False, **kw):
    pyro.clear_param_store()
    pyro.set_rng_seed(123)  # the module's initialization
    vae = VAE(16, 2, (16,))
    h = fit(vae.model, vae.guide, _data(), epochs=epochs, batch_size=32, seed=7, progress=False,
            checkpoint=ckpt, resume=resume, **kw)
    return h, vae


def test_loss_decreases(device):
    pyro.set_rng_seed(0)
    vae = VAE(16, 2, (16,)).to(device)
    h = fit(vae.model, vae.guide, _data().to(device), epochs=15, batch_size=32, lr=1e-2,
            progress=False)
    assert len(h.loss) == 15 and h.epochs == 15 and h.steps == 15 * 7
    assert h.loss[-1] < 0.8 * h.loss[0]


def test_resume_continues_the_same_trajectory(tmp_path):
    straight, vae_a = _train(4, val_data=_data(50, seed=1), binarize="dynamic")
    ckpt = tmp_path / "run.pt"
    _train(2, ckpt, val_data=_data(50, seed=1), binarize="dynamic")
    assert load_checkpoint(ckpt)["epoch"] == 2
    resumed, vae_b = _train(4, ckpt, resume=True, val_data=_data(50, seed=1), binarize="dynamic")
    assert resumed.loss == straight.loss  # bit-identical
    assert resumed.val == straight.val
    for p, q in zip(vae_a.parameters(), vae_b.parameters()):
        assert torch.equal(p, q)


def test_nan_loss_names_epoch_and_step_and_keeps_checkpoint(tmp_path):
    ckpt = tmp_path / "run.pt"
    calls = {"n": 0}
    p = torch.nn.Parameter(torch.ones(()))

    def loss(model, guide, x):
        calls["n"] += 1
        return p * x.sum() * (math.nan if calls["n"] == 5 else 1.0)

    with pytest.raises(FloatingPointError, match=r"epoch 3, step 1.*run.pt"):
        fit(None, None, torch.ones(4, 1), loss=loss, module=torch.nn.ParameterList([p]),
            batch_size=2, epochs=5, checkpoint=ckpt, progress=False)
    assert load_checkpoint(ckpt)["epoch"] == 2


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"version": 1, "a": 1})

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"version": 1, "a": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["a"] == 1
    assert [f.name for f in tmp_path.iterdir()] == ["ck.pt"]  # no temporary file left


def test_corrupt_checkpoint_gives_clear_error(tmp_path):
    path = tmp_path / "bad.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="could not read checkpoint .*bad.pt"):
        load_checkpoint(path)


def test_early_stopping_restores_best():
    # A quadratic loss whose "validation" gets worse after the first evaluation.
    p = torch.nn.Parameter(torch.tensor(5.0))
    vals = iter([1.0, 2.0, 3.0, 4.0, 5.0])
    snapshots = []

    def loss(model, guide, x):
        return (p - 0.0) ** 2 * x.mean()

    def eval_fn(model, guide, x):
        snapshots.append(p.item())
        return next(vals)

    h = fit(None, None, torch.ones(2, 1), loss=loss, module=torch.nn.ParameterList([p]),
            optimizer=torch.optim.SGD, lr=0.1, epochs=10, batch_size=2, val_data=torch.ones(2, 1),
            eval_fn=eval_fn, patience=2, progress=False)
    assert h.stopped_early and h.epochs == 3 and h.best_epoch == 1
    assert p.item() == pytest.approx(snapshots[0])


def test_lr_schedule_clipping_and_pyro_optimizer():
    p = torch.nn.Parameter(torch.tensor(1.0))

    def loss(model, guide, x):
        return 1000.0 * p * x.mean()

    h = fit(None, None, torch.ones(2, 1), loss=loss, module=torch.nn.ParameterList([p]),
            optimizer=pyro.optim.SGD({"lr": 0.1}), epochs=3, batch_size=2, clip_norm=1.0,
            lr_schedule=lambda opt: torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5),
            progress=False)
    assert h.lr == [0.1, 0.05, 0.025]
    # clipped gradient of norm 1: p moves by exactly lr each epoch
    assert p.item() == pytest.approx(1.0 - 0.1 - 0.05 - 0.025)


def test_pyro_param_model_with_trace_elbo():
    # Conjugate model mu ~ N(0, 1), x_i ~ N(mu, 1): the posterior mean is sum(x)/(n+1).
    x = torch.randn(50) + 2.0

    def model(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", len(x)):
            pyro.sample("obs", dist.Normal(mu, 1.0), obs=x)

    def guide(x):
        loc = pyro.param("loc", torch.tensor(0.0))
        pyro.sample("mu", dist.Normal(loc, 0.14))

    fit(model, guide, x, epochs=300, batch_size=50, lr=0.05, progress=False)
    # Trace_ELBO gradient noise with a fixed scale: tolerance 0.05 for 300 Adam steps.
    assert pyro.param("loc").item() == pytest.approx(x.sum().item() / 51, abs=0.05)


@pytest.mark.parametrize(
    "kwargs,match",
    [({"epochs": 0}, "epochs"), ({"batch_size": -1}, "batch_size"),
     ({"binarize": "sometimes"}, "binarize"), ({"resume": True}, "checkpoint")],
)
def test_bad_arguments(kwargs, match):
    vae = VAE(4, 1, (4,))
    with pytest.raises(ValueError, match=match):
        fit(vae.model, vae.guide, torch.ones(3, 4), progress=False, **kwargs)


def test_no_parameters_is_an_error():
    with pytest.raises(ValueError, match="no parameters"):
        fit(None, None, torch.ones(2, 1), loss=lambda m, g, x: x.sum(), progress=False)

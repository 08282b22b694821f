"""The training loop: decrease, exact resume, NaN handling, early stopping, atomic checkpoints,
training without data, and per-step keyword arguments."""
import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_deepgen.models import VAE
from pyro_deepgen.train import CHECKPOINT_VERSION, Checkpoint, fit, load_checkpoint, save_checkpoint


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
    save_checkpoint(path, {"version": CHECKPOINT_VERSION, "a": 1})

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"version": CHECKPOINT_VERSION, "a": 2})
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


def _annealed(epochs, t0=0, p0=2.0, lr=0.1):
    """By hand: SGD on 0.5 * beta_t * p**2 with beta_t = 0.5 + t, from p0 at step t0."""
    p, losses = p0, []
    for t in range(t0, t0 + epochs):
        beta = 0.5 + t
        losses.append(0.5 * beta * p ** 2)
        p = p - lr * beta * p
    return p, losses


def _fit_annealed(epochs, seen, **kw):
    p = torch.nn.Parameter(torch.tensor(2.0, dtype=torch.float64))

    def loss(model, guide, beta):
        seen.append(beta)
        return 0.5 * beta * p ** 2

    h = fit(None, None, None, loss=loss, module=torch.nn.ParameterList([p]), optimizer=torch.optim.SGD,
            lr=0.1, epochs=epochs, step_kwargs=lambda t: {"beta": 0.5 + t}, progress=False, **kw)
    return h, p


def test_no_data_and_step_kwargs_match_sgd_by_hand():
    seen = []
    h, p = _fit_annealed(4, seen)
    assert seen == [0.5, 1.5, 2.5, 3.5]  # one step per epoch, step index 0, 1, 2, 3
    assert h.epochs == 4 and h.steps == 4 and len(h.loss) == 4
    p_hand, losses_hand = _annealed(4)
    assert p.item() == pytest.approx(p_hand, rel=1e-12)
    assert h.loss == pytest.approx(losses_hand, rel=1e-12)


def test_step_kwargs_index_continues_on_resume(tmp_path):
    straight, p_straight = _fit_annealed(5, [])
    ckpt = tmp_path / "anneal.pt"
    _fit_annealed(2, [], checkpoint=ckpt)
    seen = []
    resumed, p_resumed = _fit_annealed(5, seen, checkpoint=ckpt, resume=True)
    assert seen == [2.5, 3.5, 4.5]  # steps 2, 3, 4
    assert resumed.loss == straight.loss and resumed.steps == 5
    assert torch.equal(p_resumed, p_straight)


def test_step_kwargs_count_global_steps_and_spare_validation():
    p = torch.nn.Parameter(torch.tensor(1.0))
    calls = []

    def loss(model, guide, x, scale=None):
        calls.append((torch.is_grad_enabled(), scale))
        return p * x.sum() * (1.0 if scale is None else scale)

    h = fit(None, None, torch.ones(5, 1), loss=loss, module=torch.nn.ParameterList([p]), batch_size=2,
            epochs=2, val_data=torch.ones(2, 1), step_kwargs=lambda t: {"scale": float(t)}, progress=False)
    train = [scale for grad, scale in calls if grad]
    val = [scale for grad, scale in calls if not grad]
    assert train == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]  # 3 minibatches per epoch, numbered across epochs
    assert val == [None, None] and h.steps == 6


@pytest.mark.parametrize(
    "kwargs,error,match",
    [({"binarize": "dynamic"}, ValueError, "binarize.*train_data"),
     ({"pass_num_data": True}, ValueError, "pass_num_data.*train_data"),
     ({"step_kwargs": {"beta": 1.0}}, TypeError, "step_kwargs")],
)
def test_bad_no_data_arguments(kwargs, error, match):
    p = torch.nn.Parameter(torch.tensor(1.0))
    with pytest.raises(error, match=match):
        fit(None, None, None, loss=lambda m, g: p ** 2, module=torch.nn.ParameterList([p]), progress=False,
            **kwargs)


def test_checkpoint_is_a_plain_versioned_dict(tmp_path):
    ckpt = tmp_path / "run.pt"
    _train(2, ckpt, val_data=_data(50, seed=1))
    state = load_checkpoint(ckpt)
    assert type(state) is dict and state["version"] == CHECKPOINT_VERSION == 2
    assert set(state) == {"version", "epoch", "modules", "param_store", "optimizer", "scheduler", "rng",
                          "history", "best_value", "best", "bad_evals", "seed", "settings",
                          "loss"}  # the format of version 2
    restored = Checkpoint.from_dict(state, ckpt)
    assert restored.epoch == 2 and restored.history.epochs == 2 and restored.seed == 7
    assert restored.to_dict()["history"] == state["history"]


def test_checkpoint_of_another_version_is_refused_clearly(tmp_path):
    path = tmp_path / "future.pt"
    save_checkpoint(path, {"version": 3, "epoch": 1})
    with pytest.raises(ValueError, match=r"future.pt is a pyro_deepgen checkpoint of format version 3.*new checkpoint"):
        load_checkpoint(path)
    with pytest.raises(ValueError, match=r"lacks the checkpoint entries"):
        Checkpoint.from_dict({"version": CHECKPOINT_VERSION, "epoch": 1}, path)


def test_no_data_trace_elbo_with_annealed_beta():
    # Unnormalized target exp(-U_beta) with U_beta(z) = z**2 / 2 + beta (z - 3)**2 / 2; at beta = 1 it is
    # N(1.5, 1/2), so the guide's loc converges to 1.5. Trace_ELBO with 32 particles, 400 Adam steps with
    # the lr cut tenfold after 300: over 20 seeds the final loc had mean 1.505, std 0.015; tolerance 0.06.
    def model(beta):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.factor("u", -beta * (z - 3.0) ** 2 / 2)

    def guide(beta):
        pyro.sample("z", dist.Normal(pyro.param("loc", torch.tensor(0.0)), 0.5 ** 0.5))

    pyro.clear_param_store()
    betas = []

    def anneal(t):
        betas.append(min(1.0, 0.01 + t / 200))
        return {"beta": betas[-1]}

    elbo = pyro.infer.Trace_ELBO(num_particles=32, vectorize_particles=True, max_plate_nesting=0)
    h = fit(model, guide, None, loss=elbo, lr=0.05, epochs=400, step_kwargs=anneal, progress=False,
            lr_schedule=lambda opt: torch.optim.lr_scheduler.MultiStepLR(opt, [300], 0.1))
    assert len(h.loss) == 400 and betas[0] == 0.01 and betas[-1] == 1.0
    assert pyro.param("loc").item() == pytest.approx(1.5, abs=0.06)

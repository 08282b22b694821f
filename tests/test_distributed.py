"""``fit`` under torch.distributed: 2 gloo processes spawned here against one process.

One spawned job (2 ranks, float64) runs every scenario and saves what it found; the tests
compare it with single-process runs of the same calls in this process. The model is a linear
decoder with a Delta guide whose noise is a fixed table indexed by the data point, so the ELBO
is deterministic and a step's parameters can be compared to 1e-10.
"""
import datetime
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule, PyroParam

from pyro_deepgen import distributed
from pyro_deepgen.energy import RBM, ContrastiveDivergence
from pyro_deepgen.infer import AdversarialLoss, DiffusionELBO, TraceIWAE_ELBO, TraceVIMCO_ELBO
from pyro_deepgen.models import GaussianDiffusion, SSVAE
from pyro_deepgen.models.ssvae import SemiSupervisedLoss
from pyro_deepgen.train import fit, load_checkpoint

pytestmark = pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                                reason="torch.distributed with gloo is not available")

N, D, Z = 12, 3, 2
WORLD = 2
JOB_TIMEOUT = 240  # seconds for the whole spawned job; a hang fails the test instead of blocking it


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, D, generator=g, dtype=torch.float64)
    noise = torch.randn(N, Z, generator=g, dtype=torch.float64)
    return x, torch.arange(N), noise


class Decoder(PyroModule):
    """p(z) = N(0, I), p(x|z) = N(Wz + b, I); guide: z = x E + aux[0 in batch] + noise[index] (Delta),
    or z ~ N(x E, 0.5^2) with ``stochastic``. ``aux`` is used only by the minibatches holding point 0."""

    def __init__(self, noise, stochastic=False):
        super().__init__()
        self.linear = PyroModule[torch.nn.Linear](Z, D).double()
        self.aux = PyroParam(torch.zeros(Z, dtype=torch.float64))
        self.noise = noise
        self.stochastic = stochastic

    def model(self, x, idx, num_data=None):
        with pyro.plate("data", num_data or x.shape[0], subsample=idx):
            z = pyro.sample("z", dist.Normal(torch.zeros(Z, dtype=x.dtype), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(self.linear(z), 1.0).to_event(1), obs=x)

    def guide(self, x, idx, num_data=None):
        enc = pyro.param("enc", lambda: 0.3 * torch.randn(D, Z, dtype=torch.float64))  # random: rank 0's wins
        loc = x @ enc
        if bool((idx == 0).any()):
            loc = loc + self.aux * (idx == 0).to(x.dtype)[:, None]
        with pyro.plate("data", num_data or x.shape[0], subsample=idx):
            if self.stochastic:
                pyro.sample("z", dist.Normal(loc, 0.5).to_event(1))
            else:
                pyro.sample("z", dist.Delta(loc + self.noise[idx], event_dim=1))


def _train(stochastic=False, **kwargs):
    """Build the decoder under seed 0 and fit it; returns (parameters, history)."""
    x, idx, noise = _data()
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    dec = Decoder(noise, stochastic)
    kwargs.setdefault("progress", False)
    history = fit(dec.model, dec.guide, (x, idx), **kwargs)
    params = {k: v.detach().clone() for k, v in dec.state_dict().items()}
    params["enc"] = pyro.param("enc").detach().clone()
    return params, history


def _one_step(pass_num_data=True):
    return _train(loss=pyro.infer.Trace_ELBO(), optimizer=torch.optim.SGD, lr=0.05, epochs=1, batch_size=N,
                  pass_num_data=pass_num_data, seed=3)


def _n_steps():
    return _train(loss=pyro.infer.Trace_ELBO(), lr=0.01, epochs=3, batch_size=4, pass_num_data=True, seed=4)


def _resumable(path, epochs, resume=False):
    return _train(stochastic=True, loss=pyro.infer.Trace_ELBO(), lr=0.01, epochs=epochs, batch_size=4,
                  pass_num_data=True, seed=5, checkpoint=path, resume=resume)


def _cd(path, epochs, resume=False):
    g = torch.Generator().manual_seed(1)
    v = (torch.rand(16, 6, generator=g) < 0.5).double()
    pyro.set_rng_seed(0)
    rbm = RBM(6, 3).double()
    loss = ContrastiveDivergence(persistent=True)
    history = fit(rbm, None, v, loss=loss, module=rbm, lr=0.05, epochs=epochs, batch_size=8, seed=6,
                  checkpoint=path, resume=resume, progress=False)
    return {k: v.detach().clone() for k, v in rbm.state_dict().items()}, history, loss.state_dict()


class FixedNoise:
    """Deterministic stand-ins for the random draws of the SS-VAE, diffusion and GAN losses, so
    that 2 ranks on half-batches and one process on the whole batch compute the same numbers:
    a reparameterized Normal draw is ``loc + scale * cos(7 loc)``, a function of its parameters
    only (installed with :meth:`install`, in the spawned ranks and around the single-process runs)."""

    @staticmethod
    def rsample(self, sample_shape=torch.Size()):
        loc, scale = self.loc.expand(self._extended_shape(sample_shape)), self.scale
        return loc + scale * torch.cos(7 * loc)

    @classmethod
    def install(cls, setattr_=setattr):
        setattr_(torch.distributions.Normal, "rsample", cls.rsample)


class FixedNoiseDiffusion(GaussianDiffusion):
    """The step ``t`` and the noise of each data point are functions of the point itself."""

    def training_loss(self, x0, weighting="elbo", vlb_weight=1e-3, t=None, noise=None):
        t = 1 + (x0.abs().sum(-1) * 1000).long() % self.num_steps
        return super().training_loss(x0, weighting, vlb_weight, t=t, noise=torch.sin(13 * x0 + 1))


class ConditionalGenerator(PyroModule):
    """x = tanh(W c + b): the 'noise' c is the second column block of the batch, so every rank
    generates from its own shard's rows, as one process does from the whole batch."""

    def __init__(self):
        super().__init__()
        self.net = PyroModule[torch.nn.Linear](Z, D).double()

    def model(self, n, c):
        pyro.deterministic("x", torch.tanh(self.net(c)), event_dim=1)


class Critic(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(D + Z, 1).double()

    def forward(self, x, c):
        return self.net(torch.cat([x, c], -1))


def _adversarial(objective="nonsaturating", epochs=1, batch_size=N, critic_seed=0, path=None, resume=False):
    """One epoch of a conditional GAN (SGD, 1 critic step per generator step); the critic is
    initialized from ``critic_seed`` (a rank's own seed: the ranks must adopt rank 0's)."""
    x, _, noise = _data()
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    gen = ConditionalGenerator()
    torch.manual_seed(critic_seed)
    critic = Critic()
    loss = AdversarialLoss(critic, objective=objective, lr=0.1, betas=(0.0, 0.9))
    history = fit(gen.model, None, (x, noise), loss=loss, optimizer=torch.optim.SGD, lr=0.05, epochs=epochs,
                  batch_size=batch_size, seed=3, progress=False, checkpoint=path, resume=resume)
    params = {"g." + k: v.detach().clone() for k, v in gen.state_dict().items()}
    params.update({"d." + k: v.detach().clone() for k, v in critic.state_dict().items()})
    return params, history


def _diffusion():
    x, _, _ = _data()
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    net = _DiffusionNet()
    diffusion = FixedNoiseDiffusion(net, D, num_steps=4).double()
    history = fit(diffusion.model, diffusion.guide, x, loss=DiffusionELBO(), optimizer=torch.optim.SGD, lr=0.05,
                  epochs=1, batch_size=N, pass_num_data=True, seed=3, progress=False)
    return {k: v.detach().clone() for k, v in diffusion.state_dict().items()}, history


class _DiffusionNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(D + 1, 2 * D).double()

    def forward(self, x, t):
        return self.net(torch.cat([x, t.to(x.dtype)[:, None] / 4], -1)).chunk(2, -1)


def _ssvae():
    """M2 on 12 unlabelled grey images and all 4 labelled ones per step (each rank draws its own
    permutation of the labelled set: the same sum)."""
    x, _, _ = _data()
    x = torch.sigmoid(x)
    g = torch.Generator().manual_seed(2)
    xl, yl = torch.rand(4, D, generator=g, dtype=torch.float64), torch.tensor([0, 1, 1, 0])
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    net = SSVAE(D, 2, Z, (4,)).double()
    loss = SemiSupervisedLoss(xl, yl, N, alpha=2.0, labelled_batch_size=4)
    history = fit(net.model, net.guide, x, loss=loss, optimizer=torch.optim.SGD, lr=0.05, epochs=1,
                  batch_size=N, seed=3, progress=False)
    return {k: v.detach().clone() for k, v in net.state_dict().items()}, history


def _particle_elbos():
    return {"iwae_dreg": TraceIWAE_ELBO(num_particles=3, estimator="dreg"), "vimco": TraceVIMCO_ELBO(num_particles=3)}


def _particle_step(elbo):
    return _train(stochastic=True, loss=elbo, optimizer=torch.optim.SGD, lr=0.05, epochs=1, batch_size=N,
                  pass_num_data=True, seed=3)


class Boom(RuntimeError):
    pass


def _failing_loss(model, guide, x, idx):
    if distributed.rank() == 1 and int(idx.min()) >= 0 and _failing_loss.calls == 1:
        raise Boom("rank one exploded on purpose")
    _failing_loss.calls += 1
    return pyro.infer.Trace_ELBO().differentiable_loss(model, guide, x, idx)


_failing_loss.calls = 0


def _adversarial_failing():
    """Rank 1's side of the failure scenario: its discriminator raises in the first critic step."""
    def explode(self, *args, **kwargs):
        raise Boom("the critic exploded on purpose")

    original = Critic.forward
    Critic.forward = explode
    try:
        _adversarial(batch_size=4, epochs=1, objective="hinge")
    finally:
        Critic.forward = original


def _worker(rank, port, folder):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=WORLD,
                                         timeout=datetime.timedelta(seconds=60))
    folder = Path(folder)
    out = {}
    out["one_step"], h = _one_step()
    out["one_step_loss"] = h.loss
    out["one_step_sum"], h = _one_step(pass_num_data=False)
    out["one_step_sum_loss"] = h.loss
    out["n_steps"], h = _n_steps()
    out["n_steps_loss"] = h.loss
    out["whole"], _ = _resumable(folder / "whole.pt", 3)
    out["part"], _ = _resumable(folder / "resumed.pt", 1)
    out["resumed"], _ = _resumable(folder / "resumed.pt", 3, resume=True)
    out["cd_whole"], h, _ = _cd(folder / "cd_whole.pt", 2)
    out["cd_loss"] = h.loss
    _cd(folder / "cd_resumed.pt", 1)
    out["cd_resumed"], _, out["cd_state"] = _cd(folder / "cd_resumed.pt", 2, resume=True)
    try:
        _train(loss=_failing_loss, epochs=2, batch_size=4)
        out["error"] = None
    except Exception as e:
        out["error"] = (type(e).__name__, str(e))
    out["gan"], h = _adversarial(critic_seed=rank)
    out["gan_loss"] = h.loss
    out["wgan_whole"], _ = _adversarial("wgan-gp", epochs=2, batch_size=4, critic_seed=rank,
                                        path=folder / "gan_whole.pt")
    _adversarial("wgan-gp", epochs=1, batch_size=4, critic_seed=rank, path=folder / "gan_resumed.pt")
    out["wgan_resumed"], _ = _adversarial("wgan-gp", epochs=2, batch_size=4, critic_seed=rank,
                                          path=folder / "gan_resumed.pt", resume=True)
    try:
        _adversarial(critic_seed=rank, batch_size=4, epochs=1, objective="hinge") if rank == 0 else \
            _adversarial_failing()
        out["gan_error"] = None
    except Exception as e:
        out["gan_error"] = (type(e).__name__, str(e))
    FixedNoise.install()
    out["diffusion"], h = _diffusion()
    out["diffusion_loss"] = h.loss
    out["ssvae"], h = _ssvae()
    out["ssvae_loss"] = h.loss
    for name, elbo in _particle_elbos().items():
        out[name], h = _particle_step(elbo)
        out[name + "_loss"] = h.loss
    torch.save(out, folder / f"rank{rank}.pt")
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    ctx = torch.multiprocessing.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, port, str(folder))) for r in range(WORLD)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(JOB_TIMEOUT)
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.kill()
    assert not alive, f"the 2-process job did not finish within {JOB_TIMEOUT} s (a hang)"
    saved = [folder / f"rank{r}.pt" for r in range(WORLD)]
    # gloo may abort a process at exit after its work is done ("terminate called without an active exception")
    assert all(p.exitcode == 0 or f.exists() for p, f in zip(procs, saved)), [p.exitcode for p in procs]
    return folder, [torch.load(f, weights_only=False) for f in saved]


def _assert_close(a, b, atol):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=atol, rtol=0), (k, (a[k] - b[k]).abs().max())


def test_ranks_agree(job):
    _, (r0, r1) = job
    for key in ("one_step", "n_steps", "whole", "resumed", "cd_whole", "cd_resumed"):
        _assert_close(r0[key], r1[key], atol=0)


def test_one_step_equals_one_process_on_the_full_batch(job):
    """One SGD step of 2 ranks on 6 points each = one step on the 12 points (float64, to 1e-10);
    the random initial value of ``enc`` is rank 0's on both ranks, and ``aux`` (used only where
    point 0 lies) gets its gradient."""
    _, (r0, _) = job
    for pass_num_data in (True, False):
        single, h = _one_step(pass_num_data)
        key = "one_step" if pass_num_data else "one_step_sum"
        _assert_close(r0[key], single, atol=1e-10)
        # the per-rank loss pieces add up to the full-data objective (the negative ELBO of the 12 points)
        assert r0[key + "_loss"] == pytest.approx(h.loss, rel=1e-12, abs=0)
    assert not torch.equal(single["aux_unconstrained"], torch.zeros(Z, dtype=torch.float64))


def test_n_steps_match_one_process(job):
    """9 Adam steps (3 epochs of 3 global minibatches of 4): same parameters to 1e-8 (the
    all-reduce sums in another order than one process; float64)."""
    _, (r0, _) = job
    single, h = _n_steps()
    _assert_close(r0["n_steps"], single, atol=1e-8)
    assert r0["n_steps_loss"] == pytest.approx(h.loss, rel=1e-10)


def test_checkpoint_resume_is_bit_identical(job):
    """3 epochs at once = 1 epoch, then resumed to 3, with a stochastic guide (each rank's own
    noise, restored from the checkpoint): bit-identical; so is PCD with per-rank chains."""
    folder, (r0, r1) = job
    _assert_close(r0["resumed"], r0["whole"], atol=0)
    assert not torch.equal(r0["resumed"]["enc"], r0["part"]["enc"])
    _assert_close(r0["cd_resumed"], r0["cd_whole"], atol=0)
    assert all(math.isfinite(v) for v in r0["cd_loss"])
    state = load_checkpoint(folder / "cd_resumed.pt")
    assert state["settings"]["world_size"] == WORLD and len(state["rng"]["ranks"]) == WORLD
    chains = [s["chains"] for s in state["loss"]["ranks"]]
    assert not torch.equal(chains[0], chains[1])  # persistent chains per rank
    assert torch.equal(r1["cd_state"]["chains"], chains[1])


def test_resume_with_another_world_size_is_refused(job):
    folder, _ = job
    with pytest.raises(ValueError, match=r"written by a run of 2 process\(es\) and this run has 1.*"
                                         r"torchrun --nproc_per_node 2"):
        _resumable(folder / "resumed.pt", 4, resume=True)


def test_a_failing_rank_stops_every_rank_with_its_error(job):
    _, (r0, r1) = job
    assert r1["error"] == ("Boom", "rank one exploded on purpose")
    kind, message = r0["error"]
    assert kind == "DistributedError"
    assert "rank 1: Boom: rank one exploded on purpose" in message and "epoch 1, step 2" in message


def test_adversarial_step_equals_one_process(job):
    """A conditional GAN's step (1 critic step, then the generator's) on 2 ranks = one process on
    the whole batch, to 1e-10: the critic starts from rank 0's weights (rank 1 built its own from
    another seed), its gradients are averaged, the generator's summed."""
    _, (r0, r1) = job
    _assert_close(r0["gan"], r1["gan"], atol=0)
    single, h = _adversarial()
    _assert_close(r0["gan"], single, atol=1e-10)
    assert r0["gan_loss"] == pytest.approx(h.loss, rel=1e-12)
    torch.manual_seed(0)
    assert not torch.equal(single["d.net.weight"], Critic().net.weight.detach())  # the critic did step


def test_adversarial_ranks_stay_in_step_and_resume_bit_identically(job):
    """WGAN-GP (each rank draws its own penalty points): after 6 steps the ranks' critics and
    generators are identical, and 1 epoch + resume = 2 epochs, bit for bit."""
    _, (r0, r1) = job
    _assert_close(r0["wgan_whole"], r1["wgan_whole"], atol=0)
    _assert_close(r0["wgan_resumed"], r0["wgan_whole"], atol=0)


def test_a_failing_critic_stops_every_rank(job):
    _, (r0, r1) = job
    assert r1["gan_error"] == ("Boom", "the critic exploded on purpose")
    kind, message = r0["gan_error"]
    assert kind == "DistributedError"
    assert "rank 1: Boom: the critic exploded on purpose" in message and "discriminator step 1" in message


@pytest.mark.parametrize("name", ["diffusion", "ssvae", "iwae_dreg", "vimco"])
def test_every_loss_kind_steps_as_one_process(job, monkeypatch, name):
    """DiffusionELBO, IWAE-DReG and VIMCO (``pass_num_data``: each rank's loss estimates the whole
    objective, weight 1/2) and the SS-VAE's SemiSupervisedLoss (a sum over the rank's points
    plus its share of the labelled term, weight 1): one SGD step of 2 ranks on 6 points = one
    process on 12, to 1e-10, with the losses' random draws replaced by fixed functions of their
    inputs (FixedNoise)."""
    _, (r0, r1) = job
    _assert_close(r0[name], r1[name], atol=0)
    FixedNoise.install(monkeypatch.setattr)
    runs = {"diffusion": _diffusion, "ssvae": _ssvae,
            **{k: (lambda e=e: _particle_step(e)) for k, e in _particle_elbos().items()}}
    single, h = runs[name]()
    _assert_close(r0[name], single, atol=1e-10)
    assert r0[name + "_loss"] == pytest.approx(h.loss, rel=1e-12)


def test_rank_seeds_differ():
    seeds = [distributed.rank_seed(7, r) for r in range(4)]
    assert seeds[0] == 7 and len(set(seeds)) == 4


def test_batch_size_must_split_over_the_ranks(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    monkeypatch.setattr(distributed.Context, "__init__", lambda self: setattr(self, "world", 3))
    with pytest.raises(ValueError, match="batch_size=4 is the global minibatch.*multiple of 3"):
        _train(epochs=1, batch_size=4)


TORCHRUN = Path(sys.executable).with_name("torchrun")


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed next to this python")
def test_cli_under_torchrun_writes_one_report(tmp_path):
    out = tmp_path / "run"
    cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", "-m", "pyro_deepgen.cli", "vae",
           "--epochs", "1", "--z-dim", "2", "--hidden", "16", "--eval-samples", "8", "--batch-size", "100",
           "--no-progress", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=JOB_TIMEOUT, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["world_size"] == 2 and report["epochs"] == 1
    assert done.stdout.count("wrote ") == 1  # the summary comes from rank 0 only
    assert not [p for p in tmp_path.iterdir() if p.name != "run"]  # no stray temporary folders
    shutil.rmtree(out)
    assert report["world_size"] == 2


def _rank_one_worker(launcher_pid):
    """The pid of the torchrun worker with ``RANK=1`` (a child or grandchild of the launcher)."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    stack = list(children.get(launcher_pid, []))
    while stack:
        pid = stack.pop()
        try:
            if b"RANK=1" in (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0"):
                return pid
        except OSError:
            pass
        stack.extend(children.get(pid, []))
    return None


@pytest.mark.skipif(not TORCHRUN.exists() or not Path("/proc/self/environ").exists(),
                    reason="needs torchrun next to this python and Linux's /proc")
def test_killing_a_rank_ends_the_job_and_the_run_resumes(tmp_path):
    """SIGKILL of rank 1 mid-training: torchrun stops the job, names the dead rank, and exits
    non-zero; the last checkpoint (written atomically by rank 0) is intact and the run resumes
    under torchrun."""
    out = tmp_path / "run"
    cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", "-m", "pyro_deepgen.cli", "vae",
           "--z-dim", "2", "--hidden", "16", "--eval-samples", "8", "--batch-size", "100", "--no-progress",
           "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    job = subprocess.Popen(cmd + ["--epochs", "1000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=env)
    try:
        deadline = time.monotonic() + JOB_TIMEOUT
        while not (out / "checkpoint.pt").exists() and job.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        victim = _rank_one_worker(job.pid)
        assert victim is not None and job.poll() is None, "no rank-1 worker found while training"
        os.kill(victim, signal.SIGKILL)
        _, stderr = job.communicate(timeout=JOB_TIMEOUT)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode != 0
    assert "rank      : 1" in stderr and "SIGKILL" in stderr, stderr[-2000:]
    assert not (out / "report.json").exists()
    epoch = load_checkpoint(out / "checkpoint.pt")["epoch"]
    assert epoch >= 1
    done = subprocess.run(cmd + ["--epochs", str(epoch + 1), "--resume", "--resume-override", "epochs"],
                          capture_output=True, text=True, timeout=JOB_TIMEOUT, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["epochs"] == epoch + 1 and report["world_size"] == 2

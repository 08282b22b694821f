"""Checkpoints under faults and misuse: checked settings and overrides, ``weights_only`` loading
(an untrusted pickle never runs), old and broken files, SIGKILL / SIGINT / SIGTERM during the
write, a full disk, the loss guard and the data checks of :func:`pyro_deepgen.train.fit`."""
import dataclasses
import errno
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from torch.distributions import constraints

from pyro_deepgen.models import VAE
from pyro_deepgen.train import CHECKPOINT_VERSION, fit, load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def _data(n=60, dim=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, dim, generator=g) < 0.3).float()


def _train(epochs, ckpt=None, resume=False, z_dim=2, data=None, **kw):
    pyro.clear_param_store()
    pyro.set_rng_seed(3)
    vae = VAE(6, z_dim, (5,))
    kw = {"batch_size": 20, "seed": 1, **kw}
    h = fit(vae.model, vae.guide, _data() if data is None else data, epochs=epochs, progress=False,
            checkpoint=ckpt, resume=resume, **kw)
    return h, vae


def _same(a, b):
    (ha, va), (hb, vb) = a, b
    assert all(torch.equal(p, q) for p, q in zip(va.parameters(), vb.parameters()))
    assert ha.loss == hb.loss and ha.steps == hb.steps


# ----------------------------------------------------------------- settings recorded and checked

def test_settings_are_recorded(tmp_path):
    ckpt = tmp_path / "run.pt"
    _train(1, ckpt, run_settings={"z_dim": 2, "hidden": [5]})
    s = load_checkpoint(ckpt)["settings"]
    assert s["lr"] == 1e-3 and s["batch_size"] == 20 and s["seed"] == 1 and s["binarize"] is None
    assert s["optimizer"] == "torch.optim.adam.Adam" and s["loss"] == "pyro.infer.trace_elbo.Trace_ELBO"
    assert s["loss_config.num_particles"] == 1
    assert s["shape.VAE.encoder.net.0.weight"] == [5, 6] and s["shape.VAE.decoder.net.2.weight"] == [6, 5]
    assert s["train_data[0]"]["shape"] == [60, 6] and s["train_data[0]"]["dtype"] == "torch.float32"
    assert s["train_data[0]"]["sum"] == float(_data().sum())
    assert s["run_settings.z_dim"] == 2 and s["run_settings.hidden"] == [5]


@pytest.mark.parametrize("change,listed", [
    ({"lr": 1e-2}, ["lr: 0.001 -> 0.01"]),
    ({"batch_size": 30, "seed": 2}, ["batch_size: 20 -> 30", "seed: 1 -> 2"]),
    ({"data": _data(seed=1)}, ["train_data[0]: "]),
    ({"binarize": "dynamic"}, ["binarize: None -> 'dynamic'"]),
    ({"loss": pyro.infer.Trace_ELBO(num_particles=2)}, ["loss_config.num_particles: 1 -> 2"]),
    ({"optimizer": torch.optim.SGD}, ["optimizer: 'torch.optim.adam.Adam' -> 'torch.optim.sgd.SGD'"]),
])
def test_a_changed_setting_is_an_error_listing_it(tmp_path, change, listed):
    ckpt = tmp_path / "run.pt"
    _train(1, ckpt)
    before = ckpt.read_bytes()
    with pytest.raises(ValueError, match="cannot resume from .*run.pt") as info:
        _train(2, ckpt, resume=True, **change)
    message = str(info.value)
    assert "\n" not in message
    for item in listed:
        assert item in message
    assert ckpt.read_bytes() == before


def test_a_different_architecture_is_reported_by_name_before_any_state_is_loaded(tmp_path):
    ckpt = tmp_path / "run.pt"
    _train(1, ckpt, run_settings={"z_dim": 2})
    pyro.clear_param_store()
    pyro.set_rng_seed(3)
    vae = VAE(6, 3, (5,))
    init = [p.detach().clone() for p in vae.parameters()]
    with pytest.raises(ValueError) as info:
        fit(vae.model, vae.guide, _data(), epochs=2, batch_size=20, seed=1, progress=False, checkpoint=ckpt,
            resume=True, run_settings={"z_dim": 3})
    message = str(info.value)
    assert "run_settings.z_dim: 2 -> 3" in message and "shape.VAE." in message
    assert "can never be overridden" in message and "size mismatch" not in message
    assert all(torch.equal(p, q) for p, q in zip(vae.parameters(), init))  # nothing was loaded


def test_a_safe_setting_names_the_override_to_pass(tmp_path):
    ckpt = tmp_path / "run.pt"
    _train(1, ckpt)
    with pytest.raises(ValueError, match=r"resume_override=\['lr'\] \(--resume-override lr"):
        _train(2, ckpt, resume=True, lr=1e-2)


def test_lr_override_is_applied_recorded_and_kept(tmp_path):
    ckpt = tmp_path / "run.pt"
    _train(2, ckpt)
    h, _ = _train(4, ckpt, resume=True, lr=1e-2, resume_override=("lr",))
    assert h.lr == [1e-3, 1e-3, 1e-2, 1e-2]  # the new lr is used, not the saved one
    assert h.overrides == [{"epoch": 2, "name": "lr", "saved": 1e-3, "now": 1e-2}]
    state = load_checkpoint(ckpt)
    assert state["settings"]["lr"] == 1e-2 and state["history"]["overrides"] == h.overrides
    h2, _ = _train(5, ckpt, resume=True, lr=1e-2)  # the checkpoint now records the new lr
    assert h2.overrides == h.overrides and h2.lr[-1] == 1e-2


def test_lr_override_with_a_schedule_scales_the_scheduled_lr(tmp_path):
    ckpt = tmp_path / "run.pt"
    sched = {"lr_schedule": lambda opt: torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5)}
    _train(2, ckpt, lr=0.1, **sched)
    h, _ = _train(4, ckpt, resume=True, lr=0.2, resume_override=["lr"], **sched)
    assert h.lr == pytest.approx([0.1, 0.05, 0.05, 0.025])


def test_optimizer_args_and_batch_size_overrides(tmp_path):
    ckpt = tmp_path / "run.pt"
    _train(1, ckpt, optimizer=pyro.optim.SGD({"lr": 0.01, "momentum": 0.9}))
    h, _ = _train(2, ckpt, resume=True, optimizer=pyro.optim.SGD({"lr": 0.01, "momentum": 0.5}), batch_size=30,
                  resume_override=("optimizer_args", "batch_size"))
    assert {(o["name"], o["saved"], o["now"]) for o in h.overrides} == {
        ("optimizer_args.momentum", 0.9, 0.5), ("batch_size", 20, 30)}
    assert h.steps == 3 + 2


@pytest.mark.parametrize("name", ["seed", "shape", "train_data", "binarize", "loss", "optimizer"])
def test_defining_settings_can_never_be_overridden(tmp_path, name):
    with pytest.raises(ValueError, match=f"'{name}'.*can never be overridden.*new checkpoint path"):
        _train(1, tmp_path / "run.pt", resume=True, resume_override=(name,))


def test_unknown_override_is_refused():
    with pytest.raises(ValueError, match="'colour', which is not a setting that may be overridden"):
        _train(1, None, resume_override=("colour",))


def test_run_settings_keys_marked_overridable(tmp_path):
    ckpt = tmp_path / "run.pt"
    _train(1, ckpt, run_settings={"beta": 1.0, "z_dim": 2, "overridable": ["beta"], "epochs": 1})
    with pytest.raises(ValueError, match=r"run_settings.beta: 1.0 -> 0.5; to continue .*\['beta'\]"):
        _train(2, ckpt, resume=True, run_settings={"beta": 0.5, "z_dim": 2, "overridable": ["beta"], "epochs": 2})
    h, _ = _train(2, ckpt, resume=True, resume_override=("beta",),
                  run_settings={"beta": 0.5, "z_dim": 2, "overridable": ["beta"], "epochs": 2})
    assert h.overrides == [{"epoch": 1, "name": "run_settings.beta", "saved": 1.0, "now": 0.5}]
    with pytest.raises(ValueError, match="'z_dim', which is not a setting that may be overridden"):
        _train(3, ckpt, resume=True, resume_override=("z_dim",), run_settings={"z_dim": 3})


def test_epochs_may_differ_freely(tmp_path):
    ckpt = tmp_path / "run.pt"
    _train(2, ckpt)
    _same(_train(5, ckpt, resume=True), _train(5))


# ------------------------------------------------------------------------- weights_only loading

def test_checkpoint_holds_only_plain_data_with_param_constraints(tmp_path):
    def model(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", len(x)):
            pyro.sample("obs", dist.Normal(mu, 1.0), obs=x)

    def guide(x):
        loc = pyro.param("loc", torch.tensor(0.0), constraint=constraints.interval(-5.0, 5.0))
        scale = pyro.param("scale", torch.tensor(0.5), constraint=constraints.positive)
        pyro.sample("mu", dist.Normal(loc, scale))

    x = torch.randn(20) + 1.0

    def run(epochs, **kw):
        pyro.clear_param_store()
        fit(model, guide, x, epochs=epochs, batch_size=10, lr=0.05, progress=False, seed=4, **kw)
        return {k: pyro.param(k).detach().clone() for k in ("loc", "scale")}

    ckpt = tmp_path / "run.pt"
    run(2, checkpoint=ckpt)
    state = torch.load(ckpt, weights_only=True)  # no allowlist needed
    assert state["param_store"]["constraints"]["scale"] == {"singleton": "positive"}
    assert state["param_store"]["constraints"]["loc"]["class"] == "_Interval"
    assert pyro.get_param_store()._constraints["scale"] is constraints.positive
    resumed = run(4, checkpoint=ckpt, resume=True)
    assert isinstance(pyro.get_param_store()._constraints["loc"], type(constraints.interval(0.0, 1.0)))
    straight = run(4)
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_an_untrusted_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"version": CHECKPOINT_VERSION, "payload": _Evil(marker)}, path)
    with pytest.raises(ValueError, match="could not read checkpoint .*evil.pt.*not plain data") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)
    assert not marker.exists()
    with pytest.raises(ValueError, match="evil.pt"):
        _train(2, path, resume=True)
    assert not marker.exists()


def test_a_version_1_checkpoint_is_named_with_what_to_do(tmp_path):
    path = tmp_path / "old.pt"
    # what release 1 wrote: numpy's and Python's random states pickled as they are
    torch.save({"version": 1, "epoch": 2, "rng": {"numpy": np.random.get_state()}}, path)
    with pytest.raises(ValueError, match=r"old.pt is a pyro_deepgen checkpoint of format version 1, but this version "
                                         r"reads format 2: start afresh with a new checkpoint path .*release"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"PK\x03\x04garbage"])
def test_a_corrupt_or_foreign_file_is_one_line_naming_it(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="could not read checkpoint .*bad.pt") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)
    buf = io.BytesIO()
    torch.save([1, 2], buf)
    path.write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match="bad.pt is not a pyro_deepgen checkpoint"):
        load_checkpoint(path)


# ------------------------------------------------------------------------- faults during a write

_CHILD = """
import io, os, signal, sys, torch
sys.path.insert(0, {root!r})
from tests.reliability.test_checkpoints import _train
real, calls = torch.save, []
def dying(obj, f):
    calls.append(1)
    if len(calls) < 2:
        return real(obj, f)
    buf = io.BytesIO()
    real(obj, buf)
    f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
torch.save = dying
_train(3, {ckpt!r})
"""


def test_sigkill_during_the_write_keeps_the_previous_checkpoint(tmp_path):
    ckpt = tmp_path / "run.pt"
    child = subprocess.run([sys.executable, "-c", _CHILD.format(root=str(ROOT), ckpt=str(ckpt))],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert load_checkpoint(ckpt)["epoch"] == 1  # the previous checkpoint, intact
    stray = [p.name for p in tmp_path.iterdir() if p.name != "run.pt"]
    assert len(stray) == 1 and stray[0].startswith(".run.pt.") and stray[0].endswith(".tmp")
    _same(_train(3, ckpt, resume=True), _train(3))  # resume reads run.pt, never the stray file


def test_a_full_disk_is_one_clear_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"version": CHECKPOINT_VERSION, "a": 1})

    def full(obj, f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError, match=r"could not write checkpoint .*ck.pt: no space left on device") as info:
        save_checkpoint(path, {"version": CHECKPOINT_VERSION, "a": 2})
    assert info.value.errno == errno.ENOSPC and "\n" not in str(info.value)
    monkeypatch.undo()
    assert load_checkpoint(path)["a"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]


def _signalling_save(monkeypatch, sig, at_call, seen):
    real = torch.save

    def save(obj, f):
        seen.append(obj["epoch"] if isinstance(obj, dict) else None)
        if len(seen) == at_call:
            os.kill(os.getpid(), sig)  # arrives while the temporary file is being written
        real(obj, f)

    monkeypatch.setattr(torch, "save", save)


def test_sigint_during_the_write_completes_it_then_interrupts(tmp_path, monkeypatch):
    ckpt = tmp_path / "run.pt"
    seen = []
    _signalling_save(monkeypatch, signal.SIGINT, 2, seen)
    with pytest.raises(KeyboardInterrupt):
        _train(4, ckpt)
    monkeypatch.undo()
    assert seen == [1, 2]  # interrupted right after the second checkpoint
    assert load_checkpoint(ckpt)["epoch"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    _same(_train(4, ckpt, resume=True), _train(4))


def test_sigterm_during_the_write_is_delivered_to_the_previous_handler_afterwards(tmp_path, monkeypatch):
    class Terminated(Exception):
        pass

    def handler(signum, frame):
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        ckpt = tmp_path / "run.pt"
        seen = []
        _signalling_save(monkeypatch, signal.SIGTERM, 1, seen)
        with pytest.raises(Terminated):
            _train(3, ckpt)
        assert seen == [1] and load_checkpoint(ckpt)["epoch"] == 1
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---------------------------------------------------------------------- loss guard, data checks

def test_max_loss_stops_naming_epoch_and_step_and_keeps_the_last_checkpoint(tmp_path):
    ckpt = tmp_path / "run.pt"
    p = torch.nn.Parameter(torch.ones(()))
    calls = []

    def loss(model, guide, x):
        calls.append(1)
        return p * x.sum() * (1e9 if len(calls) == 4 else 1.0)

    with pytest.raises(FloatingPointError, match=r"loss per data point 9\.\d+e\+08 beyond max_loss=1e\+08 at epoch 2, "
                                                 r"step 2 \(the last good checkpoint .*run.pt is kept; nothing of "
                                                 r"epoch 2 was written\)"):
        fit(None, None, torch.ones(4, 1), loss=loss, module=torch.nn.ParameterList([p]), batch_size=2, epochs=3,
            checkpoint=ckpt, progress=False, max_loss=1e8)
    assert load_checkpoint(ckpt)["epoch"] == 1


def test_max_loss_leaves_a_normal_run_alone():
    _same(_train(2, max_loss=1e8), _train(2))
    with pytest.raises(ValueError, match="max_loss must be a positive number"):
        _train(1, max_loss=-1.0)


@pytest.mark.parametrize("where", ["train_data", "val_data"])
def test_nan_in_the_data_is_named(where):
    bad = _data()
    bad[7, 3] = float("nan")
    kw = {"data": bad} if where == "train_data" else {"val_data": bad}
    with pytest.raises(ValueError, match=rf"{where}\[0\] has 1 NaN or infinite entry \(the first at index \(7, 3\)\)"):
        _train(1, **kw)


def test_history_round_trips_with_overrides(tmp_path):
    ckpt = tmp_path / "run.pt"
    _train(1, ckpt)
    h, _ = _train(2, ckpt, resume=True, batch_size=30, resume_override=["batch_size"])
    assert dataclasses.asdict(h)["overrides"][0]["name"] == "batch_size"

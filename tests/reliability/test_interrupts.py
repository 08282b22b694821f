"""Ctrl-C, SIGTERM and a diverging loss stop a command cleanly: one line, exit 130 / 143 / 1,
the checkpoint kept, no temporary folder, no report; ``--resume`` then gives the numbers of an
uninterrupted run."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pyro_deepgen.cli import main
from pyro_deepgen.experiments import common, rbm, vae

VAE = ["vae", "--epochs", "8", "--z-dim", "2", "--hidden", "8", "--eval-samples", "30", "--batch-size", "10",
       "--no-progress"]
RBM = ["rbm", "--pcd", "--epochs", "2", "--hidden", "16", "--ais-betas", "20", "--ais-runs", "4",
       "--gibbs-steps", "5", "--chains", "2", "--chain-samples", "10", "--no-progress"]
TIMINGS = ("seconds", "train_seconds", "seconds_per_epoch", "ais_seconds", "raise_seconds", "chains_seconds")


def _numbers(out: Path) -> dict:
    """report.json without the timings, the resume flag and the folder."""
    report = json.loads((out / "report.json").read_text())
    for key in TIMINGS:
        report.pop(key, None)
    for key in ("resume", "out"):
        report["settings"].pop(key)
    return report


def _leftovers(root: Path):
    return [str(p) for p in root.rglob("*") if ".tmp" in p.name]


def _interrupting_fit(monkeypatch, module, after_epoch: int = 1):
    """Make ``module``'s training stop with KeyboardInterrupt once epoch ``after_epoch`` is
    checkpointed (fit calls ``callback`` after saving), as a Ctrl-C there would."""
    real = module.fit

    def fit(*args, callback=None, **kwargs):
        def stop(epoch, history):
            if callback is not None:
                callback(epoch, history)
            if epoch == after_epoch:
                raise KeyboardInterrupt

        return real(*args, callback=stop, **kwargs)

    monkeypatch.setattr(module, "fit", fit)


@pytest.mark.parametrize("argv, module", [(VAE[:2] + ["2"] + VAE[3:], vae), (RBM, rbm)], ids=["vae", "rbm-pcd"])
def test_interrupt_then_resume_reports_the_uninterrupted_numbers(argv, module, tmp_path, monkeypatch, capsys):
    assert main([*argv, "--out", str(tmp_path / "whole")]) == 0
    with monkeypatch.context() as m:
        _interrupting_fit(m, module)
        assert main([*argv, "--out", str(tmp_path / "cut")]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"pyro-deepgen {argv[0]}: interrupted; the checkpoint {tmp_path / 'cut' / 'checkpoint.pt'} is "
                   f"kept; resume with: pyro-deepgen {' '.join(argv)} --out {tmp_path / 'cut'} --resume"]
    assert (tmp_path / "cut" / "checkpoint.pt").is_file() and not (tmp_path / "cut" / "report.json").exists()
    assert _leftovers(tmp_path) == []
    assert main([*argv, "--out", str(tmp_path / "cut"), "--resume"]) == 0
    assert _numbers(tmp_path / "cut") == _numbers(tmp_path / "whole")


def _start(argv, cwd):
    env = dict(os.environ, PYTHONWARNINGS="error")
    return subprocess.Popen([sys.executable, "-m", "pyro_deepgen", *argv], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _signal_during_training(argv, cwd, sig):
    """Start the command, send ``sig`` once its first checkpoint exists, return (rc, stderr)."""
    proc = _start(argv, cwd)
    checkpoint = cwd / "run" / "checkpoint.pt"
    deadline = time.time() + 60
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_keeps_the_checkpoint_and_resume_matches(sig, code, tmp_path, capsys):
    argv = [*VAE, "--out", "run"]
    rc, err = _signal_during_training(argv, tmp_path, sig)
    lines = err.strip().splitlines()
    assert rc == code, err
    assert lines == [f"pyro-deepgen vae: interrupted; the checkpoint {Path('run', 'checkpoint.pt')} is kept; "
                     f"resume with: pyro-deepgen {' '.join(argv)} --resume"], err
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    assert _leftovers(tmp_path) == []
    if sig == signal.SIGINT:  # one resume through the real signal path (SIGTERM unwinds the same way)
        assert main([*VAE, "--out", str(tmp_path / "run"), "--resume"]) == 0
        assert main([*VAE, "--out", str(tmp_path / "whole")]) == 0
        assert _numbers(tmp_path / "run") == _numbers(tmp_path / "whole")


def test_a_diverging_loss_stops_with_one_line_and_no_report(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(common, "MAX_LOSS", 1.0)  # the first -ELBO per point (~44 nats) is past it
    out = tmp_path / "run"
    assert main([*VAE, "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "epoch 1, step 1" in err[0], err
    assert not (out / "report.json").exists() and _leftovers(tmp_path) == []


def test_resume_with_a_changed_lr_lists_the_difference_or_records_the_override(tmp_path, capsys):
    argv = VAE[:2] + ["1"] + VAE[3:]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    assert main([*argv, "--lr", "0.01", "--out", str(tmp_path / "run"), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lr" in err[0] and "--resume-override" in err[0], err
    assert main([*argv[:2], "2", *argv[3:], "--lr", "0.01", "--out", str(tmp_path / "run"), "--resume",
                 "--resume-override", "lr"]) == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["epochs"] == 2 and report["resume_overrides"], report.get("resume_overrides")

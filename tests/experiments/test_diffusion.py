"""``experiments.diffusion``: ``run(DiffusionConfig)`` with tiny settings, the per-data defaults
and the checks of the config."""
import json
import math
import re

import pytest
import torch

from pyro_deepgen.experiments.diffusion import DEFAULTS, DiffusionConfig, bound_line, run, top_half_mask
from pyro_deepgen.models.diffusion_schedules import SCHEDULES


def test_run_on_digits_returns_the_report_it_writes(tmp_path):
    out = tmp_path / "digits"
    config = DiffusionConfig(data="digits", num_train=64, net="mlp", hidden_dims=(16,), steps=4,
                             epochs=1, max_test=10, num_samples=4, out=out, progress=False)
    report = run(config)
    assert json.loads((out / "report.json").read_text()) == report
    assert report["num_test"] == 10 and report["num_train"] == 64
    assert len(report["bound_terms_mean"]) == 5  # L_0 .. L_T
    assert report["test_bound_bits_per_dim"] > 0
    settings = report["settings"]
    assert settings["schedule"] == "cosine" and settings["lr"] == DEFAULTS["digits"]["lr"]
    assert (out / "samples.png").stat().st_size > 0 and (out / "inpainting.png").stat().st_size > 0
    assert config.schedule is None  # run resolves a copy; the caller's config is unchanged


def test_printed_bound_has_one_sign_convention(tmp_path, capsys):
    """The printed line gives -log p(x) <= X nats = Y bits/dim, both the same quantity (upper
    bounds on the negative log-likelihood, lower is better): Y = X / (D log 2)."""
    config = DiffusionConfig(data="digits", num_train=64, net="mlp", hidden_dims=(16,), steps=4,
                             epochs=1, max_test=10, num_samples=4, out=tmp_path / "d", progress=False)
    report = run(config)
    line = next(s for s in capsys.readouterr().out.splitlines() if "bound" in s)
    assert line == bound_line(report) and "lower is better" in line
    match = re.search(r"-log p\(x\) <= (\S+) \+- \S+ nats per point = (\S+) bits/dim", line)
    nats, bits = float(match.group(1)), float(match.group(2))
    assert nats > 0 and bits > 0
    assert bits == pytest.approx(nats / (64 * math.log(2)), abs=2e-3)


def test_resolved_fills_only_what_was_left_out():
    config = DiffusionConfig(steps=7).resolved()
    assert config.steps == 7 and config.schedule == "sohl" and config.net == "mlp"
    assert DiffusionConfig(data="digits").resolved().net == "unet"


def test_top_half_mask():
    mask = top_half_mask(4, (1, 4, 4))
    assert mask.shape == (1, 1, 4, 4)
    assert mask[0, 0, :2].all() and not mask[0, 0, 2:].any()
    assert torch.equal(top_half_mask(4, (16,)), mask.reshape(1, 16))


@pytest.mark.parametrize("kwargs,match", [
    (dict(steps=0), r"steps \(--steps\) must be a positive integer"),
    (dict(schedule="quadratic"), r"schedule \(--schedule\) must be one of " + ", ".join(SCHEDULES)),
    (dict(net="unet"), r"net='unet' \(--net unet\) needs images"),
    (dict(data="mnist"), r"--data-root"),
    (dict(loss="mse"), r"loss \(--loss\)"),
    (dict(lr=0.0), r"lr \(--lr\) must be a finite positive number"),
])
def test_config_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DiffusionConfig(**kwargs)


@pytest.mark.parametrize("kwargs,match", [
    (dict(sampler="euler"), r"sampler \(--sampler\) must be one of ancestral, ddim, ode"),
    (dict(data="digits", sampler="ode", objective="ddpm"), r"--sampler ode needs the continuous-time objective"),
    (dict(sampler="ddim"), r"--sampler ddim needs images"),
    (dict(data="digits", sampler="ddim", sample_steps=0), r"sample_steps \(--sample-steps\) must be a positive"),
])
def test_config_rejects_bad_sampler_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DiffusionConfig(**kwargs)


@pytest.mark.parametrize("objective", ["vdm", "improved"])
def test_objectives_on_digits_report_one_sign_convention(tmp_path, objective):
    """--objective vdm / improved: the report's nats (a log-likelihood bound, negative here) and
    bits/dim (positive) are the same quantity, bits = -nats / (D log 2), each with a standard error;
    the histogram baseline is reported too."""
    config = DiffusionConfig(data="digits", objective=objective, num_train=64, base_channels=4, steps=4,
                             epochs=1, max_test=10, num_samples=2, out=tmp_path / objective, progress=False)
    report = run(config)
    assert report["objective"] == objective and report["settings"]["objective"] == objective
    assert report["test_bound_nats"] < 0 < report["test_bound_bits_per_dim"]
    assert report["test_bound_bits_per_dim"] == pytest.approx(
        -report["test_bound_nats"] / (64 * math.log(2)), rel=1e-5)
    assert report["test_bound_bits_per_dim_stderr"] == pytest.approx(
        report["test_bound_nats_stderr"] / (64 * math.log(2)), rel=1e-4)
    assert 0 < report["histogram_bits_per_dim"] < math.log2(17)
    if objective == "vdm":
        assert set(report["bound_terms_mean"]) == {"reconstruction", "diffusion", "prior"}
        assert sum(report["bound_terms_mean"].values()) == pytest.approx(-report["test_bound_nats"], rel=1e-5)
        assert report["gamma_0"] < report["gamma_1"]
    else:
        assert len(report["bound_terms_mean"]) == 5


def test_objective_defaults_and_checks():
    assert DiffusionConfig(data="digits").resolved().objective == "ddpm"
    assert DiffusionConfig(data="swissroll").resolved().objective == "ddpm"
    with pytest.raises(ValueError, match=r"objective \(--objective\) must be one of ddpm, improved, vdm"):
        DiffusionConfig(objective="score")
    with pytest.raises(ValueError, match="objective='vdm' .* needs discrete data"):
        DiffusionConfig(objective="vdm")

"""``pyro-deepgen diffusion``: tiny smoke runs on the swiss roll and the digits, and bad input."""
import json
import math

import pytest

from pyro_deepgen.cli import main

TINY = ["--epochs", "1", "--steps", "4", "--no-progress", "--max-test", "20", "--num-samples", "8"]


def test_swissroll(tmp_path):
    out = tmp_path / "swiss"
    assert main(["diffusion", "--data", "swissroll", "--num-train", "256", "--hidden-dims", "16",
                 "--out", str(out), *TINY]) == 0
    report = json.loads((out / "report.json").read_text())
    for key in ("test_bound_nats", "test_bound_bits_per_dim", "seconds", "epochs", "settings"):
        assert key in report
    assert report["epochs"] == 1 and report["settings"]["steps"] == 4
    assert report["settings"]["schedule"] == "sohl"
    assert len(report["bound_terms_mean"]) == 5  # L_0 .. L_T
    assert (out / "trajectory.png").stat().st_size > 0


@pytest.mark.parametrize("net", ["mlp", "unet"])
def test_digits(tmp_path, net):
    out = tmp_path / "digits"
    args = ["diffusion", "--data", "digits", "--num-train", "64", "--net", net,
            "--hidden-dims", "16",
            "--base-channels", "8", "--schedule", "linear", "--out", str(out), *TINY]
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["test_bound_bits_per_dim"] > 0 and report["num_test"] == 20
    assert "held-out" in report["test_split"]
    assert (out / "samples.png").stat().st_size > 0 and (out / "inpainting.png").stat().st_size > 0


def test_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["diffusion", "--steps", "0", "--out", str(tmp_path / "a")])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["diffusion", "--schedule", "quadratic", "--out", str(tmp_path / "a")])
    assert e.value.code == 2
    assert main(["diffusion", "--data", "mnist", "--out", str(tmp_path / "b")]) == 2
    assert "--data-root" in capsys.readouterr().err
    assert main(["diffusion", "--net", "unet", "--out", str(tmp_path / "c")]) == 2
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_ddim_and_ode_samplers(tmp_path, capsys):
    """--sampler ddim on the discrete-time model; --sampler ode on the VDM adds the ODE
    log-likelihood (nats negative, bits/dim positive, one sign convention) to report.json; ode with
    a discrete-time objective and a non-ancestral sampler on the swiss roll exit 2."""
    small = ["--data", "digits", "--num-train", "64", "--base-channels", "8", "--no-progress", "--epochs", "1",
             "--max-test", "8", "--num-samples", "4", "--sample-steps", "2"]
    out = tmp_path / "ddim"
    assert main(["diffusion", *small, "--steps", "4", "--sampler", "ddim", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["sampler"] == "ddim" and report["sample_seconds"] > 0
    assert "ode_bits_per_dim" not in report and (out / "inpainting.png").stat().st_size > 0
    out = tmp_path / "ode"
    assert main(["diffusion", *small, "--objective", "vdm", "--sampler", "ode", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["ode_num_test"] == 8 and report["ode_steps"] == 2
    assert report["ode_log_likelihood_nats"] < 0 < report["ode_bits_per_dim"]
    assert report["ode_bits_per_dim"] == pytest.approx(-report["ode_log_likelihood_nats"] / (64 * math.log(2)))
    assert main(["diffusion", *small, "--objective", "ddpm", "--sampler", "ode", "--out", str(tmp_path / "x")]) == 2
    assert "--objective vdm" in capsys.readouterr().err
    assert main(["diffusion", "--sampler", "ddim", "--out", str(tmp_path / "y")]) == 2
    assert main(["diffusion", *small, "--steps", "4", "--sampler", "ddim", "--sample-steps", "5",
                 "--out", str(tmp_path / "z")]) == 2
    assert "exceeds" in capsys.readouterr().err

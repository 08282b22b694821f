"""The ``pyro-deepgen rbm`` command: a tiny end-to-end run and its argument checks."""
import json

import pytest
import torch

from pyro_deepgen.cli import main
from pyro_deepgen.energy import RBM

TINY = ["--hidden", "8", "--epochs", "2", "--ais-betas", "400", "--ais-runs", "50",
        "--gibbs-steps", "5", "--chains", "2", "--chain-samples", "20", "--no-progress"]


@pytest.mark.parametrize("method", [["--cd-k", "2"], ["--pcd"], ["--pt-pcd", "--temperatures", "3"]])
def test_cli_rbm_tiny_run(method, tmp_path, capsys):
    """8 hidden units, so the report's AIS log Z can be checked against exact enumeration:
    within 4 standard errors + 0.05 (400 temperatures, 50 runs)."""
    out = tmp_path / "run"
    assert main(["rbm", *TINY, *method, "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    for key in ("test_log_likelihood", "log_z", "log_z_stderr", "seconds_per_epoch", "epochs",
                "settings", "per_epoch"):
        assert key in report
    assert report["epochs"] == 2 and len(report["per_epoch"]) == 2
    assert report["settings"]["hidden"] == 8
    assert report["method"] == {"--pcd": "PCD", "--pt-pcd": "PT-PCD"}.get(method[0], "CD-2")
    for name in ("samples.png", "weights.png", "chains_summary.csv", "chains_summary.txt",
                 "loss.png", "rbm.pt"):
        assert (out / name).stat().st_size > 0, name
    assert "r_hat" in (out / "chains_summary.csv").read_text()
    rbm = RBM(64, 8)
    rbm.load_state_dict(torch.load(out / "rbm.pt"))
    exact = rbm.double().log_partition_exact().item()
    assert abs(report["log_z"] - exact) < 4 * report["log_z_stderr"] + 0.05
    assert report["test_log_likelihood"] < 0
    assert "test log-likelihood" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["--data", "mnist"], "--data-root"),
    (["--ais-runs", "1"], "--ais-runs"),
    (["--momentum", "1.5"], "--momentum"),
    (["--sparsity-target", "2"], "--sparsity-target"),
    (["--val-fraction", "1"], "--val-fraction"),
    (["--val-fraction", "-0.1"], "--val-fraction"),
    (["--patience", "-1"], "--patience"),
    (["--min-beta", "0"], "--min-beta"),
    (["--sampler", "hmc"], "--sampler"),
])
def test_cli_rbm_bad_values(argv, message, tmp_path, capsys):
    try:
        code = main(["rbm", *argv, "--out", str(tmp_path / "x")])
    except SystemExit as e:  # --momentum and --sparsity-target are refused at parse time
        code = e.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("argv", [["--cd-k", "3", "--pcd"], ["--hidden", "0"], ["--cd-k", "0"],
                                  ["--pcd", "--pt-pcd"], ["--temperatures", "0"],
                                  ["--chain-warmup", "0"]])
def test_cli_rbm_rejects_bad_flags(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(["rbm", *argv])
    assert e.value.code == 2

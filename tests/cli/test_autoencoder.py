"""`pyro-deepgen autoencoder` end to end with tiny settings, and its argument errors."""
import json

import pytest

from pyro_deepgen.cli import main


def test_autoencoder_cli_writes_report_and_figures(tmp_path):
    out = tmp_path / "run"
    argv = ["autoencoder", "--kind", "sparse", "--code-dim", "2", "--lambda", "0.05", "--epochs", "2",
            "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    for key in ("reconstruction_error", "sparsity", "contraction", "settings"):
        assert key in report
    assert report["settings"]["lam"] == 0.05 and report["settings"]["code_dim"] == 2
    for name in ("filters.png", "reconstructions.png", "codes.png", "loss.png"):
        assert (out / name).stat().st_size > 0
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_kmeans_cli_reports_both_inertias(tmp_path):
    out = tmp_path / "run"
    assert main(["autoencoder", "--kind", "kmeans", "--code-dim", "4", "--n-init", "2", "--no-progress",
                 "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["inertia"] > 0 and report["sklearn_inertia"] > 0


@pytest.mark.parametrize("argv", [["--kind", "pca"], ["--code-dim", "0"], ["--lambda", "-1"], ["--layers", "x"],
                                  ["--lr", "-1"], ["--epochs", "0"], ["--corruption", "salt"]])
def test_bad_argument_exits_2_and_writes_nothing(argv, tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        main(["autoencoder", *argv, "--out", str(out)])
    assert e.value.code == 2
    assert not out.exists()
    assert argv[0] in capsys.readouterr().err


def test_config_error_is_one_line_exit_2(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["autoencoder", "--kind", "linear", "--loss", "bernoulli", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--loss" in err[0]
    assert not out.exists()

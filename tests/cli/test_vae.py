"""`pyro-deepgen vae` end to end with tiny settings, and its argument errors."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pyro_deepgen.cli import main

TINY = ["--epochs", "2", "--hidden", "16", "--eval-samples", "25", "--no-progress"]


def test_vae_cli_writes_report_and_figures(tmp_path):
    out = tmp_path / "run"
    assert main(["vae", "--z-dim", "2", *TINY, "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    for key in ("test_elbo", "test_log_likelihood", "active_units", "khat_median", "khat_max",
                "epochs", "seconds", "settings"):
        assert key in report
    assert report["epochs"] == 2
    assert report["test_elbo"] <= report["test_log_likelihood"] + 1e-3
    for name in ("checkpoint.pt", "samples.png", "reconstructions.png", "loss.png", "manifold.png"):
        assert (out / name).stat().st_size > 0
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no temporary folder left


@pytest.mark.parametrize(
    "argv", [["--epochs", "0"], ["--hidden", "20,x"], ["--binarize", "maybe"], ["--lr", "-1"]]
)
def test_bad_argument_exits_2_and_writes_nothing(argv, tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        main(["vae", *argv, "--out", str(out)])
    assert e.value.code == 2
    assert not out.exists()
    assert argv[0] in capsys.readouterr().err


def test_missing_data_root_is_a_one_line_error(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["vae", "--data", "mnist", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--data-root" in err[0]
    assert not out.exists()


def test_console_script_exit_code_for_bad_argument(tmp_path):
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "pyro_deepgen", "vae", "--epochs", "-3"],
                       capture_output=True, text=True, cwd=tmp_path, env=env)
    assert r.returncode == 2 and "--epochs" in r.stderr

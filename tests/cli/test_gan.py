"""`pyro-deepgen gan` end to end with tiny settings, and its argument errors."""
import json

import pytest

from pyro_deepgen.cli import main


def test_gan_cli_writes_report_samples_and_curves(tmp_path):
    out = tmp_path / "run"
    argv = ["gan", "--loss", "hinge", "--conditional", "--epochs", "1", "--batch-size", "200", "--hidden", "16",
            "--z-dim", "4", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["loss"] == "hinge" and report["conditional"] and report["settings"]["hidden"] == [16]
    for name in ("samples.png", "losses.png", "progress.png"):
        assert (out / name).stat().st_size > 0


@pytest.mark.parametrize("argv", [["--loss", "lsgan"], ["--n-critic", "0"], ["--gp-weight", "-1"], ["--lr", "0"],
                                  ["--hidden", "16,x"], ["--z-dim", "0"], ["--ema", "1"]])
def test_bad_argument_exits_2_and_writes_nothing(argv, tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        main(["gan", *argv, "--out", str(out)])
    assert e.value.code == 2
    assert not out.exists()
    assert argv[0] in capsys.readouterr().err

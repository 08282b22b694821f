"""`pyro-deepgen autoregressive` end to end with tiny settings, and its argument errors."""
import json

import pytest

from pyro_deepgen.cli import main


def test_autoregressive_cli_writes_report_and_samples(tmp_path):
    out = tmp_path / "run"
    argv = ["autoregressive", "--model", "made", "--hidden", "16", "--orderings", "2", "--epochs", "2",
            "--batch-size", "200", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    for key in ("test_log_likelihood", "test_bits_per_dim", "test_log_likelihood_per_mask", "epochs", "settings"):
        assert key in report
    assert report["settings"]["orderings"] == 2 and report["settings"]["hidden"] == [16]
    assert (out / "samples.png").stat().st_size > 0
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


@pytest.mark.parametrize("argv", [["--model", "rnade"], ["--orderings", "0"], ["--hidden", "16,x"],
                                  ["--lr", "-1"], ["--epochs", "0"]])
def test_bad_argument_exits_2_and_writes_nothing(argv, tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        main(["autoregressive", *argv, "--out", str(out)])
    assert e.value.code == 2
    assert not out.exists()
    assert argv[0] in capsys.readouterr().err


def test_orderings_with_nade_is_a_one_line_error(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["autoregressive", "--model", "nade", "--orderings", "4", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--orderings" in err[0]
    assert not out.exists()

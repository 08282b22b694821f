"""`pyro-deepgen gsn` end to end with tiny settings, and its argument errors."""
import json

import pytest

from pyro_deepgen.cli import main


def test_gsn_cli_writes_report_and_samples(tmp_path):
    out = tmp_path / "run"
    argv = ["gsn", "--walkback", "3", "--noise", "flip", "--epochs", "1", "--batch-size", "200", "--hidden", "16",
            "--chain-steps", "3", "--mixing-chains", "2", "--mixing-warmup", "2", "--mixing-draws", "10",
            "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["walkback"] == 3 and report["noise"] == "flip" and report["noise_level"] == 0.2
    for name in ("samples.png", "losses.png", "progress.png", "chain.png"):
        assert (out / name).stat().st_size > 0


@pytest.mark.parametrize("argv", [["--walkback", "0"], ["--noise", "dropout"], ["--noise-level", "-0.1"],
                                  ["--hidden", "x"], ["--chain-steps", "0"]])
def test_bad_argument_exits_2_and_writes_nothing(argv, tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        main(["gsn", *argv, "--out", str(out)])
    assert e.value.code == 2
    assert not out.exists()
    assert argv[0] in capsys.readouterr().err


def test_noise_level_above_one_for_binary_noise_is_a_one_line_error(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["gsn", "--noise-level", "1.5", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--noise-level" in err[0]
    assert not out.exists()

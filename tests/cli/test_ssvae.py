"""pyro-deepgen ssvae: a smoke run and bad --labels (exit 2 before any training)."""
import json

import pytest

from pyro_deepgen.cli import main


def test_smoke(tmp_path, capsys):
    out = tmp_path / "run"
    status = main(["ssvae", "--labels", "20", "--label-draws", "1", "--z-dim", "2", "--hidden", "8",
                   "--epochs", "1", "--batch-size", "400", "--out", str(out), "--no-progress"])
    assert status in (0, None)
    report = json.loads((out / "report.json").read_text())
    assert report["model"] == "m2" and report["labels"] == 20
    assert "test error" in capsys.readouterr().out


@pytest.mark.parametrize("labels", ["0", "15", "5000"])
def test_bad_labels_exit_2(tmp_path, labels, capsys):
    with pytest.raises(SystemExit) as e:
        code = main(["ssvae", "--labels", labels, "--out", str(tmp_path / "r"), "--no-progress"])
        raise SystemExit(code)
    assert e.value.code == 2
    assert "labels" in capsys.readouterr().err
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


@pytest.mark.parametrize("argv, name", [(["--model", "m2", "--m1-z-dim", "5"], "m1_z_dim (--m1-z-dim)"),
                                        (["--classifier-dropout", "1"], "--classifier-dropout")])
def test_bad_settings_exit_2(tmp_path, argv, name, capsys):
    with pytest.raises(SystemExit) as e:
        code = main(["ssvae", *argv, "--out", str(tmp_path / "r"), "--no-progress"])
        raise SystemExit(code)
    assert e.value.code == 2
    assert name in capsys.readouterr().err
    assert not (tmp_path / "r").exists()

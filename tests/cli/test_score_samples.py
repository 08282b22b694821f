"""`pyro-deepgen score-samples` end to end on a tiny VAE run folder, and its argument errors."""
import json

import pytest

from pyro_deepgen.cli import main


def test_score_samples_cli_on_a_vae_run(tmp_path):
    run_dir = tmp_path / "vae"
    assert main(["vae", "--z-dim", "2", "--hidden", "16", "--epochs", "1", "--eval-samples", "3", "--no-progress",
                 "--out", str(run_dir)]) == 0
    out = tmp_path / "scores"
    assert main(["score-samples", "--run", str(run_dir), "--num-samples", "60", "--num-permutations", "20",
                 "--classifier-epochs", "1", "--no-progress", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["num_samples"] == 60 and "mmd_p_value" in report
    assert (out / "samples.png").is_file()


@pytest.mark.parametrize("argv", [["--run", "does-not-exist"], ["--run", "."], ["--against", "x", "--run", "."]])
def test_bad_run_exits_2_and_writes_nothing(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "scores"
    try:
        code = main(["score-samples", *argv, "--out", str(out)])
    except SystemExit as e:
        code = e.code
    assert code == 2
    assert not out.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ("--run" in err[0] or "--against" in err[0])


def test_missing_run_exits_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["score-samples"])
    assert e.value.code == 2

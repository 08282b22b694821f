"""``pyro-deepgen flows2d``: a tiny run, and bad input."""
import json
import math

from pyro_deepgen.cli import main


def test_cli_smoke_run(tmp_path):
    out = tmp_path / "flows2d"
    argv = ["flows2d", "--steps", "20", "--energies", "U1,U3", "--flows", "planar,nice",
            "--depths", "2", "--samples", "200", "--particles", "32", "--out", str(out),
            "--no-progress"]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    cells = {(r["energy"], r["flow"], r["depth"]) for r in report["results"]}
    assert cells == {(e, f, k) for e in ("U1", "U3")
                     for f, k in (("gaussian", 0), ("planar", 2), ("nice", 2))}
    assert all(math.isfinite(r["kl"]) for r in report["results"])
    assert report["settings"]["steps"] == 20
    assert (out / "flows2d.png").stat().st_size > 0
    assert "| nice | 2 |" in (out / "table.md").read_text()


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    out = tmp_path / "x"
    assert main(["flows2d", "--energies", "U7", "--steps", "1", "--out", str(out)]) == 2
    assert "unknown energy" in capsys.readouterr().err
    assert not out.exists()

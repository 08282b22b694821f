"""``--out`` can never lose a user's data: the one output-folder rule of every command
(:func:`pyro_deepgen.experiments.common.prepare_output`), checked before any data are read."""
import json
import os
from pathlib import Path

import pytest

from pyro_deepgen.cli import main
from pyro_deepgen.experiments.common import MARKER, OutputFolderWarning, prepare_output

TINY = ["--epochs", "1", "--z-dim", "2", "--hidden", "8", "--eval-samples", "30", "--batch-size", "200",
        "--no-progress"]
COMMANDS = {  # the cheapest valid arguments of each command (refusals happen before any work)
    "vae": TINY,
    "rbm": ["--epochs", "1", "--no-progress"],
    "diffusion": ["--epochs", "1", "--no-progress"],
    "flows2d": ["--steps", "1", "--no-progress"],
}


def _user_folder(root: Path) -> Path:
    folder = root / "mine"
    (folder / "sub").mkdir(parents=True)
    (folder / "notes.txt").write_text("my notes\n")
    (folder / "data.bin").write_bytes(os.urandom(1000))
    (folder / "sub" / "deep.txt").write_text("deep\n")
    return folder


def _snapshot(folder: Path):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line_error(capsys, *words):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for w in words:
        assert w in err[0], err[0]
    return err[0]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_users_non_empty_folder_is_refused_and_kept(command, tmp_path, capsys):
    folder = _user_folder(tmp_path)
    before = _snapshot(folder)
    assert main([command, *COMMANDS[command], "--out", str(folder)]) == 2
    _one_line_error(capsys, "--out", "holds other files", "choose another folder")
    assert _snapshot(folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no temporary folder, no marker
    # --overwrite never applies to a folder the package did not write
    assert main([command, *COMMANDS[command], "--out", str(folder), "--overwrite"]) == 2
    assert _snapshot(folder) == before and not (folder / MARKER).exists()


def test_a_file_is_refused_and_kept(tmp_path, capsys):
    path = tmp_path / "results.txt"
    path.write_bytes(b"precious")
    assert main(["vae", *TINY, "--out", str(path)]) == 2
    _one_line_error(capsys, "--out", "is a file")
    assert path.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.txt"]


def test_the_current_folder_when_not_empty_is_refused(tmp_path, monkeypatch, capsys):
    (tmp_path / "keep.txt").write_text("x")
    monkeypatch.chdir(tmp_path)
    assert main(["vae", *TINY, "--out", "."]) == 2
    _one_line_error(capsys, "--out", "holds other files")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_a_symlink_to_a_users_folder_is_refused(tmp_path, capsys):
    folder = _user_folder(tmp_path)
    before = _snapshot(folder)
    link = tmp_path / "link"
    link.symlink_to(folder)
    assert main(["vae", *TINY, "--out", str(link)]) == 2
    _one_line_error(capsys, "--out")
    assert _snapshot(folder) == before and link.is_symlink()


def test_new_folders_and_empty_folders_are_used(tmp_path, capsys):
    new = tmp_path / "a" / "b" / "run"
    assert main(["vae", *TINY, "--out", str(new)]) == 0
    marker = json.loads((new / MARKER).read_text())
    assert marker["command"] == "vae"
    assert {"report.json", "checkpoint.pt", "samples.png"} <= set(marker["files"])
    assert sorted(p.name for p in new.iterdir() if p.name != MARKER) == sorted(marker["files"])
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["vae", *TINY, "--out", str(empty)]) == 0
    assert json.loads((empty / "report.json").read_text()) == json.loads((new / "report.json").read_text()) | {
        k: json.loads((empty / "report.json").read_text())[k] for k in ("seconds", "train_seconds", "settings")}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folder left


def test_a_package_folder_needs_overwrite_which_keeps_the_users_files(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["vae", *TINY, "--out", str(out)]) == 0
    report = (out / "report.json").read_bytes()
    capsys.readouterr()
    assert main(["vae", *TINY, "--out", str(out)]) == 2
    _one_line_error(capsys, "--out", "earlier pyro-deepgen vae run", "--resume", "--overwrite")
    assert (out / "report.json").read_bytes() == report
    (out / "my-notes.txt").write_text("mine")
    (out / "mine").mkdir()
    assert main(["vae", *TINY, "--seed", "1", "--out", str(out), "--overwrite"]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "my-notes.txt" in err and "mine" in err
    assert (out / "my-notes.txt").read_text() == "mine" and (out / "mine").is_dir()
    assert json.loads((out / "report.json").read_text())["settings"]["seed"] == 1
    assert "my-notes.txt" not in json.loads((out / MARKER).read_text())["files"]


def test_resume_and_overwrite_misuse_are_one_line_errors(tmp_path, capsys):
    assert main(["vae", *TINY, "--out", str(tmp_path / "new"), "--resume"]) == 2
    _one_line_error(capsys, "--out", "no checkpoint.pt to resume from", "drop --resume")
    assert not (tmp_path / "new").exists()
    assert main(["vae", *TINY, "--out", str(tmp_path / "x"), "--resume", "--overwrite"]) == 2
    _one_line_error(capsys, "--resume and --overwrite")
    assert main(["vae", *TINY, "--out", str(tmp_path / "y"), "--resume-override", "lr"]) == 2
    _one_line_error(capsys, "--resume-override", "needs", "--resume")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores file permissions")
def test_a_read_only_folder_is_refused_before_training(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        assert main(["vae", *TINY, "--out", str(folder)]) == 2
        _one_line_error(capsys, "--out", "cannot be used")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


def test_a_parent_that_is_a_file_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["vae", *TINY, "--out", str(tmp_path / "file" / "run")]) == 2
    _one_line_error(capsys, "--out", "is a file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
    assert (tmp_path / "file").read_text() == "x"


def test_a_stale_temporary_folder_is_named_and_kept(tmp_path, capsys):
    stale = tmp_path / ".run.tmp-999999999"  # beyond any pid: its process is gone (a SIGKILL)
    stale.mkdir()
    (stale / "report.json").write_text("{}")
    assert main(["vae", *TINY, "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and str(stale) in err and "killed" in err
    assert (stale / "report.json").read_text() == "{}"


def test_results_are_moved_in_on_success_and_removed_on_failure(tmp_path):
    folder = prepare_output(tmp_path / "run", "test")
    with folder.results() as tmp:
        assert tmp.parent == tmp_path and tmp.name == f".run.tmp-{os.getpid()}"
        (tmp / "a.txt").write_text("a")
    assert (tmp_path / "run" / "a.txt").read_text() == "a" and not tmp.exists()
    assert json.loads((tmp_path / "run" / MARKER).read_text())["files"] == ["a.txt"]
    for error in (RuntimeError, KeyboardInterrupt):
        with pytest.raises(error):
            with folder.results() as tmp:
                (tmp / "a.txt").write_text("half")
                raise error()
        assert not tmp.exists() and (tmp_path / "run" / "a.txt").read_text() == "a"


def test_library_errors_name_the_option(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match=r"out \(--out\)"):
        prepare_output(tmp_path / "f", "vae")
    with pytest.raises(ValueError, match=r"out \(--out\).*holds other files"):
        prepare_output(tmp_path, "vae")


def test_overwrite_deletes_only_listed_files(tmp_path):
    folder = prepare_output(tmp_path / "run", "test")
    with folder.results() as tmp:
        (tmp / "report.json").write_text("{}")
    (tmp_path / "run" / "yours.txt").write_text("yours")
    with pytest.warns(OutputFolderWarning, match="yours.txt"):
        prepare_output(tmp_path / "run", "test", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [MARKER, "yours.txt"]

"""Bad input to the ``pyro-deepgen`` commands, run in-process through ``pyro_deepgen.cli.main``:
each is refused before anything runs, with exit status 2, one line on stderr that names the
option, and nothing created at ``--out``. The same rules hold for the configs of library
callers (the field is named). The table of these cases is in ``docs/reliability.rst``."""
import json

import pytest

from pyro_deepgen import __version__
from pyro_deepgen.cli import main
from pyro_deepgen.experiments.diffusion import DiffusionConfig
from pyro_deepgen.experiments.flows2d import Flows2DConfig
from pyro_deepgen.experiments.rbm import RBMConfig
from pyro_deepgen.experiments.vae import ELBOS, MIN_PARTICLES, VAEConfig, make_elbo

from ..data.idx_files import serve_fake_mnist

HUGE_SEED = "99999999999999999999"

# (command line, the option its message must name, a piece of that message)
PARSE_ERRORS = [
    (["vae", "--lr", "inf"], "--lr", "finite positive number"),
    (["vae", "--lr", "nan"], "--lr", "finite positive number"),
    (["vae", "--lr", "0"], "--lr", "finite positive number"),
    (["vae", "--lr", "-1e-3"], "--lr", "finite positive number"),
    (["rbm", "--lr", "inf"], "--lr", "finite positive number"),
    (["diffusion", "--lr", "nan"], "--lr", "finite positive number"),
    (["flows2d", "--lr", "-inf"], "--lr", "finite positive number"),
    (["rbm", "--momentum", "nan"], "--momentum", "[0, 1)"),
    (["rbm", "--momentum", "1"], "--momentum", "[0, 1)"),
    (["rbm", "--weight-decay", "inf"], "--weight-decay", "finite number >= 0"),
    (["rbm", "--sparsity-target", "0"], "--sparsity-target", "(0, 1)"),
    (["rbm", "--sparsity-cost", "-1"], "--sparsity-cost", "finite number >= 0"),
    (["vae", "--seed", "-1"], "--seed", "[0, 2**32)"),
    (["vae", "--seed", HUGE_SEED], "--seed", "[0, 2**32)"),
    (["rbm", "--seed", str(2 ** 32)], "--seed", "[0, 2**32)"),
    (["diffusion", "--seed", "-1"], "--seed", "[0, 2**32)"),
    (["flows2d", "--seed", HUGE_SEED], "--seed", "[0, 2**32)"),
    (["vae", "--seed", "1.5"], "--seed", "integer"),
    (["vae", "--hidden", ""], "--hidden", "at least one size"),
    (["vae", "--hidden", ","], "--hidden", "at least one size"),
    (["vae", "--hidden", "0"], "--hidden", "positive"),
    (["vae", "--hidden", "200,-5"], "--hidden", "positive"),
    (["rbm", "--hidden", ""], "--hidden", "at least one size"),
    (["diffusion", "--hidden", ""], "--hidden", "at least one size"),
    (["diffusion", "--hidden-dims", "-4"], "--hidden-dims", "positive"),
    (["flows2d", "--depths", ""], "--depths", "at least one size"),
    (["vae", "--epochs", "ten"], "--epochs", "positive integer"),
]

# refused after parsing, before any output: the config's checks and the data files
RUN_ERRORS = [
    (["vae", "--elbo", "vimco", "--particles", "1"], "--particles", "at least 2"),
    (["rbm", "--hidden", "300,200"], "--hidden", "one hidden layer"),
]


def _main(argv):
    """``main(argv)``'s exit status, whether it returns it or argparse raises SystemExit."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def _check_refused(argv, option, text, tmp_path, capsys):
    out = tmp_path / "out"
    assert _main([*argv, "--out", str(out), "--no-progress"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert option in lines[0] and text in lines[0], lines[0]
    assert "Traceback" not in captured.err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary folder either
    return lines[0]


@pytest.mark.parametrize("argv,option,text", PARSE_ERRORS, ids=[" ".join(c[0]) for c in PARSE_ERRORS])
def test_refused_at_parse_time(argv, option, text, tmp_path, capsys):
    line = _check_refused(argv, option, text, tmp_path, capsys)
    assert line.startswith(f"pyro-deepgen {argv[0]}: error: argument --")


@pytest.mark.parametrize("argv,option,text", RUN_ERRORS, ids=[" ".join(c[0]) for c in RUN_ERRORS])
def test_refused_before_running(argv, option, text, tmp_path, capsys):
    _check_refused(argv, option, text, tmp_path, capsys)


@pytest.mark.parametrize("command", ["vae", "rbm", "diffusion"])
def test_mnist_files_missing_without_download(command, tmp_path, capsys, monkeypatch):
    """An empty --data-root: one line naming the missing files and the folder, suggesting
    --download; nothing is fetched (the downloader would fail the test) and nothing written."""
    def no_network(*args, **kwargs):
        raise AssertionError("the network was used without --download")

    monkeypatch.setattr("pyro_deepgen.data.mnist.download_file", no_network)
    root = tmp_path / "empty"
    root.mkdir()
    out = tmp_path / "out"
    assert _main([command, "--data", "mnist", "--data-root", str(root), "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    line = lines[0]
    assert f"in the folder {root}: missing train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]" in line
    assert "--download" in line and "--data-root" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"] and list(root.iterdir()) == []


def test_download_flag_fetches_through_the_checked_loader(tmp_path, monkeypatch):
    """The fix the message suggests works: --download fetches the files (the mirrors are faked,
    MD5-checked) and the command runs on them, with the t10k files as its test set."""
    calls = serve_fake_mnist(monkeypatch, train=20, test=10)
    root, out = tmp_path / "mnist", tmp_path / "run"
    argv = ["vae", "--data", "mnist", "--data-root", str(root), "--download", "--epochs", "1",
            "--hidden", "8", "--z-dim", "2", "--eval-samples", "4", "--batch-size", "10",
            "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    assert len(calls) == 4
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["download"] is True and report["test_split"].startswith("t10k files")
    assert report["num_train"] == 20 and report["num_test"] == 10


def test_version(capsys):
    assert _main(["--version"]) == 0
    assert capsys.readouterr().out == f"pyro-deepgen {__version__}\n"


# the same rules for library callers: the config names the field (and its flag)
@pytest.mark.parametrize("config_class,kwargs,match", [
    (VAEConfig, {"lr": float("inf")}, r"lr \(--lr\) must be a finite positive number"),
    (VAEConfig, {"lr": float("nan")}, r"lr \(--lr\) must be a finite positive number"),
    (RBMConfig, {"lr": 0.0}, r"lr \(--lr\) must be a finite positive number"),
    (DiffusionConfig, {"lr": float("inf")}, r"lr \(--lr\) must be a finite positive number"),
    (Flows2DConfig, {"lr": -1.0}, r"lr \(--lr\) must be a finite positive number"),
    (RBMConfig, {"weight_decay": float("inf")}, r"weight_decay \(--weight-decay\) must be a finite"),
    (RBMConfig, {"sparsity_cost": float("nan")}, r"sparsity_cost \(--sparsity-cost\) must be a finite"),
    (VAEConfig, {"seed": -1}, r"seed \(--seed\) must be an integer in \[0, 2\*\*32\)"),
    (RBMConfig, {"seed": 2 ** 32}, r"seed \(--seed\) must be an integer in \[0, 2\*\*32\)"),
    (DiffusionConfig, {"seed": int(HUGE_SEED)}, r"seed \(--seed\)"),
    (Flows2DConfig, {"seed": -1}, r"seed \(--seed\)"),
    (VAEConfig, {"hidden": ()}, r"hidden \(--hidden\) must be a non-empty sequence"),
    (VAEConfig, {"hidden": (200, -1)}, r"hidden \(--hidden\) must be a non-empty sequence of positive"),
    (DiffusionConfig, {"hidden_dims": ()}, r"hidden_dims \(--hidden-dims\)"),
    (RBMConfig, {"hidden": 0}, r"hidden \(--hidden\) must be a positive integer"),
    (RBMConfig, {"hidden": (300, 200)}, r"hidden \(--hidden\) is the size of the RBM's one hidden layer"),
    (VAEConfig, {"elbo": "vimco", "particles": 1}, r"particles \(--particles\) must be at least 2"),
    (VAEConfig, {"data": "mnist", "data_root": "/nonexistent/mnist"}, "does not exist.*download=True"),
])
def test_config_rejects(config_class, kwargs, match):
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        config_class(**kwargs)


def test_rbm_hidden_as_parsed_is_one_number():
    assert RBMConfig(hidden=(300,)).hidden == 300


@pytest.mark.parametrize("name", sorted(ELBOS))
def test_objective_gets_the_particles_asked_for(name):
    """The report's particle count (settings.particles) is the count the objective uses."""
    least = MIN_PARTICLES.get(name, 1)
    for particles in sorted({least, 3}):
        assert make_elbo(name, particles).num_particles == particles
    if least > 1:
        with pytest.raises(ValueError, match="num_particles"):
            make_elbo(name, least - 1)

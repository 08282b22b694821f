"""Every command keeps its options (the ``--help`` of 0.1, plus ``--download`` and the
``--hidden`` spelling of diffusion's ``--hidden-dims``), and each option is a field of the
experiment's config, so that ``run(args)`` is one call; the metavars show the formats, ``--hidden``
has one form everywhere and every command writes to ``runs/<command>`` by default."""
import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from pyro_deepgen import __version__
from pyro_deepgen.cli import build_parser, main
from pyro_deepgen.cli.common import SIZES_METAVAR, int_list
from pyro_deepgen.experiments.autoencoder import AutoencoderConfig
from pyro_deepgen.experiments.autoregressive import AutoregressiveConfig
from pyro_deepgen.experiments.diffusion import DiffusionConfig
from pyro_deepgen.experiments.flows2d import Flows2DConfig
from pyro_deepgen.experiments.gan import GANConfig
from pyro_deepgen.experiments.gsn import GSNConfig
from pyro_deepgen.experiments.rbm import RBMConfig
from pyro_deepgen.experiments.score_samples import ScoreSamplesConfig
from pyro_deepgen.experiments.ssvae import SSVAEConfig
from pyro_deepgen.experiments.vae import GUIDES, VAEConfig

OUTPUT = "--out --overwrite --resume --resume-override".split()
COMMON = "--help --data --data-root --download --seed --device --no-progress".split() + OUTPUT
OPTIONS = {
    "vae": (VAEConfig, COMMON + "--binarize --z-dim --hidden --epochs --batch-size --lr --elbo --particles "
            "--hvi-steps --guide --flow-depth --eval-samples".split()),
    "rbm": (RBMConfig, COMMON + "--hidden --cd-k --pcd --epochs --batch-size --lr --momentum --weight-decay "
            "--sparsity-target --sparsity-cost --ais-betas --ais-runs --gibbs-steps --chains "
            "--chain-samples --chain-warmup --pt-pcd --val-fraction --patience --sampler --temperatures "
            "--min-beta".split()),
    "diffusion": (DiffusionConfig, COMMON + "--steps --schedule --epochs --batch-size --lr --loss --mean-type "
                  "--net --hidden --hidden-dims --base-channels --num-train --max-test --num-samples "
                  "--objective --sampler --sample-steps".split()),
    "autoregressive": (AutoregressiveConfig, COMMON + "--model --hidden --orderings --epochs --patience "
                       "--batch-size --lr".split()),
    "gan": (GANConfig, COMMON + "--loss --conditional --n-critic --gp-weight --epochs --batch-size --lr --z-dim "
            "--hidden --spectral-norm --no-minibatch-std --ema".split()),
    "gsn": (GSNConfig, COMMON + "--walkback --noise --noise-level --epochs --batch-size --lr --hidden --chain-steps "
            "--mixing-chains --mixing-warmup --mixing-draws".split()),
    "ssvae": (SSVAEConfig, COMMON + "--model --labels --label-draws --z-dim --hidden --epochs --batch-size --lr "
              "--alpha --m1-z-dim --m1-hidden --m1-epochs --m1-lr --classifier-dropout".split()),
    "autoencoder": (AutoencoderConfig, COMMON + "--kind --code-dim --lambda --layers --noise --corruption --loss "
                    "--epochs --batch-size --lr --n-init".split()),
    "flows2d": (Flows2DConfig, "--help --seed --device --out --overwrite --no-progress --energies --flows --depths "
                "--steps --anneal-steps --particles --lr --samples".split()),
    "score-samples": (ScoreSamplesConfig, "--help --seed --device --out --overwrite --no-progress --run --against "
                      "--data-root --num-samples --num-permutations --classifier-epochs".split()),
}


def _subparsers():
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_the_commands():
    assert sorted(_subparsers()) == sorted(OPTIONS)


@pytest.mark.parametrize("command", sorted(OPTIONS))
def test_options_are_kept_and_are_config_fields(command):
    config_class, expected = OPTIONS[command]
    parser = _subparsers()[command]
    options = {s for a in parser._actions for s in a.option_strings if s.startswith("--")}
    assert options == set(expected)
    dests = {a.dest for a in parser._actions if a.dest != "help"}
    assert dests == {f.name for f in dataclasses.fields(config_class)}
    help_text = parser.format_help()
    assert all(option in help_text for option in expected)
    defaults = config_class()
    declared = {f.name: f.default for f in dataclasses.fields(config_class)}
    for a in parser._actions:  # the command line and the library share their defaults
        if a.dest != "help":  # (None on both sides: a default that depends on another option, e.g. --kind)
            assert a.default == getattr(defaults, a.dest) or a.default is declared[a.dest] is None, a.dest


def test_vae_guide_choices_are_the_flow_registry():
    parser = _subparsers()["vae"]
    guide = next(a for a in parser._actions if a.dest == "guide")
    assert tuple(guide.choices) == GUIDES


def test_help_runs_in_a_fresh_process(tmp_path):
    """Building the parser imports every command (and its experiment) from scratch."""
    repo = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, "-m", "pyro_deepgen", "--help"], capture_output=True, text=True,
                       cwd=tmp_path, env={"PYTHONPATH": str(repo), "COLUMNS": "100"})
    assert r.returncode == 0 and r.stdout.startswith("usage: pyro-deepgen"), r.stderr
    assert all(command in r.stdout for command in OPTIONS)


def _action(command, option):
    return next(a for a in _subparsers()[command]._actions if option in a.option_strings)


def test_hidden_has_one_form_in_every_command():
    commands = [c for c in OPTIONS if "--hidden" in OPTIONS[c][1]]
    assert sorted(commands) == ["autoregressive", "diffusion", "gan", "gsn", "rbm", "ssvae", "vae"]
    for command in commands:
        action = _action(command, "--hidden")
        assert action.type is int_list and action.metavar == SIZES_METAVAR, command
        assert f"--hidden {SIZES_METAVAR}" in _subparsers()[command].format_usage()


@pytest.mark.parametrize("command,option,metavar", [
    ("vae", "--hidden", "N,N,..."), ("flows2d", "--depths", "N,N,..."),
    ("flows2d", "--energies", "U1,U2,..."), ("flows2d", "--flows", "NAME,NAME,..."),
    ("vae", "--data-root", "DIR"), ("vae", "--out", "DIR"), ("rbm", "--cd-k", "K"),
])
def test_metavars_show_formats(command, option, metavar):
    assert f"{option} {metavar}" in _subparsers()[command].format_help()


@pytest.mark.parametrize("command", sorted(OPTIONS))
def test_out_defaults_to_runs_command(command):
    assert _action(command, "--out").default == Path("runs") / command
    assert OPTIONS[command][0]().out == Path("runs") / command


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == f"pyro-deepgen {__version__}\n"

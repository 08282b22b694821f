"""Every command keeps its options (the ``--help`` of 0.1), and each option is a field of the
experiment's config, so that ``run(args)`` is one call."""
import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from pyro_deepgen.cli import build_parser
from pyro_deepgen.experiments.diffusion import DiffusionConfig
from pyro_deepgen.experiments.flows2d import Flows2DConfig
from pyro_deepgen.experiments.rbm import RBMConfig
from pyro_deepgen.experiments.vae import GUIDES, VAEConfig

COMMON = "--help --data --data-root --seed --device --out --no-progress".split()
OPTIONS = {
    "vae": (VAEConfig, COMMON + "--binarize --z-dim --hidden --epochs --batch-size --lr --elbo --particles "
            "--hvi-steps --guide --flow-depth --eval-samples".split()),
    "rbm": (RBMConfig, COMMON + "--hidden --cd-k --pcd --epochs --batch-size --lr --momentum --weight-decay "
            "--sparsity-target --sparsity-cost --ais-betas --ais-runs --gibbs-steps --chains "
            "--chain-samples".split()),
    "diffusion": (DiffusionConfig, COMMON + "--steps --schedule --epochs --batch-size --lr --loss --mean-type "
                  "--net --hidden-dims --base-channels --num-train --max-test --num-samples".split()),
    "flows2d": (Flows2DConfig, "--help --seed --device --out --no-progress --energies --flows --depths --steps "
                "--anneal-steps --particles --lr --samples".split()),
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
    for a in parser._actions:  # the command line and the library share their defaults
        if a.dest != "help":
            assert a.default == getattr(defaults, a.dest), a.dest


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

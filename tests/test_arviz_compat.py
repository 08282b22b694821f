"""``pyro_deepgen._arviz``, the one interface to arviz 0.2x and 1.x.

The checks live in ``tests/arviz1_check.py``, which needs only numpy and arviz. They run here
with the installed arviz (0.2x on Python < 3.12) and, in a subprocess, with the interpreter named
by ``PYRO_DEEPGEN_ARVIZ1_PYTHON`` (a Python >= 3.12 environment with ``arviz>=1``, no torch
needed; ``.ci/run`` builds one where ``python3.12`` exists). The PSIS k-hat values are those of
arviz 0.23.4 on the same seeded weights; 1.x must agree within 0.03.
"""
import ast
import os
import subprocess
from pathlib import Path

import pytest

from tests import arviz1_check

KHAT_ARVIZ_0_23 = [0.0053, 0.2932, 0.4233, 0.4483, 0.7315, 1.1151]
CHECK = Path(arviz1_check.__file__)


def test_installed_arviz(capsys):
    arviz1_check.main(KHAT_ARVIZ_0_23)
    assert capsys.readouterr().out.startswith("ok ")


def test_arviz_1():
    python = os.environ.get("PYRO_DEEPGEN_ARVIZ1_PYTHON")
    if not python:
        pytest.skip("no arviz 1.x interpreter: set PYRO_DEEPGEN_ARVIZ1_PYTHON to a Python >= 3.12 with arviz>=1")
    out = subprocess.run([python, str(CHECK), *map(str, KHAT_ARVIZ_0_23)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("ok 1."), out.stdout


def test_diagnostics_use_the_compat_layer():
    """Nothing but ``_arviz`` calls arviz's version-specific API (``psislw``, ``from_pyro``,
    ``InferenceData``) inside the package."""
    package = Path(__file__).resolve().parents[1] / "pyro_deepgen"
    names = {"psislw", "from_pyro", "from_dict", "InferenceData"}
    bad = [f"{p}:{node.lineno}" for p in package.rglob("*.py") if p.name != "_arviz.py"
           for node in ast.walk(ast.parse(p.read_text()))
           if isinstance(node, ast.Attribute) and node.attr in names
           and isinstance(node.value, ast.Name) and node.value.id in ("arviz", "az")]
    assert not bad, bad

"""The Sphinx documentation builds without warnings, and every reference to the package resolves.

One build serves both tests: nitpicky (``-n``; ``conf.py`` sets ``nitpicky = True`` as well), with
every warning an error (``-W``) but reported in full (``--keep-going``). It runs offline
(``PYRO_DEEPGEN_DOCS_OFFLINE=1``): external names (torch, Pyro, ...) are then ignored by the short
list in ``conf.py``, and the package's own references must resolve within these pages.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
NOT_FOUND = re.compile(r"^(?P<where>.*?): WARNING: py:\w+ reference target not found: (?P<target>.*?) \[ref\.\w+\]$")


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    pytest.importorskip("sphinx")
    out = tmp_path_factory.mktemp("docs")
    env = dict(os.environ, PYRO_DEEPGEN_DOCS_OFFLINE="1")
    return subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-b", "html", str(DOCS), str(out)],
        capture_output=True, text=True, env=env,
    )


def test_docs_build_without_warnings(build):
    assert build.returncode == 0, build.stderr[-4000:]


def test_every_reference_to_the_package_resolves(build):
    unresolved = [line for line in build.stderr.splitlines()
                  if NOT_FOUND.match(line) and "pyro_deepgen" in line]
    assert not unresolved, f"{len(unresolved)} unresolved references:\n" + "\n".join(unresolved)


def test_the_check_sees_an_unresolved_reference():
    """The pattern above matches Sphinx's message (so the test above can fail)."""
    line = ("pyro_deepgen/train.py:docstring of pyro_deepgen.train:12: WARNING: py:func reference target "
            "not found: _resume [ref.func]")
    assert NOT_FOUND.match(line).group("target") == "_resume"

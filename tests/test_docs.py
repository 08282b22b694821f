"""The Sphinx documentation builds without warnings, every reference to the package resolves, and
every tutorial of the gallery runs.

One build serves every docs test (``docs_build``, session-scoped; ``tests/test_docs_browser.py``
opens its pages): nitpicky (``-n``; ``conf.py`` sets ``nitpicky = True`` as well), with every
warning an error (``-W``) but reported in full (``--keep-going``). It runs offline
(``PYRO_DEEPGEN_DOCS_OFFLINE=1``): external names (torch, Pyro, ...) are then ignored by the short
list in ``conf.py``, and the package's own references must resolve within these pages. It
executes every tutorial of ``examples/tutorials`` (``run_stale_examples``, so that none is skipped
as unchanged since an earlier build); a tutorial that raises fails the build.
"""
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
TUTORIALS = ROOT / "examples" / "tutorials"
NOT_FOUND = re.compile(r"^(?P<where>.*?): WARNING: py:\w+ reference target not found: (?P<target>.*?) \[ref\.\w+\]$")
# tutorials that show commands without running them (torchrun needs several processes)
SHOWN_ONLY = {"t08_torchrun"}
# a row of sphinx-gallery's sg_execution_times.rst: the tutorial, then its time as mm:ss.sss
TIME_ROW = re.compile(r":ref:`sphx_glr_tutorials_(?P<name>\w+)\.py`.*\n\s+- (?P<min>\d+):(?P<sec>[\d.]+)")


def sphinx_build(source: Path, out: Path, *options: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYRO_DEEPGEN_DOCS_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", *options,
                           "-b", "html", str(source), str(out)], capture_output=True, text=True, env=env)


_BUILT = []  # the one build of this pytest session (a fixture imported elsewhere is another fixture)


@pytest.fixture(scope="session")
def docs_build(tmp_path_factory):
    pytest.importorskip("sphinx")
    pytest.importorskip("sphinx_gallery")
    if not _BUILT:
        out = tmp_path_factory.mktemp("docs")
        result = sphinx_build(DOCS, out, "-D", "sphinx_gallery_conf.run_stale_examples=True")
        result.out = out
        _BUILT.append(result)
    return _BUILT[0]


def test_docs_build_without_warnings(docs_build):
    assert docs_build.returncode == 0, docs_build.stderr[-4000:]


def test_every_reference_to_the_package_resolves(docs_build):
    unresolved = [line for line in docs_build.stderr.splitlines()
                  if NOT_FOUND.match(line) and "pyro_deepgen" in line]
    assert not unresolved, f"{len(unresolved)} unresolved references:\n" + "\n".join(unresolved)


def test_the_check_sees_an_unresolved_reference():
    """The pattern above matches Sphinx's message (so the test above can fail)."""
    line = ("pyro_deepgen/train.py:docstring of pyro_deepgen.train:12: WARNING: py:func reference target "
            "not found: _resume [ref.func]")
    assert NOT_FOUND.match(line).group("target") == "_resume"


def test_every_tutorial_ran_within_its_budget(docs_build):
    """Each tutorial became a page with its output, in under a minute (the gallery's budget on 2
    cores; sphinx-gallery's own timing of each script)."""
    assert docs_build.returncode == 0, docs_build.stderr[-4000:]
    names = sorted(p.stem for p in TUTORIALS.glob("t[0-9][0-9]_*.py"))
    assert len(names) >= 5
    for name in names:
        if name in SHOWN_ONLY:
            continue
        page = (docs_build.out / "tutorials" / f"{name}.html").read_text()
        assert "sphx-glr-script-out" in page or "sphx-glr-single-img" in page, f"{name}: no output shown"
    times = {m["name"]: 60 * int(m["min"]) + float(m["sec"])
             for m in TIME_ROW.finditer((DOCS / "sg_execution_times.rst").read_text())}
    assert set(names) <= set(times), f"not timed: {set(names) - set(times)}"
    slow = {name: t for name, t in times.items() if name in names and t >= 60}
    assert not slow, f"tutorials over a minute: {slow}"
    print("tutorial times (s):", times, "total", round(sum(times[n] for n in names), 1))


def test_a_tutorial_that_raises_fails_the_build(tmp_path):
    """The gallery's configuration (sphinx-gallery's default, kept in conf.py) turns an exception
    in a tutorial into a failed build: shown on a two-script gallery without torch."""
    pytest.importorskip("sphinx_gallery")
    src = tmp_path / "src"
    (tmp_path / "scripts").mkdir()
    src.mkdir()
    (tmp_path / "scripts" / "GALLERY_HEADER.rst").write_text("Gallery\n=======\n")
    (tmp_path / "scripts" / "t01_fine.py").write_text('"""\nFine\n====\n"""\nprint(1)\n')
    (tmp_path / "scripts" / "t02_broken.py").write_text('"""\nBroken\n======\n"""\nraise RuntimeError("boom")\n')
    (src / "conf.py").write_text(textwrap.dedent(f"""
        extensions = ["sphinx_gallery.gen_gallery"]
        sphinx_gallery_conf = {{"examples_dirs": {str(tmp_path / "scripts")!r}, "gallery_dirs": "g",
                               "filename_pattern": r"/t\\d\\d_"}}
    """))
    (src / "index.rst").write_text("Index\n=====\n\n.. toctree::\n\n   g/index\n")
    result = sphinx_build(src, tmp_path / "out")
    assert result.returncode != 0
    assert "boom" in result.stdout + result.stderr


def landing_example() -> str:
    """The landing page's example: the code block after ``.. landing-example`` in index.rst."""
    text = (DOCS / "index.rst").read_text()
    block = re.search(r"\.\. landing-example\n\n\.\. code-block:: python\n\n(?P<code>(?:    .*\n|\n)+)", text)
    assert block, "docs/index.rst has no '.. landing-example' code block"
    return textwrap.dedent(block["code"])


def test_the_landing_page_example_runs(capsys):
    code = landing_example()
    assert len([line for line in code.splitlines() if line.strip()]) <= 10
    exec(compile(code, "docs/index.rst (landing example)", "exec"), {"__name__": "landing_example"})
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert -40.0 < float(re.search(r"-?\d+\.\d+", printed).group()) < -15.0  # nats per 8x8 digit

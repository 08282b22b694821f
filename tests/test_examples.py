"""Run every script in examples/ with tiny settings; fail if a script is missing from the list."""
import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"

# One line per example: (script, tiny arguments).
EXAMPLES = [
    ("vae.py", ["--epochs", "1", "--eval-samples", "10"]),
    ("iwae.py", ["--epochs", "1", "--particles", "3", "--eval-samples", "10"]),
    ("flow_guide.py", ["--epochs", "1", "--depth", "2", "--eval-samples", "10"]),
    ("rbm.py", ["--epochs", "1", "--hidden", "8", "--draws", "10", "--ais-betas", "100"]),
]
# examples with their own test (an optional dependency)
TESTED_ELSEWHERE = {"lightning_vae.py": "tests/test_lightning_example.py"}


def test_every_example_is_listed():
    listed = {name for name, _ in EXAMPLES} | set(TESTED_ELSEWHERE)
    present = {p.name for p in EXAMPLES_DIR.glob("*.py")}
    assert present == listed, f"examples not listed (or listed but missing): {present ^ listed}"


@pytest.mark.parametrize("script,args", EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_example_runs(script, args, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", [script, *args, "--out", str(tmp_path)])
    runpy.run_path(str(EXAMPLES_DIR / script), run_name="__main__")

"""The classifier and the docs writer of ``pyro_suites.py`` (the script itself runs Pyro's suites
and is not collected)."""
import json

import pytest

from tests.conformance.pyro_suites import COLUMNS, DOCS_BEGIN, DOCS_END, _error_and_message, classify, summarize

OURS = "/x/pyro_deepgen/infer/particles.py"
PYRO = "/x/pyro/infer/trace_elbo.py"


def rec(target="iwae1", outcome="failed", error=None, message="", raised_in=None, cause=None,
        nodeid="tests/infer/test_valid_models.py::test_a", retargeted=True):
    return {"nodeid": nodeid, "target": target, "outcome": outcome, "retargeted": retargeted,
            "error": error, "message": message, "raised_in": raised_in, "cause": cause}


@pytest.mark.parametrize("record, column", [
    (rec(outcome="passed"), "passed"),
    (rec(outcome="skipped"), None),
    (rec(retargeted=False), None),
    (rec(error="ValueError", raised_in=OURS), "refusal"),
    # a refusal raised inside pytest.warns shows as "DID NOT WARN" with the refusal chained
    (rec(error="Failed", message="DID NOT WARN", raised_in="/x/_pytest/recwarn.py",
         cause={"error": "TypeError", "message": "not a diffusion model", "raised_in": OURS}), "refusal"),
    # a ValueError from Pyro's own code under a target that promises Trace_ELBO's answer
    (rec(error="ValueError", raised_in=PYRO), "other"),
    (rec(error="AssertionError", raised_in=PYRO), "other"),
    (rec(error="TimeoutError", message="over the 120 s limit of pyro_suites.py"), "time"),
    (rec(target="vimco4", error="AssertionError", message="torch.Size([4, 3]) != torch.Size([3])"),
     "particle"),
    (rec(target="vimco4", error="AssertionError", message="0.41 not close to 0.5"), "numeric"),
    (rec(target="hvi2", error="KeyError", message="'hvi.z.momentum_scale'"), "numeric"),
    (rec(target="ws", error="RuntimeError", message="boom"), "other"),
    # STL drops the score term: its per-seed gradient is not Trace_ELBO's; any other failure is
    (rec(target="stl1", error="AssertionError", message="At key 'scale': tensor([3.8]) vs tensor([4.3])"),
     "numeric"),
    (rec(target="stl1", error="AssertionError", message="0.41 not close to 0.5"), "other"),
    (rec(target="iwae1", error="AssertionError", message="At key 'scale': tensor([3.8]) vs tensor([4.3])"),
     "other"),
])
def test_classify(record, column):
    assert classify(record, pyro_failed=set()) == column


def test_classify_a_test_pyro_fails_too():
    record = rec(error="AssertionError", raised_in=PYRO)
    assert classify(record, pyro_failed={record["nodeid"]}) == "pyro"


def test_summarize_counts_the_last_record_and_rewrites_only_between_the_markers(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    first = [rec(target="pyro", outcome="passed"),
             rec(error="TimeoutError", message="over the 120 s limit of pyro_suites.py"),
             rec(nodeid="tests/infer/test_gradient.py::test_b", error="ValueError", raised_in=OURS)]
    (results / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in first))
    # a later file (a rerun of the timed-out test alone) replaces that test's record
    (results / "z_retry.jsonl").write_text(json.dumps(rec(outcome="passed")) + "\n")
    page = tmp_path / "page.rst"
    page.write_text(f"intro\n\n{DOCS_BEGIN}\nold table\n{DOCS_END}\n\noutro\n")
    summarize(results, write_docs=page)
    text = page.read_text()
    assert text.startswith(f"intro\n\n{DOCS_BEGIN}\n") and text.endswith(f"{DOCS_END}\n\noutro\n")
    assert "old table" not in text
    valid = text.split("``test_gradient.py``")[0]
    header = len(COLUMNS) + 1
    rows = [line.strip() for line in valid.splitlines() if line.strip().startswith(("* -", "-"))]
    iwae = rows.index("* - ``TraceIWAE_ELBO(1)``")
    assert rows[iwae + 1:iwae + 1 + len(COLUMNS)] == ["- 1"] + ["- 0"] * (len(COLUMNS) - 1)
    assert rows[0] == "* - target" and len(rows) == 3 * header
    gradient = text.split("``test_gradient.py``")[1]
    assert "* - ``TraceIWAE_ELBO(1)``\n     - 0\n     - 1\n" in gradient


def test_summarize_refuses_a_page_without_the_markers(tmp_path):
    (tmp_path / "r").mkdir()
    page = tmp_path / "page.rst"
    page.write_text("no markers\n")
    with pytest.raises(SystemExit, match="markers"):
        summarize(tmp_path / "r", write_docs=page)
    assert page.read_text() == "no markers\n"


@pytest.mark.parametrize("text, parsed", [
    ("ValueError: bad shape\nmore", ("ValueError", "bad shape")),
    ("pyro.util.NonCompatibleError: x", ("pyro.util.NonCompatibleError", "x")),
    # a bare assert: pytest's rewritten expression, no type prefix
    ("assert torch.Size([5, 1]) == ()\n  \n  Left contains 2 more items, first extra item: 5",
     ("AssertionError", "assert torch.Size([5, 1]) == ()")),
])
def test_error_and_message(text, parsed):
    assert _error_and_message(text) == parsed


def test_classify_reads_a_bare_assert_recorded_whole_into_error():
    record = rec(target="dreg5", message="5",
                 error="assert torch.Size([5, 1]) == ()\n  \n  Left contains 2 more items, first extra item")
    assert classify(record, pyro_failed=set()) == "particle"

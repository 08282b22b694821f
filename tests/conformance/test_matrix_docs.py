"""The support matrix in ``docs/infer/conformance.rst`` is the one generated from the suite."""
from .cases import CELLS, COLUMNS, DEFAULT, OVERRIDES
from .matrix import DOCS_PAGE, page_block, render
from .models import SHAPES


def test_docs_matrix_is_generated_from_the_table():
    assert page_block(DOCS_PAGE.read_text()) == render(), (
        "docs/infer/conformance.rst is out of date: run `python -m tests.conformance.matrix --write`"
    )


def test_every_shape_meets_every_estimator():
    """The table is complete: one expected outcome per (shape, estimator), no stray overrides."""
    assert len(CELLS) == len(SHAPES) * len(COLUMNS)
    assert set(DEFAULT) == {c.name for c in COLUMNS}
    assert set(OVERRIDES) <= {s.name for s in SHAPES}
    for shape, row in OVERRIDES.items():
        assert set(row) <= set(DEFAULT), shape


def test_render_marks_pending_cells_and_lists_every_shape():
    text = render()
    for shape in SHAPES:
        assert f"``{shape.name}``" in text
    for (shape, column), expect in CELLS.items():
        if expect.pending:
            assert f"``{shape}`` × ``{column}``: {expect.pending}." in text

"""The ``cli-reference`` directive: the reference of every ``pyro-deepgen`` command, generated
from the argument parsers, so that the page and ``--help`` cannot differ.

For each subcommand of :func:`pyro_deepgen.cli.build_parser` it writes a section with the
command's one-line ``HELP``, its exact ``--help`` text, which holds the command's docstring
(``parser.format_help()`` at a terminal width of :data:`COLUMNS`, so that the page does not
depend on the terminal that built it), and its outputs: the ``OUTPUTS`` dict of the command's module,
``{"files": {name: what}, "report": {key: meaning}}``, as two tables. An entry that only some
runs write begins with "Only". A command without ``OUTPUTS`` (or without ``report.json`` among
its files) gets a Sphinx warning, so the ``-W`` build fails until it is documented.
"""
import argparse
import os
from contextlib import contextmanager
from typing import Dict, Iterator, List, Tuple

from docutils import nodes
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

COLUMNS = 100
logger = logging.getLogger(__name__)


@contextmanager
def _columns(width: int = COLUMNS):
    """argparse wraps at ``$COLUMNS`` (through :func:`shutil.get_terminal_size`)."""
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        yield
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def commands() -> Iterator[Tuple[str, object, argparse.ArgumentParser]]:
    """``(name, module, parser)`` of every subcommand, in the order of ``pyro-deepgen --help``."""
    from pyro_deepgen.cli import _subcommands, build_parser

    parser = build_parser()
    modules = dict(_subcommands())
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, subparser in sub.choices.items():
        yield name, modules.get(name) or modules[name.replace("-", "_")], subparser


def help_text(parser: argparse.ArgumentParser) -> str:
    """``parser.format_help()`` at :data:`COLUMNS` columns: what ``COLUMNS=100 pyro-deepgen
    <command> --help`` prints."""
    with _columns():
        return parser.format_help()


def outputs_problem(module) -> str:
    """Why the ``OUTPUTS`` of a command's module cannot be rendered, or ``""``."""
    outputs = getattr(module, "OUTPUTS", None)
    if not isinstance(outputs, dict) or set(outputs) != {"files", "report"}:
        return 'has no OUTPUTS = {"files": {name: what}, "report": {key: meaning}}'
    if not all(isinstance(outputs[k], dict) and outputs[k] for k in ("files", "report")):
        return "has an OUTPUTS whose files or report is not a non-empty dict"
    if "report.json" not in outputs["files"]:
        return 'has no "report.json" among its OUTPUTS files'
    return ""


def _summary(module) -> nodes.paragraph:
    """The command's ``HELP`` line as a sentence, plain text (not reStructuredText)."""
    text = getattr(module, "HELP", "").strip()
    text = text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
    return nodes.paragraph(text, text)


def _table(title: str, header: Tuple[str, str], rows: Dict[str, str]) -> nodes.table:
    table = nodes.table()
    table += nodes.title(title, title)
    group = nodes.tgroup(cols=2)
    table += group
    group += nodes.colspec(colwidth=30)
    group += nodes.colspec(colwidth=70)

    def row(cells, literal_first):
        tr = nodes.row()
        for i, cell in enumerate(cells):
            entry = nodes.entry()
            text = nodes.literal(cell, cell) if (literal_first and i == 0) else nodes.Text(cell)
            entry += nodes.paragraph("", "", text)
            tr += entry
        return tr

    head = nodes.thead()
    head += row(header, False)
    group += head
    body = nodes.tbody()
    for key, meaning in rows.items():
        body += row((key, meaning), True)
    group += body
    return table


class CliReference(SphinxDirective):
    """``.. cli-reference::``: one section per ``pyro-deepgen`` command."""

    has_content = False

    def run(self) -> List[nodes.Node]:
        result = []
        for name, module, parser in commands():
            title = f"pyro-deepgen {name}"
            section = nodes.section(ids=[nodes.make_id(f"cli-{name}")], names=[nodes.fully_normalize_name(title)])
            section += nodes.title(title, title)
            section += _summary(module)
            text = help_text(parser)
            block = nodes.literal_block(text, text)
            block["language"] = "text"
            section += block
            problem = outputs_problem(module)
            if problem:
                logger.warning("pyro-deepgen %s (%s) %s", name, module.__name__, problem,
                               location=self.get_location())
            else:
                section += _table("Files written to --out", ("file", "what"), module.OUTPUTS["files"])
                section += _table("Keys of report.json", ("key", "meaning"), module.OUTPUTS["report"])
            self.state.document.note_implicit_target(section, section)
            result.append(section)
        return result


def setup(app):
    app.add_directive("cli-reference", CliReference)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

"""The ``pyro-deepgen`` command line.

Every module in this package that defines ``add_arguments(parser)`` and ``run(args)`` (and a
one-line ``HELP``) becomes a subcommand named after the module, so a new command is one new file.
"""
import argparse
import importlib
import pkgutil
import sys
from typing import List, Optional


def _subcommands():
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name == "common":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "add_arguments") and hasattr(module, "run"):
            yield info.name, module


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyro-deepgen", description="Deep generative models on top of Pyro."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module in _subcommands():
        p = sub.add_parser(name, help=getattr(module, "HELP", ""), description=module.__doc__)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args._run(args)
    except (ValueError, FileNotFoundError) as e:  # bad input found after parsing: one line, exit 2
        print(f"pyro-deepgen {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The ``pyro-deepgen`` command line.

Every module in this package that defines ``add_arguments(parser)`` and ``run(args)`` (and a
one-line ``HELP``) becomes a subcommand named after the module (or its ``NAME``, for a command
name that is no Python identifier, such as ``score-samples``), so a new command is one new file.
"""
import argparse
import importlib
import os
import pkgutil
import re
import shlex
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import List, Optional


def _subcommands():
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name == "common":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "add_arguments") and hasattr(module, "run"):
            yield getattr(module, "NAME", info.name), module


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, ``PROG: error: argument --opt: why (see
    PROG --help)``, with exit status 2 (argparse prints the whole usage first), and that reads
    every negative number as a value (``--lr -1e-3``, ``--lr -inf``), not only ``-1`` and
    ``-0.5``, so that its range check names the problem."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(
            r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|infinity|nan)$", re.IGNORECASE)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(prog="pyro-deepgen", description="Deep generative models on top of Pyro.")
    parser.add_argument("--version", action="version", version=f"pyro-deepgen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module in _subcommands():
        p = sub.add_parser(name, help=getattr(module, "HELP", ""), description=module.__doc__)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


class Terminated(KeyboardInterrupt):
    """Raised by the SIGTERM handler of :func:`main`: it unwinds like Ctrl-C (temporary folders
    removed, the checkpoint kept) and :func:`main` returns 143."""


def _terminate(signum, frame):
    raise Terminated()


def _again(argv: List[str], resume: bool) -> str:
    """The command line ``argv`` again, with ``--resume`` instead of ``--overwrite``."""
    args = [a for a in argv if a != "--overwrite"]
    if resume and "--resume" not in args:
        args.append("--resume")
    return shlex.join(["pyro-deepgen", *args])


def _interrupted(args: argparse.Namespace, argv: List[str]) -> str:
    from ..experiments.common import CHECKPOINT, MARKER

    out = Path(args.out)
    checkpoint = out / CHECKPOINT
    if hasattr(args, "resume") and (out / MARKER).is_file() and checkpoint.is_file():
        return (f"interrupted; the checkpoint {checkpoint} is kept; resume with: "
                f"{_again(argv, resume=True)}")
    if hasattr(args, "resume"):
        return "interrupted before the first checkpoint; nothing to resume; run the same command again"
    return "interrupted; no results were written; run the same command again"


def _option_of(e: OSError, args: argparse.Namespace) -> Optional[str]:
    """``"out (--out)"`` or ``"data_root (--data-root)"`` when the failing path lies there."""
    if not e.filename:
        return None
    failing = Path(os.path.abspath(e.filename))
    out = Path(os.path.abspath(args.out))
    places = [("out (--out)", out), ("out (--out)", out.parent / f".{out.name}.tmp-{os.getpid()}")]
    if getattr(args, "data_root", None):
        places.append(("data_root (--data-root)", Path(os.path.abspath(args.data_root))))
    for option, place in places:
        if failing == place or place in failing.parents:
            return option
    return None


def _show_warning(prog: str, show):
    from ..experiments.common import OutputFolderWarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, OutputFolderWarning):
            print(f"{prog}: warning: {message}", file=sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)

    return showwarning


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``pyro-deepgen`` with ``argv`` (default ``sys.argv[1:]``) and return the exit status.

    Errors are one line on stderr: 2 for bad input (arguments, ``--out``, ``--data-root``), 1 for
    a failed run (a non-finite or too large loss, naming the epoch, step and kept checkpoint).
    Ctrl-C (SIGINT) and SIGTERM stop a run cleanly: the checkpoint is kept, temporary folders
    are removed, one line says how to resume, and the status is 130 or 143.

    Under ``torchrun --nproc_per_node N`` the command runs data-parallel
    (:func:`~pyro_deepgen.experiments.common.start_distributed`); only rank 0 prints.
    """
    from ..experiments.common import OutputFolderWarning, start_distributed, stop_distributed

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"pyro-deepgen {args.command}"
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main else None
    stdout = sys.stdout
    try:
        if start_distributed(getattr(args, "device", "cpu")) > 0:
            sys.stdout = open(os.devnull, "w")  # the summary and the files written: rank 0's alone
        with warnings.catch_warnings():
            warnings.simplefilter("always", OutputFolderWarning)
            warnings.showwarning = _show_warning(prog, warnings.showwarning)
            args._run(args)
    except KeyboardInterrupt as e:
        print(f"{prog}: {_interrupted(args, argv)}", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    except FloatingPointError as e:  # fit stopped on a non-finite or too large loss: no report
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    except ValueError as e:  # bad input found after parsing: one line, exit 2
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        option = _option_of(e, args)
        if isinstance(e, FileNotFoundError) or option is not None:
            where = f"{option}: " if option else ""
            print(f"{prog}: error: {where}{e}", file=sys.stderr)
            return 2
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    finally:
        if sys.stdout is not stdout:
            sys.stdout.close()
            sys.stdout = stdout
        stop_distributed()
        if in_main:
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

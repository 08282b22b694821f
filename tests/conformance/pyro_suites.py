"""Rerun Pyro's own inference test suites with every ELBO class of :mod:`pyro_deepgen.infer`.

Not collected by pytest (a script, not a ``test_*`` module). It never downloads anything: give
it the ``tests`` folder of a Pyro checkout of the installed version (e.g. ``git show
1.9.1:tests/...`` from a clone), with ``tests/common.py``, ``tests/conftest.py`` and
``tests/infer/``::

    python tests/conformance/pyro_suites.py /path/to/pyro/tests --target iwae1 \\
        --file test_valid_models.py --out /tmp/iwae1.jsonl [-- extra pytest args, e.g. -k plate]

``--target all`` loops over every target; ``--list`` prints them. Each test is run under a
per-test time limit (``--timeout``, SIGALRM); ``--nodeids FILE`` reruns only the listed tests
(e.g. those that ran past the limit on a loaded machine, written to a file that sorts after the
first results, so that ``--summarize`` counts the rerun). The retargeting: before Pyro's test modules are
imported, ``pyro.infer.Trace_ELBO`` and ``pyro.infer.TraceGraph_ELBO`` are replaced by
factories (keeping their names, so test ids and ``Elbo is TraceGraph_ELBO`` branches hold) that
build the target class from Trace_ELBO's arguments (``num_particles``, ``vectorize_particles``,
``max_plate_nesting``; the rest ignored). Tests parametrized by another Pyro objective
(TraceEnum_ELBO, TraceTMC_ELBO, the Jit variants, RenyiELBO, ...) are deselected; a test that
never builds the target is recorded with ``"retargeted": false`` and left out of the tally.

The k=1 columns treat a request for ``N > 1`` particles as Pyro does: the mean of ``N``
independent one-particle estimates, vectorized in an outermost plate (``vectorize_particles``)
or looped. ELBO-valued classes (score function, HVI) take ``num_particles=N`` themselves; the
k>1 columns (a different objective) keep their own ``k``.

Output: one JSON line per test (nodeid, target, outcome, retargeted, error type, message, the
file that raised it and any chained cause) and a tally on stdout. ``--summarize DIR`` classifies
every ``DIR/*.jsonl`` (:func:`classify`) into one table per test file; with ``--write-docs
docs/infer/conformance.rst`` it rewrites that page's tables ("Pyro's suites, retargeted").
"""
import argparse
import json
import os
import signal
import sys
import tempfile
from pathlib import Path

#: the [tool:pytest] filterwarnings of Pyro's setup.cfg (1.9.1): Pyro's suites expect warnings to
#: be errors (e.g. "Found vars in model but not guide" is caught as an error)
PYRO_PYTEST_INI = """[pytest]
filterwarnings = error
    ignore:numpy.ufunc size changed:RuntimeWarning
    ignore:numpy.dtype size changed:RuntimeWarning
    ignore:Mixed memory format inputs detected:UserWarning
    ignore:Setting attributes on ParameterDict:UserWarning
    ignore:Creating a tensor from a list of numpy.ndarrays is extremely slow
    ignore::DeprecationWarning
    ignore:CUDA initialization:UserWarning
    ignore:__floordiv__ is deprecated:UserWarning
    ignore:floor_divide is deprecated:UserWarning
    ignore:torch.tensor results are registered as constants in the trace
    once::DeprecationWarning
"""
FILES = ("test_valid_models.py", "test_gradient.py", "test_elbo_mapdata.py", "test_inference.py")
RETARGETED = ("Trace_ELBO", "TraceGraph_ELBO")
#: Pyro objectives whose parametrized tests are deselected (not retargeted)
OTHER_OBJECTIVES = ("Enum", "TMC", "Jit", "Renyi", "Energy", "MMD", "TailAdaptive", "MeanField",
                    "WakeSleep")


def _targets():
    from pyro_deepgen import infer as inf

    def k1(**kw):
        return lambda n: (inf.TraceIWAE_ELBO(num_particles=1, **kw), n)

    return {
        "pyro": None,  # the control: Pyro's own class, through the same factory
        "iwae1": k1(),
        "stl1": k1(estimator="stl"),
        "dreg1": k1(estimator="dreg"),
        "iwae5": lambda n: (inf.TraceIWAE_ELBO(num_particles=5), 1),
        "dreg5": lambda n: (inf.TraceIWAE_ELBO(num_particles=5, estimator="dreg"), 1),
        "vimco4": lambda n: (inf.TraceVIMCO_ELBO(num_particles=4), 1),
        "sf": lambda n: (inf.TraceScoreFunction_ELBO(num_particles=n, control_variate=None), 1),
        "sf_loo": lambda n: (inf.TraceScoreFunction_ELBO(num_particles=max(n, 2)), 1),
        "hvi0": lambda n: (inf.TraceHVI_ELBO(num_steps=0, num_particles=n), 1),
        "hvi2": lambda n: (inf.TraceHVI_ELBO(num_steps=2, num_particles=n), 1),
        "rws": lambda n: (inf.ReweightedWakeSleep(num_particles=5), 1),
        "ws": lambda n: (inf.WakeSleep(), 1),
        "diffusion": lambda n: (inf.DiffusionELBO(), 1),
    }


class Repeated:
    """``N`` independent runs of a one-particle estimator, averaged (Pyro's particle rule):
    vectorized in an outermost plate of size ``N`` scaled by ``1/N``, or looped."""

    def __init__(self, elbo, n, vectorize, max_plate_nesting):
        self.elbo, self.n, self.vectorize = elbo, n, vectorize
        self.max_plate_nesting = max_plate_nesting

    def _wrap(self, fn, dim):
        import pyro
        from pyro import poutine

        def wrapped(*args, **kwargs):
            with poutine.scale(scale=1.0 / self.n), pyro.plate("_particles", self.n, dim=dim):
                return fn(*args, **kwargs)
        return wrapped

    def _call(self, method, model, guide, *args, **kwargs):
        from pyro_deepgen.infer.particles import guess_max_plate_nesting

        if self.vectorize:
            if self.max_plate_nesting == float("inf"):
                self.max_plate_nesting = guess_max_plate_nesting(model, guide, args, kwargs)
            dim = -int(self.max_plate_nesting) - 1
            self.elbo.max_plate_nesting = self.max_plate_nesting + 1
            return getattr(self.elbo, method)(self._wrap(model, dim), self._wrap(guide, dim),
                                              *args, **kwargs)
        if method == "differentiable_loss":
            return sum(self.elbo.differentiable_loss(model, guide, *args, **kwargs)
                       for _ in range(self.n)) / self.n
        import torch
        loss = self._call("differentiable_loss", model, guide, *args, **kwargs)
        if method == "loss_and_grads" and torch.is_tensor(loss) and loss.requires_grad:
            loss.backward()
        return float(loss)

    def loss(self, model, guide, *args, **kwargs):
        import torch
        with torch.no_grad():
            return float(self._call("differentiable_loss", model, guide, *args, **kwargs))

    def loss_and_grads(self, model, guide, *args, **kwargs):
        return self._call("loss_and_grads", model, guide, *args, **kwargs)

    def differentiable_loss(self, model, guide, *args, **kwargs):
        return self._call("differentiable_loss", model, guide, *args, **kwargs)

    def __call__(self, model, guide, *args, **kwargs):
        return self.differentiable_loss(model, guide, *args, **kwargs)


class Retarget:
    """The pytest plugin: patch ``pyro.infer``, deselect, time-limit and record each test."""

    def __init__(self, target, out, timeout):
        self.target, self.out, self.timeout = target, out, timeout
        self.built = 0
        self.raised_in = self.cause = None
        self.records = []

    def factory(self, name):
        plugin, make = self, _targets()[self.target]

        def build(cls, *args, num_particles=1, vectorize_particles=False,
                  max_plate_nesting=float("inf"), **ignored):
            plugin.built += 1
            if make is None:
                from pyro.infer import trace_elbo, tracegraph_elbo
                own = trace_elbo.Trace_ELBO if name == "Trace_ELBO" else tracegraph_elbo.TraceGraph_ELBO
                return own(*args, num_particles=num_particles, max_plate_nesting=max_plate_nesting,
                           vectorize_particles=vectorize_particles, **ignored)
            elbo, n = make(num_particles)
            if max_plate_nesting != float("inf"):
                elbo.max_plate_nesting = max_plate_nesting
                if hasattr(elbo, "_given_max_plate_nesting"):
                    elbo._given_max_plate_nesting = max_plate_nesting
            if n > 1:
                return Repeated(elbo, n, vectorize_particles, max_plate_nesting)
            return elbo

        return type(name, (), {"__new__": build})

    def pytest_configure(self, config):
        import pyro.infer

        import pyro_deepgen.infer  # noqa: F401 (bound to Pyro's classes before the patch)
        for name in RETARGETED:
            setattr(pyro.infer, name, self.factory(name))

    def pytest_collection_modifyitems(self, config, items):
        keep, drop = [], []
        for item in items:
            params = getattr(getattr(item, "callspec", None), "params", {})
            names = [getattr(v, "__name__", "") for v in params.values()]
            other = any(n not in RETARGETED and n != "DiffTrace_ELBO"
                        and any(o in n for o in OTHER_OBJECTIVES + ("ELBO",)) for n in names)
            (drop if other else keep).append(item)
        items[:] = keep
        config.hook.pytest_deselected(items=drop)

    def pytest_runtest_call(self, item):
        self.built = 0
        self.raised_in = self.cause = None

        def alarm(signum, frame):
            raise TimeoutError(f"over the {self.timeout} s limit of pyro_suites.py")

        signal.signal(signal.SIGALRM, alarm)
        signal.alarm(self.timeout)

    def pytest_runtest_teardown(self, item):
        signal.alarm(0)

    def pytest_runtest_makereport(self, item, call):
        # where the exception was raised (innermost frame): a deliberate refusal is raised in
        # pyro_deepgen's own code. Returns None, so pytest still builds the report.
        if call.excinfo is not None and call.when in ("setup", "call"):
            tb = call.excinfo.traceback
            self.raised_in = str(tb[-1].path) if len(tb) else None
            # an exception inside ``pytest.warns``/``pytest.raises`` is chained to pytest's own
            # failure ("DID NOT WARN"): keep the first line of the original and where it came from
            cause = call.excinfo.value.__cause__ or call.excinfo.value.__context__
            self.cause = None
            if cause is not None:
                frame = cause.__traceback__
                while frame is not None and frame.tb_next is not None:
                    frame = frame.tb_next
                self.cause = {"error": type(cause).__name__,
                              "message": (str(cause).splitlines() or [""])[0][:300],
                              "raised_in": frame.tb_frame.f_code.co_filename if frame else None}

    def pytest_runtest_logreport(self, report):
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            error = message = None
            if report.failed:
                crash = getattr(report.longrepr, "reprcrash", None)
                text = crash.message if crash else str(report.longrepr)
                error, message = _error_and_message(text)
            rec = {"nodeid": report.nodeid, "target": self.target, "outcome": report.outcome,
                   "retargeted": self.built > 0, "error": error, "message": message,
                   "raised_in": self.raised_in if report.failed else None,
                   "cause": self.cause if report.failed else None}
            self.records.append(rec)
            if self.out:
                with open(self.out, "a") as f:
                    f.write(json.dumps(rec) + "\n")


#: the docs' name of each target
LABELS = {
    "pyro": "``pyro`` (control)", "iwae1": "``TraceIWAE_ELBO(1)``",
    "stl1": "``TraceIWAE_ELBO(1, 'stl')``", "dreg1": "``TraceIWAE_ELBO(1, 'dreg')``",
    "iwae5": "``TraceIWAE_ELBO(5)``", "dreg5": "``TraceIWAE_ELBO(5, 'dreg')``",
    "vimco4": "``TraceVIMCO_ELBO(4)``", "sf": "``TraceScoreFunction_ELBO(N, None)``",
    "sf_loo": "``TraceScoreFunction_ELBO(max(N, 2))`` (leave-one-out)",
    "hvi0": "``TraceHVI_ELBO(num_steps=0)``", "hvi2": "``TraceHVI_ELBO(num_steps=2)``",
    "rws": "``ReweightedWakeSleep(5)``", "ws": "``WakeSleep()``", "diffusion": "``DiffusionELBO()``",
}
#: targets that promise Trace_ELBO's value and gradient (the same objective, one particle)
SAME_OBJECTIVE = ("pyro", "iwae1", "stl1", "dreg1", "hvi0")
#: of those, the ones whose gradient is another unbiased estimator: STL and DReG drop the score
#: term of log q, so a per-seed gradient comparison (Pyro's "At key 'scale': ..." message) differs
OWN_GRADIENT = ("stl1", "dreg1")
#: targets that put their own k > 1 particles in a plate left of the user's plates
OWN_PARTICLES = ("iwae5", "dreg5", "vimco4", "sf_loo", "rws")
COLUMNS = {"passed": "passed", "refusal": "named refusal", "pyro": "Pyro's own class fails too",
           "numeric": "numeric (other objective or estimator)", "particle": "particle dim (k>1)",
           "time": "time limit", "other": "other"}
DOCS_BEGIN = ".. begin pyro-suites tables (written by tests/conformance/pyro_suites.py --summarize)"
DOCS_END = ".. end pyro-suites tables"


def _error_and_message(text):
    """``(exception type, first line of its message)`` of pytest's crash text: ``"Type: message"``,
    or a bare ``assert``'s rewritten expression (no type prefix), which is an AssertionError."""
    error, sep, message = text.partition(":")
    if not sep or not error.replace(".", "").replace("_", "").isalnum():
        error, message = "AssertionError", text
    message = message.strip()
    return error, message.splitlines()[0][:300] if message else ""


def classify(rec, pyro_failed):
    """The column of one recorded test, or None for a skipped or unretargeted one.

    A *named refusal* is a ``ValueError``/``TypeError``/``NotImplementedError`` raised in
    pyro_deepgen's own code (directly, or chained under pytest's "DID NOT WARN"/"DID NOT
    RAISE"). Any other failure of a target that promises ``Trace_ELBO``'s answer is "other", but a
    per-seed gradient mismatch of STL/DReG (:data:`OWN_GRADIENT`), which is "numeric"."""
    if not rec.get("retargeted") or rec["outcome"] not in ("passed", "failed"):
        return None
    if rec["outcome"] == "passed":
        return "passed"
    if rec["nodeid"] in pyro_failed:
        return "pyro"
    error, message = rec.get("error") or "", rec.get("message") or ""
    if " " in error:  # recorded before _error_and_message: the whole crash text went into error
        error, message = _error_and_message(f"{error}:{message}")
    if error.endswith("TimeoutError") and "pyro_suites.py" in message:
        return "time"
    for raised in (rec, rec.get("cause") or {}):
        if ("pyro_deepgen" in (raised.get("raised_in") or "")
                and (raised.get("error") or "").split(".")[-1] in
                ("ValueError", "TypeError", "NotImplementedError")):
            return "refusal"
    if rec["target"] in OWN_GRADIENT and error.endswith("AssertionError") and message.startswith("At key"):
        return "numeric"
    if rec["target"] in SAME_OBJECTIVE:
        return "other"
    if rec["target"] in OWN_PARTICLES and ("shape" in message or "Size(" in message):
        return "particle"
    if error.split(".")[-1] in ("AssertionError", "KeyError"):
        return "numeric"
    return "other"


def summarize(results, write_docs=None):
    """Classify every ``*.jsonl`` under ``results``, print one RST list-table per Pyro test file
    (and the "other" failures to stderr), and optionally write them into ``write_docs`` between
    the lines ``DOCS_BEGIN`` and ``DOCS_END``."""
    records = []
    for path in sorted(Path(results).glob("*.jsonl")):
        records += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    latest = {}  # the last record of each (target, test) counts
    for rec in records:
        latest[rec["target"], rec["nodeid"]] = rec
    pyro_failed = {n for (t, n), r in latest.items() if t == "pyro" and r["outcome"] == "failed"}
    tables = []
    for file in FILES:
        counts = {}
        for (target, nodeid), rec in latest.items():
            column = classify(rec, pyro_failed) if f"/{file}::" in nodeid else None
            if column is None:
                continue
            row = counts.setdefault(target, dict.fromkeys(COLUMNS, 0))
            row[column] += 1
            if column == "other":
                print(f"OTHER {target} {nodeid}: {rec['error']}: {rec['message']}", file=sys.stderr)
        if not counts:
            continue
        lines = [f".. list-table:: ``{file}``", "   :header-rows: 1", "",
                 "   * - target"] + [f"     - {c}" for c in COLUMNS.values()]
        for target in LABELS:
            if target in counts:
                lines += [f"   * - {LABELS[target]}"] + [f"     - {n}" for n in counts[target].values()]
        tables.append("\n".join(lines))
    text = "\n\n".join(tables)
    print(text)
    if write_docs:
        doc = Path(write_docs).read_text()
        head, sep, rest = doc.partition(DOCS_BEGIN + "\n")
        _, sep2, tail = rest.partition(DOCS_END + "\n")
        if not (sep and sep2):
            raise SystemExit(f"--write-docs={write_docs}: the markers {DOCS_BEGIN!r} and "
                             f"{DOCS_END!r} are not both in the file")
        Path(write_docs).write_text(head + sep + "\n" + text + "\n\n" + sep2 + tail)


def run(tests_dir, target, files, out, timeout, extra, nodeids=()):
    import pytest

    tests_dir = Path(tests_dir).resolve()
    if not (tests_dir / "infer").is_dir() or not (tests_dir / "common.py").is_file():
        raise SystemExit(f"tests_dir={tests_dir}: expected Pyro's tests folder (infer/, common.py)")
    root = tests_dir.parent
    out = str(Path(out).resolve()) if out else out  # before the chdir below
    sys.path.insert(0, str(root))  # Pyro's tests import `tests.common`
    os.chdir(root)
    plugin = Retarget(target, out, timeout)
    with tempfile.NamedTemporaryFile("w", suffix=".ini", delete=False) as ini:
        ini.write(PYRO_PYTEST_INI)
    args = ["-q", "-rN", "-p", "no:cacheprovider", "-p", "no:randomly", "-c", ini.name,
            "--rootdir", str(root)]
    if nodeids:  # e.g. the tests that ran past --timeout on a loaded machine, rerun alone
        args += [str(root / n) for n in nodeids] + list(extra)
    else:
        args += [str(tests_dir / "infer" / f) for f in files] + list(extra)
    pytest.main(args, plugins=[plugin])
    tally = {}
    for rec in plugin.records:
        key = rec["outcome"] if rec["retargeted"] else "not retargeted"
        tally[key] = tally.get(key, 0) + 1
    print(json.dumps({"target": target, "files": list(nodeids) or files, **tally}))
    return plugin.records


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tests_dir", nargs="?", help="Pyro's tests folder")
    parser.add_argument("--target", default="all", help="a target name or 'all'")
    parser.add_argument("--file", action="append", choices=FILES, help="default: all four")
    parser.add_argument("--out", help="append one JSON line per test to this file")
    parser.add_argument("--timeout", type=int, default=60, help="seconds per test")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    parser.add_argument("--nodeids", metavar="FILE",
                        help="run only these tests (one pytest node id per line, 'tests/infer/...::name')")
    parser.add_argument("--summarize", metavar="DIR",
                        help="classify the *.jsonl results in DIR into the docs' tables and exit")
    parser.add_argument("--write-docs", metavar="RST", help="with --summarize: the page to update")
    args, extra = parser.parse_known_args(argv)
    if args.list:
        print("\n".join(_targets()))
        return
    if args.summarize:
        summarize(args.summarize, args.write_docs)
        return
    if args.tests_dir is None:
        parser.error("tests_dir is required (the tests folder of a Pyro checkout)")
    names = list(_targets()) if args.target == "all" else [args.target]
    unknown = set(names) - set(_targets())
    if unknown:
        parser.error(f"--target={args.target!r}; use one of {list(_targets())} or 'all'")
    extra = [e for e in extra if e != "--"]
    nodeids = []
    if args.nodeids:
        nodeids = [line.strip() for line in Path(args.nodeids).read_text().splitlines() if line.strip()]
        if len(names) != 1 or not nodeids:
            parser.error("--nodeids needs one --target and a file with at least one node id")
    if len(names) == 1:
        run(args.tests_dir, names[0], args.file or list(FILES), args.out, args.timeout, extra, nodeids)
        return
    import subprocess  # one process per target: the patch happens before the test imports

    for name in names:
        cmd = [sys.executable, __file__, args.tests_dir, "--target", name,
               "--timeout", str(args.timeout)]
        cmd += [f"--file={f}" for f in args.file or FILES]
        cmd += ["--out", args.out] if args.out else []
        subprocess.run(cmd + extra, check=False)


if __name__ == "__main__":
    main()

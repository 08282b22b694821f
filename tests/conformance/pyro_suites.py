"""Rerun Pyro's own inference test suites with every ELBO class of :mod:`pyro_deepgen.infer`.

Not collected by pytest (a script, not a ``test_*`` module). It never downloads anything: give
it the ``tests`` folder of a Pyro checkout of the installed version (e.g. ``git show
1.9.1:tests/...`` from a clone), with ``tests/common.py``, ``tests/conftest.py`` and
``tests/infer/``::

    python tests/conformance/pyro_suites.py /path/to/pyro/tests --target iwae1 \\
        --file test_valid_models.py --out /tmp/iwae1.jsonl [-- extra pytest args, e.g. -k plate]

``--target all`` loops over every target; ``--list`` prints them. Each test is run under a
per-test time limit (``--timeout``, SIGALRM). The retargeting: before Pyro's test modules are
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

Output: one JSON line per test (nodeid, target, outcome, retargeted, error type, message) and a
tally on stdout. The docs page ``docs/infer/conformance.rst`` ("Pyro's suites, retargeted")
records the classified result.
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

        def alarm(signum, frame):
            raise TimeoutError(f"over the {self.timeout} s limit of pyro_suites.py")

        signal.signal(signal.SIGALRM, alarm)
        signal.alarm(self.timeout)

    def pytest_runtest_teardown(self, item):
        signal.alarm(0)

    def pytest_runtest_logreport(self, report):
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            error = message = None
            if report.failed:
                crash = getattr(report.longrepr, "reprcrash", None)
                text = crash.message if crash else str(report.longrepr)
                error, _, message = text.partition(":")
                message = message.strip().splitlines()[0][:300] if message.strip() else ""
            rec = {"nodeid": report.nodeid, "target": self.target, "outcome": report.outcome,
                   "retargeted": self.built > 0, "error": error, "message": message}
            self.records.append(rec)
            if self.out:
                with open(self.out, "a") as f:
                    f.write(json.dumps(rec) + "\n")


def run(tests_dir, target, files, out, timeout, extra):
    import pytest

    tests_dir = Path(tests_dir).resolve()
    if not (tests_dir / "infer").is_dir() or not (tests_dir / "common.py").is_file():
        raise SystemExit(f"tests_dir={tests_dir}: expected Pyro's tests folder (infer/, common.py)")
    root = tests_dir.parent
    sys.path.insert(0, str(root))  # Pyro's tests import `tests.common`
    os.chdir(root)
    plugin = Retarget(target, out, timeout)
    with tempfile.NamedTemporaryFile("w", suffix=".ini", delete=False) as ini:
        ini.write(PYRO_PYTEST_INI)
    args = ["-q", "-rN", "-p", "no:cacheprovider", "-p", "no:randomly", "-c", ini.name,
            "--rootdir", str(root)]
    args += [str(tests_dir / "infer" / f) for f in files] + list(extra)
    pytest.main(args, plugins=[plugin])
    tally = {}
    for rec in plugin.records:
        key = rec["outcome"] if rec["retargeted"] else "not retargeted"
        tally[key] = tally.get(key, 0) + 1
    print(json.dumps({"target": target, "files": files, **tally}))
    return plugin.records


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tests_dir", nargs="?", help="Pyro's tests folder")
    parser.add_argument("--target", default="all", help="a target name or 'all'")
    parser.add_argument("--file", action="append", choices=FILES, help="default: all four")
    parser.add_argument("--out", help="append one JSON line per test to this file")
    parser.add_argument("--timeout", type=int, default=60, help="seconds per test")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    args, extra = parser.parse_known_args(argv)
    if args.list:
        print("\n".join(_targets()))
        return
    if args.tests_dir is None:
        parser.error("tests_dir is required (the tests folder of a Pyro checkout)")
    names = list(_targets()) if args.target == "all" else [args.target]
    unknown = set(names) - set(_targets())
    if unknown:
        parser.error(f"--target={args.target!r}; use one of {list(_targets())} or 'all'")
    extra = [e for e in extra if e != "--"]
    if len(names) == 1:
        run(args.tests_dir, names[0], args.file or list(FILES), args.out, args.timeout, extra)
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

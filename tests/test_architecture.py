"""The import rules of ``docs/architecture.rst``, read from the code.

Every ``import`` / ``from ... import`` statement of the package (module level or inside a
function, relative imports resolved) is an edge from the importing layer to the imported one.
The deprecated aliases of :mod:`pyro_deepgen._compat` resolve their targets by name and add no
edge: they are listed in ``DEPRECATED_ALIASES`` and removed in the next release.
"""
import ast
from pathlib import Path
from typing import Dict, Set, Tuple

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pyro_deepgen"

#: layer -> the package layers it may import (besides itself). A layer is a subpackage or a
#: top-level module of ``pyro_deepgen``. Keep this table and docs/architecture.rst in step.
ALLOWED: Dict[str, Set[str]] = {
    "_compat": set(),
    "_arviz": set(),
    "_checks": set(),
    "plates": set(),
    "nn": set(),
    "data": set(),
    "distributions": {"nn", "plates"},
    "infer": {"nn", "plates", "distributions", "distributed"},
    "guides": {"nn", "plates", "distributions", "models"},
    "energy": {"infer", "nn", "plates", "distributions", "train"},
    "models": {"nn", "plates", "distributions", "infer", "energy", "data"},
    "distributed": set(),
    "train": {"data", "distributed"},
    "evaluate": {"infer", "plates", "data"},
    "diagnostics": {"infer", "evaluate", "plates", "_arviz"},
    "plotting": set(),
    "experiments": {
        "nn", "data", "distributions", "infer", "guides", "energy", "models",
        "train", "evaluate", "diagnostics", "plotting", "plates", "distributed",
    },
    "cli": {"experiments", "data"},
    "flows2d": set(),  # deprecated alias module of experiments.flows2d (removed in 0.3)
    "__main__": {"cli"},
}
#: every layer may import the deprecation helper, the argument checks and the package root
#: (``__version__``)
ALWAYS = {"_compat", "_checks", "__init__"}


def _module_name(path: Path, package: Path) -> str:
    rel = path.relative_to(package.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, package_root: Path) -> Set[str]:
    """Absolute names of the ``pyro_deepgen`` modules that ``path`` imports."""
    tree = ast.parse(path.read_text(), str(path))
    module = _module_name(path, package_root)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # ``from . import x`` / ``from .pkg import mod``: the names may be modules too
            found.update(f"{target}.{a.name}" for a in node.names)
    return {name for name in found if name.split(".")[0] == "pyro_deepgen"}


def _layer(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _edges(package: Path = PACKAGE) -> Set[Tuple[str, str, str]]:
    """``(importing module, imported module, its layer)`` for every import across layers."""
    edges = set()
    for path in package.rglob("*.py"):
        src = _module_name(path, package)
        for target in _imports(path, package):
            layer = _layer(target)
            if not (package / layer).exists() and not (package / f"{layer}.py").exists():
                continue  # ``from pyro_deepgen import x`` of a non-module name
            if layer != _layer(src):
                edges.add((src, target, layer))
    return edges


def test_every_layer_is_listed():
    layers = {p.stem for p in PACKAGE.glob("*.py")} | {
        p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()
    }
    assert layers - {"__init__"} <= set(ALLOWED), sorted(layers - set(ALLOWED) - {"__init__"})


def test_imports_follow_the_layer_table():
    bad = sorted(
        f"{src} imports {target}"
        for src, target, layer in _edges()
        if layer not in ALLOWED[_layer(src)] | ALWAYS
    )
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("rule, src_layer, forbidden", [
    ("infer/ imports no model", "infer", {"models", "energy", "guides"}),
    ("models do not import train", "models", {"train", "experiments", "cli"}),
    ("energy models do not import train", "energy", {"experiments", "cli"}),
])
def test_named_rules(rule, src_layer, forbidden):
    bad = sorted(f"{s} imports {t}" for s, t, layer in _edges()
                 if _layer(s) == src_layer and layer in forbidden)
    assert not bad, rule + ":\n" + "\n".join(bad)


def test_only_pretraining_imports_train_in_energy():
    bad = sorted(s for s, t, layer in _edges()
                 if _layer(s) == "energy" and layer == "train" and s != "pyro_deepgen.energy.pretrain")
    assert not bad, bad


def test_nothing_outside_cli_imports_cli():
    bad = sorted(f"{s} imports {t}" for s, t, layer in _edges()
                 if layer == "cli" and _layer(s) not in ("cli", "__main__"))
    assert not bad, "\n".join(bad)
    repo = PACKAGE.parent
    for folder in ("benchmarks", "examples"):
        for path in (repo / folder).glob("*.py"):
            assert "pyro_deepgen.cli" not in path.read_text(), f"{path} uses CLI internals"


def test_layers_have_no_import_cycle():
    graph: Dict[str, Set[str]] = {}
    for src, _, layer in _edges():
        graph.setdefault(_layer(src), set()).add(layer)
    graph = {k: v - ALWAYS for k, v in graph.items()}

    def visit(node, stack):
        if node in stack:
            return stack[stack.index(node):] + [node]
        for nxt in sorted(graph.get(node, ())):
            cycle = visit(nxt, stack + [node])
            if cycle:
                return cycle
        return None

    for node in sorted(graph):
        cycle = visit(node, [])
        assert cycle is None, " -> ".join(cycle)


def test_the_rules_catch_a_violation(tmp_path):
    """The checker is not vacuous: an ``infer`` module importing a model is reported."""
    fake = tmp_path / "pyro_deepgen"
    (fake / "infer").mkdir(parents=True)
    (fake / "models").mkdir()
    for folder in (fake, fake / "infer", fake / "models"):
        (folder / "__init__.py").write_text("")
    (fake / "infer" / "bad.py").write_text("from ..models import vae\n")
    edges = _edges(fake)
    assert ("pyro_deepgen.infer.bad", "pyro_deepgen.models.vae", "models") in edges

"""Resolve references to this package's objects by the path a user imports them from.

The API pages document each object once, where it is defined
(``pyro_deepgen.distributions.transforms.permutation.Permutation``), while the text refers to it
by its public path (``pyro_deepgen.distributions.transforms.Permutation``) or, inside a module, by
the short name that module imports (``Permutation``). For a Python reference that Sphinx could not
resolve, this extension imports the name (relative to the referring module and class, as Sphinx
looks names up), and links it to the page where that same object is documented. A name that does
not import, or whose object is documented nowhere, stays unresolved (``sphinx -n`` reports it):
nothing is ignored. External names are not touched (see ``nitpick_ignore_regex`` in conf.py).
"""
import importlib
import sys

from sphinx.util.nodes import make_refnode

PACKAGE = "pyro_deepgen"


def _lookup(path):
    """The object at dotted ``path`` (a module, or attributes of the longest importable module)."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except Exception:  # not a module: try a shorter prefix
            continue
        try:
            for name in parts[i:]:
                obj = getattr(obj, name)
        except AttributeError:
            return None
        return obj
    return None


def _documented_names(obj):
    """Every dotted name under which ``obj`` could be documented: its defining module and
    qualified name, and every package module that holds it as an attribute."""
    names = []
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if isinstance(module, str) and isinstance(qualname, str):
        names.append(f"{module}.{qualname}")
    if isinstance(obj, type(sys)):
        names.append(obj.__name__)
    if isinstance(module, str) and isinstance(qualname, str) and "." in qualname:
        # a method or nested class: wherever its owner is documented
        owner, _, attr = qualname.rpartition(".")
        owner_obj = _lookup(f"{module}.{owner}")
        if owner_obj is not None and owner_obj is not obj:
            names.extend(f"{name}.{attr}" for name in _documented_names(owner_obj))
    for modname, mod in list(sys.modules.items()):
        if modname == PACKAGE or modname.startswith(PACKAGE + "."):
            for attr, value in list(vars(mod).items()):
                if value is obj:
                    names.append(f"{modname}.{attr}")
    return names


def _candidates(node):
    target = node["reftarget"].lstrip(".~")
    modname, clsname = node.get("py:module"), node.get("py:class")
    found = []
    if modname and clsname:
        found.append(f"{modname}.{clsname}.{target}")
    if modname:
        found.append(f"{modname}.{target}")
    found.append(target)
    return [c for c in found if c == PACKAGE or c.startswith(PACKAGE + ".")]


def resolve_reexport(app, env, node, contnode):
    if node.get("refdomain") != "py":
        return None
    domain = env.get_domain("py")
    for candidate in _candidates(node):
        obj = _lookup(candidate)
        if obj is None:
            continue
        for name in _documented_names(obj):
            if name in domain.objects:
                entry = domain.objects[name]
                return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, name)
            if name in domain.modules:
                entry = domain.modules[name]
                return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, name)
    return None


def setup(app):
    app.connect("missing-reference", resolve_reexport)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

import os
import socket
import sys

sys.path.insert(0, os.path.abspath(".."))
sys.path.insert(0, os.path.abspath("_ext"))  # local extensions: reexports, cli_reference

project = "pyro_deepgen"
author = "pyro_deepgen developers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.mathjax", "sphinx.ext.napoleon", "sphinx.ext.viewcode",
              "sphinx.ext.intersphinx", "sphinx_gallery.gen_gallery", "matplotlib.sphinxext.plot_directive",
              "reexports", "cli_reference"]
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_mock_imports = []
html_theme = "alabaster"
exclude_patterns = ["_build", "autoencoders_sparse_coding.rst",  # included by autoencoders.rst
                    "tutorials/*.ipynb", "tutorials/*.py", "tutorials/*.zip", "tutorials/*.json"]
html_static_path = ["_static"]

# MathJax 3.2.2 is bundled in _static/mathjax (the combined tex-chtml.js, its fonts and its
# Apache-2.0 LICENSE), so that the math renders offline and no page loads anything from a CDN.
mathjax_path = "mathjax/tex-chtml.js"

# The tutorial gallery: the scripts in examples/tutorials are executed at every build (a
# tutorial that raises fails the build) and rendered, with their printed output and figures,
# into docs/tutorials/ (generated; not in git). Each runs in under a minute on 2 CPU cores.
sphinx_gallery_conf = {
    "examples_dirs": os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "tutorials"),
    "gallery_dirs": "tutorials",
    "filename_pattern": r"/t\d\d_",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "show_memory": False,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib", "seaborn", "gallery_setup.reset_torch"),
    "capture_repr": (),
    "plot_gallery": "True",
    "abort_on_example_error": False,
    "only_warn_on_example_error": False,
}
suppress_warnings = ["ref.ref"]

# Every reference must resolve (``sphinx -n``; tests/test_docs.py builds with -W). Names of the
# package resolve within these pages. External names (torch, Pyro, arviz, ...) resolve through
# intersphinx when the build can reach the projects' inventories; offline (or with
# PYRO_DEEPGEN_DOCS_OFFLINE=1) they are ignored by the list below, and nothing else is.
nitpicky = True
EXTERNAL = ("torch", "pyro", "numpy", "np", "scipy", "sklearn", "arviz", "xarray", "pandas", "matplotlib",
            "tqdm", "pathlib", "typing", "collections", "argparse", "ctypes", "os", "abc", "enum",
            "dataclasses", "contextlib", "json", "zipfile", "signal", "threading", "numbers", "types")
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "torch": ("https://docs.pytorch.org/docs/stable", None),
    "pyro": ("https://docs.pyro.ai/en/stable", None),
    "numpy": ("https://numpy.org/doc/stable", None),
    "arviz": ("https://python.arviz.org/en/stable", None),
}
intersphinx_timeout = 5


def _online() -> bool:
    if os.environ.get("PYRO_DEEPGEN_DOCS_OFFLINE") == "1":
        return False
    try:
        socket.create_connection(("docs.pytorch.org", 443), timeout=2).close()
        return True
    except OSError:
        return False


ONLINE = _online()
if not ONLINE:
    intersphinx_mapping = {}
    # the external packages (the pyro_deepgen package is not among them: pyro_deepgen does not
    # match "pyro" followed by a dot or the end), Python's builtin names in type hints, and
    # names that documentation outside these pages defines
    nitpick_ignore_regex = [
        (r"py:.*", r"(%s)(\..*)?" % "|".join(EXTERNAL)),
        (r"py:.*", r"(Tensor|Module|Parameter|Path|Callable|Optional|Union|Sequence|Mapping|Iterable|Iterator|"
                   r"Any|Dict|List|Tuple|Set|Type|NamedTuple|Distribution|TorchDistribution|Transform|"
                   r"TransformModule|PyroModule|ELBO|Trace|MCMC|MCMCKernel|DataTree|InferenceData|DataFrame|"
                   r"ndarray|Generator|device|dtype|Size|PathLike|TextIO)"),
    ]
# (and the short names in docstrings that Pyro's classes pass on to ours: ``expand``'s
# ExpandedDistribution, ``MCMCKernel.logging``'s "string")
nitpick_ignore = [("py:class", name) for name in (
    "int", "float", "bool", "str", "bytes", "dict", "list", "tuple", "set", "object", "callable", "None",
    "optional", "function", "iterable", "sequence", "type", "string", "ExpandedDistribution")]

# The plot directive (MADE connectivity in autoregressive.rst): PNG only, no source links.
plot_formats = [("png", 100)]
plot_html_show_source_link = False
plot_html_show_formats = False

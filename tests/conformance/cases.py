"""The conformance table as data: every model shape of :mod:`tests.conformance.models` times
every ELBO class of :mod:`pyro_deepgen.infer`, each cell with ONE expected outcome.

The docs' support matrix (``docs/infer/conformance.rst``) is generated from :data:`CELLS` by
``python -m tests.conformance.matrix --write`` and checked against it by
``tests/conformance/test_matrix_docs.py``.
"""
from typing import Callable, Dict, NamedTuple, Optional, Tuple

from pyro_deepgen.infer import (
    DiffusionELBO,
    ReweightedWakeSleep,
    TraceHVI_ELBO,
    TraceIWAE_ELBO,
    TraceScoreFunction_ELBO,
    TraceVIMCO_ELBO,
    WakeSleep,
)

from .models import SHAPES


class Column(NamedTuple):
    name: str
    label: str  # as shown in the docs
    make: Callable[[], object]


COLUMNS = [
    Column("iwae", "``TraceIWAE_ELBO(1)``", lambda: TraceIWAE_ELBO(num_particles=1)),
    Column("stl", "``TraceIWAE_ELBO(1, 'stl')``",
           lambda: TraceIWAE_ELBO(num_particles=1, estimator="stl")),
    Column("dreg", "``TraceIWAE_ELBO(1, 'dreg')``",
           lambda: TraceIWAE_ELBO(num_particles=1, estimator="dreg")),
    Column("vimco", "``TraceVIMCO_ELBO(2)``", lambda: TraceVIMCO_ELBO(num_particles=2)),
    Column("score_function", "``TraceScoreFunction_ELBO(1, None)``",
           lambda: TraceScoreFunction_ELBO(num_particles=1, control_variate=None)),
    Column("hvi0", "``TraceHVI_ELBO(num_steps=0)``", lambda: TraceHVI_ELBO(num_steps=0)),
    Column("hvi2", "``TraceHVI_ELBO(num_steps=2)``", lambda: TraceHVI_ELBO(num_steps=2)),
    Column("rws", "``ReweightedWakeSleep(1)``", lambda: ReweightedWakeSleep(num_particles=1)),
    Column("ws", "``WakeSleep()``", lambda: WakeSleep()),
    Column("diffusion", "``DiffusionELBO()``", lambda: DiffusionELBO()),
]
COLUMN = {c.name: c for c in COLUMNS}


class Expect(NamedTuple):
    """One expected outcome.

    kind:

    * ``"equal"``: value and every parameter's gradient equal ``reference``'s
      (``"Trace_ELBO"``, ``"TraceGraph_ELBO"`` or ``"TraceIWAE_ELBO(2)"``) at the same seed, rel. 1e-9 (float64);
    * ``"value"``: the value equals ``Trace_ELBO``'s at the same seed and the model
      parameters' (``theta*``) gradients equal it; the guide's gradient is the estimator's own
      (path derivative, score function or wake-sleep update) and must be finite;
    * ``"unbiased"``: the mean gradient over ``samples`` replicates is within ``4``
      standard errors of the exact one (closed form or enumeration, see the shape);
    * ``"bound"``: ``DiffusionELBO``'s value is unbiased for the closed-form bound
      (``samples`` points, 4 standard errors);
    * ``"runs"``: finite value, and a finite gradient for every parameter (no reference:
      the bound differs from the ELBO);
    * ``"refuse"``: raises ``error`` with the plain fragment ``match`` in the message (and
      not ``forbid``);
    * ``"warn"``: emits ``error`` (a warning class) with ``match`` in the message;
    * ``"n/a"``: not applicable, ``why``.

    ``pyro``: for ``"refuse"``/``"warn"``, Pyro's ``Trace_ELBO`` gives the same outcome (the
    test checks it). ``pending``: the reason the cell is ``xfail(strict=True)``.
    """

    kind: str
    reference: str = "Trace_ELBO"
    error: Optional[type] = None
    match: str = ""
    samples: int = 0
    why: str = ""
    forbid: str = ""  # "refuse": a fragment the message must not contain
    pyro: bool = False
    pending: str = ""


EQUAL = Expect("equal")
VALUE = Expect("value")
RUNS = Expect("runs")
IWAE2 = Expect("equal", reference="TraceIWAE_ELBO(2)")
GRAPH = Expect("equal", reference="TraceGraph_ELBO")

NOT_DIFFUSION = Expect("refuse", error=TypeError, match="DiffusionELBO needs model=diffusion.model")
NEEDS_RSAMPLE = Expect("refuse", error=ValueError, match="guide site 'z' (NonreparameterizedNormal) has no rsample")
HVI_NOT_RSAMPLE = Expect("refuse", error=ValueError, match="latent site 'z' is discrete or not reparameterizable")
HVI_NEEDS_CONTINUOUS = Expect("refuse", error=ValueError,
                              match="latent site 'c' is discrete or not reparameterizable")
WARN_GUIDE = Expect("warn", error=UserWarning, match="Found vars in model but not guide", pyro=True)
WARN_MODEL = Expect("warn", error=UserWarning, match="Found non-auxiliary vars in guide but not model",
                    pyro=True)
ENUM_WARNING = "If you want to enumerate sites, you need to use TraceEnum_ELBO instead"
SHAPE_ERROR = Expect("refuse", error=ValueError,
                     match="Model and guide shapes disagree at site 'z'", pyro=True)

#: default outcome of each column on a shape every estimator supports
DEFAULT: Dict[str, Expect] = {
    "iwae": EQUAL,
    "stl": VALUE,
    "dreg": VALUE,
    "vimco": IWAE2,
    "score_function": VALUE,
    "hvi0": EQUAL,
    "hvi2": RUNS,
    "rws": VALUE,
    "ws": VALUE,
    "diffusion": NOT_DIFFUSION,
}

PARTICLES = ("iwae", "stl", "dreg", "vimco", "score_function", "hvi0", "hvi2", "rws", "ws")
NEEDS_DATA_PLATE = Expect("refuse", error=ValueError, match="no vectorized plate named 'data'")
#: one plate rule: a program without a vectorized data plate is one data point for every
#: particle estimator (the DEFAULT outcome); (reweighted) wake-sleep refuses it by name
ONE_DATA_POINT = {
    "rws": NEEDS_DATA_PLATE,
    "ws": NEEDS_DATA_PLATE,
}


def site_outside_data(site: str) -> Dict[str, Expect]:
    """(Reweighted) wake-sleep refuses a sample site outside the data plate, by name."""
    refuse = Expect("refuse", error=ValueError, match=f"sample site '{site}' is outside pyro.plate('data')")
    return {"rws": refuse, "ws": refuse}


#: per-shape departures from DEFAULT
OVERRIDES: Dict[str, Dict[str, Expect]] = {
    "no_plate": ONE_DATA_POINT,
    "sequential_plate": ONE_DATA_POINT,
    # per-data-point weights need the data plate by name (plate_name=... names it)
    "other_plate_name": {c: NEEDS_DATA_PLATE for c in ("iwae", "stl", "dreg", "vimco", "rws", "ws")},
    "dynamic_sites": ONE_DATA_POINT,
    "subsampled": {"ws": Expect("refuse", error=ValueError, match="sleep_args")},
    "global_latent": site_outside_data("g"),
    "plate_beside_data": site_outside_data("u"),
    "poutine_scale": {"vimco": Expect("refuse", error=ValueError, match="site 'z' is scaled")},
    "enumerated": {
        **{c: Expect("warn", error=UserWarning, match="Found vars in model but not guide: {'c'}",
                     pyro=True) for c in PARTICLES},
        "hvi2": Expect("refuse", error=ValueError, match="model latent site 'c' has no site in the guide"),
    },
    # IWAE refuses a guide site marked for enumeration by name; the others sample it after
    # Pyro's check_if_enumerated warning (as Trace_ELBO does)
    "guide_enumerated": {
        **{c: Expect("warn", error=UserWarning, match=ENUM_WARNING, pyro=True) for c in PARTICLES},
        **{c: Expect("refuse", error=ValueError, match="guide site 'c' is enumerated")
           for c in ("iwae", "stl", "dreg")},
        "hvi2": HVI_NEEDS_CONTINUOUS,
    },
    # the particle plate of k >= 2 goes at dim -2, where the param has a batch dim of size 4
    "param_batch_dim": {"vimco": Expect("refuse", error=ValueError,
                                        match="pyro.param('phi_extra', ..., event_dim=0) has shape")},
    "nonreparameterized": {
        "iwae": Expect("unbiased", samples=20000),
        "stl": NEEDS_RSAMPLE,
        "dreg": NEEDS_RSAMPLE,
        "vimco": Expect("unbiased", samples=20000),
        "score_function": Expect("unbiased", samples=20000),
        "hvi2": HVI_NOT_RSAMPLE,
    },
    "discrete": {
        "iwae": Expect("unbiased", samples=20000),
        "stl": Expect("refuse", error=ValueError, match="guide site 'c' (Bernoulli) has no rsample"),
        "dreg": Expect("refuse", error=ValueError, match="guide site 'c' (Bernoulli) has no rsample"),
        "vimco": Expect("unbiased", samples=20000),
        "score_function": Expect("unbiased", samples=20000),
        "hvi2": HVI_NEEDS_CONTINUOUS,
    },
    # Pyro's Trace_ELBO leaves the auxiliary site out of c's score-function cost (biased);
    # TraceGraph_ELBO keeps it, as every estimator here does
    "auxiliary_site": {
        "iwae": GRAPH,
        "score_function": GRAPH,
        "hvi0": GRAPH,
        "stl": Expect("refuse", error=ValueError, match="guide site 'c' (Bernoulli) has no rsample"),
        "dreg": Expect("refuse", error=ValueError, match="guide site 'c' (Bernoulli) has no rsample"),
        "hvi2": HVI_NEEDS_CONTINUOUS,
        "ws": Expect("refuse", error=ValueError, match="guide site 'a' does not appear in the model"),
    },
    "missing_in_guide": {
        **{c: WARN_GUIDE for c in PARTICLES},
        "hvi2": Expect("refuse", error=ValueError, match="model latent site 'w' has no site in the guide"),
        **site_outside_data("w"),
    },
    "missing_in_model": {**{c: WARN_MODEL for c in PARTICLES}, **site_outside_data("extra")},
    "shape_mismatch": {c: SHAPE_ERROR for c in PARTICLES},
    "plate_mistake": {c: Expect("refuse", error=ValueError,
                                match="inside plate('data') at site z", pyro=True)
                      for c in PARTICLES},
    # k>=2 particles lie in a plate left of the user's plates (as with Pyro's
    # vectorize_particles=True): the user's own shape assertion sees them
    "shape_assertion": {"vimco": Expect("refuse", error=AssertionError, match="z.shape=(2, 3)")},
    # refused by site name, also where the dim has the particle plate's size (VIMCO's 2)
    "extra_batch_dim": {c: Expect("refuse", error=ValueError, match="site 'z' has batch dims outside any plate")
                        for c in PARTICLES},
    "no_latents": {
        "hvi2": Expect("refuse", error=ValueError, match="the model has no latent sample site"),
        # (reweighted) wake-sleep trains q(h|x) on the model's latents: without any, refused by name
        "rws": Expect("refuse", error=ValueError, match="needs at least one latent"),
        "ws": Expect("refuse", error=ValueError, match="needs at least one latent"),
    },
    "no_sample_sites": {c: Expect("refuse", error=ValueError, match="has no sample sites")
                        for c in PARTICLES},
    "diffusion": {
        **{c: Expect("n/a", why="the diffusion row checks DiffusionELBO's own estimate")
           for c in PARTICLES},
        "diffusion": Expect("bound", samples=4000),
    },
}

CELLS: Dict[Tuple[str, str], Expect] = {
    (shape.name, column.name): OVERRIDES.get(shape.name, {}).get(column.name, DEFAULT[column.name])
    for shape in SHAPES
    for column in COLUMNS
}

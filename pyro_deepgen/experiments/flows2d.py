r"""The 2-D benchmark of Rezende & Mohamed (2015): fit a flow :math:`q_K` to each test energy.

For each energy :math:`U` of :mod:`pyro_deepgen.data.toy` (with its box wall, see
:class:`~pyro_deepgen.data.toy.EnergyModel`), a flow density :math:`q_K` with a learned
diagonal Gaussian base (all parameters free, nothing amortized) minimizes

.. math::

    \mathcal F_t(q) = \mathbb E_{q}\big[\log q(z) + \beta_t U(z)\big],
    \qquad \beta_t = \min\Big(1,\ 0.01 + \frac{t}{T_{\mathrm{anneal}}}\Big),

the negative ELBO of the annealed unnormalized model, estimated with ``num_particles``
reparametrized draws per step (one vectorized pass, :class:`~pyro.infer.Trace_ELBO` with
``vectorize_particles=True``). The paper anneals over :math:`T_{\mathrm{anneal}} = 10^4`
steps; shorter runs default to annealing over the first half of the steps. The result is
reported as

.. math::

    \mathrm{KL}(q\,\|\,p) = \mathbb E_q[\log q(z) + U(z)] + \log Z
        = -\mathrm{ELBO} + \log Z \ \ge 0,

with :math:`\log Z` by quadrature on a grid and the expectation over ``num_samples`` fresh
draws (reported with its Monte Carlo standard error).

Both ``benchmarks/flows_2d.py`` and ``pyro-deepgen flows2d`` call :func:`run_benchmark`.

**References**: [1] D. J. Rezende, S. Mohamed, *Variational Inference with Normalizing Flows*,
ICML 2015, arXiv:1505.05770 (section 6.1, figure 3).
"""
import dataclasses
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import pyro
import torch
from pyro.infer import Trace_ELBO
from pyro.optim import ClippedAdam

from ..data.toy import ENERGIES, EnergyModel
from ..distributions.flow_density import FlowDensity
from ..distributions.transforms import FLOWS
from ..plotting import save_flow_densities
from ..train import fit
from .common import (
    RunConfig,
    check_common,
    check_int_tuple,
    check_positive_float,
    check_positive_int,
    prepare_output,
    settings,
    write_report,
)

COMMAND = "flows2d"
PAPER_ANNEAL_STEPS = 10000
#: The baseline every flow is compared with, the learned diagonal Gaussian alone (K = 0).
BASELINE = "gaussian"


def anneal_beta(step: int, anneal_steps: int = PAPER_ANNEAL_STEPS, beta0: float = 0.01) -> float:
    r"""The inverse temperature :math:`\beta_t = \min(1, \beta_0 + t/T)` of [1]."""
    return min(1.0, beta0 + step / anneal_steps)


@dataclass
class FitResult:
    """One fitted flow: the energy, the flow, and its final KL(q||p) estimate (nats)."""

    energy: str
    flow: str
    depth: int
    kl: float
    kl_stderr: float
    neg_elbo: float
    log_z: float
    final_loss: float
    steps: int
    seconds: float
    kl_ratio: Optional[float] = None  # KL / KL of the Gaussian baseline


def fit_flow_to_energy(
    energy: Union[str, EnergyModel],
    flow: str = "planar",
    depth: int = 8,
    steps: int = 2000,
    num_particles: int = 256,
    lr: float = 5e-3,
    anneal_steps: Optional[int] = None,
    hidden_dims: Optional[Sequence[int]] = None,
    device: Union[str, torch.device] = "cpu",
    seed: int = 0,
) -> Tuple[FlowDensity, List[float]]:
    """Fit a flow density to ``exp(-U)`` by minimizing the annealed KL(q||p) (see module doc).

    The fit runs in its own param-store scope, so it neither sees nor leaves parameters in the
    global store. Returns the fitted :class:`FlowDensity` (a learned Gaussian base pushed
    through ``depth`` layers of ``flow``) and the loss (annealed negative ELBO) per step.

    :param energy: a name ``"U1"`` ... ``"U4"`` or an :class:`EnergyModel`.
    :param str flow: a family of :data:`~pyro_deepgen.distributions.transforms.FLOWS`, or
        ``"gaussian"`` for the baseline without flow layers (``depth`` is then ignored).
    :param int depth: number of flow layers K.
    :param int steps: number of optimizer steps (ClippedAdam, gradient entries clipped to [-10, 10]).
    :param int num_particles: draws from q per step, in one vectorized pass.
    :param float lr: learning rate.
    :param anneal_steps: :math:`T_{\\mathrm{anneal}}`; default ``min(10000, steps // 2)``.
    :param hidden_dims: hidden sizes of the coupling/autoregressive networks.
    :param device: where to fit.
    :param int seed: the optimizer steps start from ``pyro.set_rng_seed(seed)`` (the
        initialization of the flow draws from the random state as it is at the call).
    """
    model = energy if isinstance(energy, EnergyModel) else EnergyModel(energy)
    for name, value in (("steps", steps), ("num_particles", num_particles)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if anneal_steps is None:
        anneal_steps = max(1, min(PAPER_ANNEAL_STEPS, steps // 2))
    if anneal_steps < 1:
        raise ValueError(f"anneal_steps must be positive, got {anneal_steps}")
    if flow == BASELINE:
        flow, depth = "planar", 0  # an empty flow: the Gaussian base alone
    density = FlowDensity(2, flow, depth, hidden_dims=hidden_dims, learn_base=True).to(device)

    def guide(beta: float = 1.0) -> None:
        pyro.sample("z", density.distribution())

    with pyro.get_param_store().scope():
        elbo = Trace_ELBO(num_particles=num_particles, vectorize_particles=True,
                          max_plate_nesting=0)
        history = fit(model, guide, None, loss=elbo, module=density, epochs=steps, seed=seed,
                      optimizer=ClippedAdam({"lr": lr, "clip_norm": 10.0}), progress=False,
                      step_kwargs=lambda t: {"beta": anneal_beta(t, anneal_steps)})
    return density, history.loss


@torch.no_grad()
def kl_estimate(
    density: FlowDensity, energy: EnergyModel, log_z: float, num_samples: int = 10000
) -> Tuple[float, float, float]:
    r"""Monte Carlo :math:`\mathrm{KL}(q\,\|\,p) = \mathbb E_q[\log q + U] + \log Z` from
    ``num_samples`` draws: returns ``(kl, standard error, -ELBO)``.

    Runs in a fresh param-store scope: a ``PyroModule`` method run against the global store
    would take parameters of the same name that an earlier density left there (all flow
    densities name their base ``base_loc`` and ``base_scale``).
    """
    with pyro.get_param_store().scope():
        d = density.distribution()
        z = d.sample((num_samples,))
        terms = d.log_prob(z) + energy.energy(z)
    neg_elbo = float(terms.mean())
    stderr = float(terms.std() / math.sqrt(num_samples))
    return neg_elbo + log_z, stderr, neg_elbo


def run_benchmark(
    energies: Iterable[str] = ("U1", "U2", "U3", "U4"),
    flows: Iterable[str] = ("planar", "radial", "nice", "iaf"),
    depths: Iterable[int] = (2, 8, 32),
    steps: int = 2000,
    num_samples: int = 10000,
    num_particles: int = 256,
    lr: float = 5e-3,
    anneal_steps: Optional[int] = None,
    hidden_dims: Optional[Sequence[int]] = None,
    seed: int = 0,
    device: Union[str, torch.device] = "cpu",
    baseline: bool = True,
    progress: bool = True,
) -> Tuple[List[FitResult], Dict[Tuple[str, str, int], torch.Tensor]]:
    """Fit every (energy, flow, depth) and return the results and ``num_samples`` draws from
    each fitted flow (keyed by ``(energy, flow, depth)``, on the CPU, for the figure).

    With ``baseline`` (default) each energy is also fitted by the learned Gaussian alone
    (flow ``"gaussian"``, depth 0), under the same settings, and every result records
    ``kl_ratio``, its KL divided by the baseline's. Every fit starts from
    ``pyro.set_rng_seed(seed)``, so a cell of the table does not depend on which other cells
    were run.
    """
    energies, flows, depths = list(energies), list(flows), [int(k) for k in depths]
    for e in energies:
        if e not in ENERGIES:
            raise ValueError(f"unknown energy {e!r}; use some of {sorted(ENERGIES)}")
    for f in flows:
        if f not in FLOWS:
            raise ValueError(f"unknown flow {f!r}; use some of {tuple(FLOWS)}")
    if not depths or min(depths) < 1:
        raise ValueError(f"depths must be positive integers, got {depths}")
    if num_samples < 2:
        raise ValueError(f"num_samples must be at least 2, got {num_samples}")
    results, draws = [], {}
    jobs = [(e, f, k) for e in energies for f, k in
            ([(BASELINE, 0)] if baseline else []) + [(f, k) for f in flows for k in depths]]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc="flows2d")
    log_z = {e: EnergyModel(e).log_partition() for e in energies}
    baselines: Dict[str, float] = {}
    for e, f, k in jobs:
        pyro.set_rng_seed(seed)
        energy = EnergyModel(e)
        start = time.perf_counter()
        density, losses = fit_flow_to_energy(
            energy, f, k, steps=steps, num_particles=num_particles, lr=lr,
            anneal_steps=anneal_steps, hidden_dims=hidden_dims, device=device, seed=seed,
        )
        seconds = time.perf_counter() - start
        kl, stderr, neg_elbo = kl_estimate(density, energy, log_z[e], num_samples)
        results.append(FitResult(e, f, k, kl, stderr, neg_elbo, log_z[e], losses[-1], steps,
                                 seconds))
        if baseline:
            results[-1].kl_ratio = kl / baselines.setdefault(e, kl)
        with torch.no_grad(), pyro.get_param_store().scope():  # see kl_estimate
            draws[(e, f, k)] = density.sample((num_samples,)).cpu()
        if bar is not None:
            bar.set_postfix_str(f"{e} {f} K={k} KL={kl:.3f}")
            bar.update()
    if bar is not None:
        bar.close()
    return results, draws


def results_table(results: Sequence[FitResult], value: str = "kl") -> str:
    """A Markdown table, one row per flow and depth, one column per energy, of ``value``:
    ``"kl"`` (KL(q||p) in nats ± Monte Carlo standard error) or ``"kl_ratio"`` (KL divided by
    the Gaussian baseline's)."""
    if value not in ("kl", "kl_ratio"):
        raise ValueError(f"value={value!r}; use 'kl' or 'kl_ratio'")
    energies = list(dict.fromkeys(r.energy for r in results))
    rows = list(dict.fromkeys((r.flow, r.depth) for r in results))
    cell = {(r.energy, r.flow, r.depth): r for r in results}
    lines = ["| flow | K | " + " | ".join(energies) + " |",
             "|---|---:|" + "---:|" * len(energies)]
    for f, k in rows:
        values = []
        for e in energies:
            r = cell.get((e, f, k))
            if r is None or (value == "kl_ratio" and r.kl_ratio is None):
                values.append("")
            elif value == "kl":
                values.append(f"{r.kl:.3f} ± {r.kl_stderr:.3f}")
            else:
                values.append(f"{r.kl_ratio:.3f}")
        lines.append(f"| {f} | {k} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def plot_densities(
    draws: Dict[Tuple[str, str, int], torch.Tensor], path: Union[str, Path], lim: float = 4.0,
    bins: int = 100,
) -> None:
    """Figure 3 of [1]: one row per energy; the true density, then a histogram of the draws of
    each fitted flow (one column per flow and depth), all on the window ``[-lim, lim]^2`` (see
    :func:`pyro_deepgen.plotting.save_flow_densities`)."""
    energies = {e: EnergyModel(e).energy for e, _, _ in draws}
    save_flow_densities(draws, path, energies, lim=lim, bins=bins)


def results_as_dicts(results: Sequence[FitResult]) -> List[dict]:
    """The results as plain dictionaries, for ``report.json``."""
    return [asdict(r) for r in results]


def _names(config: Any, name: str, known: Sequence[str], what: str) -> None:
    value = getattr(config, name)
    values = tuple(v.strip() for v in value.split(",") if v.strip()) if isinstance(value, str) else tuple(value)
    if not values:
        raise ValueError(f"{name} (--{name}) must name at least one {what}")
    for v in values:
        if v not in known:
            raise ValueError(f"unknown {what} {v!r} in {name} (--{name}); use some of {', '.join(known)}")
    setattr(config, name, values)


@dataclasses.dataclass
class Flows2DConfig(RunConfig):
    """The settings of :func:`run`, one per option of ``pyro-deepgen flows2d`` (same defaults).

    :param energies: energies among ``U1`` ... ``U4`` (:data:`~pyro_deepgen.data.toy.ENERGIES`).
    :param flows: flow families of :data:`~pyro_deepgen.distributions.transforms.FLOWS`.
    :param depths: flow depths K.
    :param steps: optimizer steps per fit (the paper: 20000 or more).
    :param anneal_steps: steps over which beta rises from 0.01 to 1; default
        ``min(10000, steps // 2)`` (the paper: 10000).
    :param particles: draws from q per step.
    :param lr: learning rate.
    :param samples: draws for the final KL estimate and the figure (at least 2).

    The shared fields (seed, device, out, progress, overwrite) come from
    :class:`~pyro_deepgen.experiments.common.RunConfig`.
    """

    energies: Tuple[str, ...] = ("U1", "U2", "U3", "U4")
    flows: Tuple[str, ...] = ("planar", "radial", "nice", "iaf")
    depths: Tuple[int, ...] = (2, 8, 32)
    steps: int = 300
    anneal_steps: Optional[int] = None
    particles: int = 256
    lr: float = 1e-2
    samples: int = 10000
    out: Union[str, Path] = Path("runs/flows2d")

    def __post_init__(self) -> None:
        _names(self, "energies", tuple(ENERGIES), "energy")
        _names(self, "flows", tuple(FLOWS), "flow")
        check_int_tuple(self, "depths")
        check_positive_int(self, "steps", "particles", "samples",
                           *(["anneal_steps"] if self.anneal_steps is not None else []))
        if self.samples < 2:
            raise ValueError(f"samples (--samples) must be at least 2, got {self.samples}")
        check_positive_float(self, "lr")
        check_common(self)


def run(config: Flows2DConfig) -> Dict[str, Any]:
    """Run the benchmark, print the table of KL(q||p), write ``report.json`` (the settings and
    one record of :class:`FitResult` per fit), ``table.md`` and ``flows2d.png`` to
    ``config.out``, and return the report (the contents of ``report.json``). The output folder
    is checked first (:func:`~pyro_deepgen.experiments.common.prepare_output`)."""
    folder = prepare_output(config.out, COMMAND, overwrite=config.overwrite)
    results, draws = run_benchmark(
        energies=config.energies, flows=config.flows, depths=config.depths, steps=config.steps,
        num_samples=config.samples, num_particles=config.particles, lr=config.lr,
        anneal_steps=config.anneal_steps, seed=config.seed, device=config.device,
        progress=config.progress,
    )
    table = results_table(results)
    print("KL(q||p) = -ELBO + log Z in nats (± Monte Carlo standard error)")
    print(table, end="")
    report = {"settings": settings(config, COMMAND), "results": results_as_dicts(results)}
    with folder.results() as tmp:
        write_report(tmp, report)
        (tmp / "table.md").write_text(table)
        plot_densities(draws, tmp / "flows2d.png")
    print(f"wrote {config.out}/report.json, table.md, flows2d.png")
    return report

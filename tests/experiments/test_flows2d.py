"""The 2-D flow benchmark: annealing schedule, the KL estimate in an exact case, a fit that
recovers a Gaussian target, the tables, and a tiny run of the experiment."""
import json
import math

import pytest
import torch

from pyro_deepgen.data.toy import EnergyModel
from pyro_deepgen.distributions import FlowDensity
from pyro_deepgen.distributions.transforms import FLOWS
from pyro_deepgen.experiments.flows2d import (
    FitResult,
    Flows2DConfig,
    anneal_beta,
    fit_flow_to_energy,
    kl_estimate,
    results_table,
    run,
    run_benchmark,
)


def _gaussian_energy(loc=(0.0, 0.0), scale=1.0) -> EnergyModel:
    loc = torch.tensor(loc)
    return EnergyModel(lambda z: 0.5 * (((z - loc.to(z)) / scale) ** 2).sum(-1), box=None)


def test_anneal_beta_is_the_papers_schedule():
    assert anneal_beta(0) == pytest.approx(0.01)
    assert anneal_beta(4950) == pytest.approx(0.505)
    assert anneal_beta(9900) == 1.0 and anneal_beta(50000) == 1.0
    assert anneal_beta(10, anneal_steps=20) == pytest.approx(0.51)


def test_kl_estimate_is_zero_when_q_is_p():
    """q = N(0, I) (a flow of depth 0 at initialization) and U = |z|^2/2: log q + U + log Z = 0
    for every draw, so the estimate and its standard error vanish (any sample size)."""
    energy = _gaussian_energy()
    log_z = energy.log_partition()
    assert log_z == pytest.approx(math.log(2 * math.pi), abs=1e-8)
    kl, stderr, neg_elbo = kl_estimate(FlowDensity(2, "planar", 0), energy, log_z, 1000)
    assert kl == pytest.approx(0.0, abs=1e-5) and stderr < 1e-5
    assert neg_elbo == pytest.approx(-log_z, abs=1e-5)


def test_fit_recovers_a_gaussian_target():
    """The Gaussian baseline (depth 0) fitted to N((1, -1), 0.5^2 I) for 150 steps of 128 draws
    reaches KL < 0.05 nats (seeded; KL estimated from 4000 draws)."""
    energy = _gaussian_energy((1.0, -1.0), 0.5)
    density, losses = fit_flow_to_energy(energy, "gaussian", steps=150, num_particles=128,
                                         lr=0.05, anneal_steps=50)
    kl, stderr, _ = kl_estimate(density, energy, energy.log_partition(), 4000)
    assert len(losses) == 150
    assert kl < 0.05
    assert torch.allclose(density.base_loc.detach(), torch.tensor([1.0, -1.0]), atol=0.1)


def test_fit_leaves_the_global_param_store_alone():
    import pyro

    pyro.param("other", torch.ones(1))
    fit_flow_to_energy("U1", "planar", 2, steps=2, num_particles=8)
    assert list(pyro.get_param_store().keys()) == ["other"]


def test_fit_bad_input():
    with pytest.raises(ValueError, match="steps"):
        fit_flow_to_energy("U1", "planar", 2, steps=0)
    with pytest.raises(ValueError, match="unknown energy"):
        run_benchmark(energies=["U9"], steps=1)
    with pytest.raises(ValueError, match="unknown flow"):
        run_benchmark(flows=["maf"], steps=1)


def test_results_table_layout():
    rows = [FitResult("U1", "planar", 2, 0.5, 0.01, 0.0, 0.0, 0.0, 1, 0.1, kl_ratio=0.25),
            FitResult("U2", "planar", 2, 1.5, 0.02, 0.0, 0.0, 0.0, 1, 0.1, kl_ratio=0.5)]
    table = results_table(rows)
    assert table.splitlines()[0] == "| flow | K | U1 | U2 |"
    assert table.splitlines()[2] == "| planar | 2 | 0.500 ± 0.010 | 1.500 ± 0.020 |"
    assert "| planar | 2 | 0.250 | 0.500 |" in results_table(rows, value="kl_ratio")


def test_a_cell_does_not_depend_on_the_cells_run_before():
    """Regression: the fitted Gaussian base of an earlier fit must not leak (through Pyro's
    global param store, where PyroModules look up parameters by name) into a later one."""
    import pyro

    settings = dict(steps=10, lr=0.05, num_samples=100, num_particles=8, progress=False)
    alone, _ = run_benchmark(["U2"], ["planar"], [2], **settings)
    pyro.clear_param_store()
    after, _ = run_benchmark(["U1", "U2"], ["planar"], [2], **settings)
    assert [r.kl for r in alone] == [r.kl for r in after if r.energy == "U2"]


def test_run_returns_the_report_it_writes(tmp_path, capsys):
    out = tmp_path / "flows2d"
    config = Flows2DConfig(energies="U1", flows=("radial",), depths=[2], steps=5, particles=8,
                           samples=50, out=out, progress=False)
    report = run(config)
    assert json.loads((out / "report.json").read_text()) == report
    assert [(r["flow"], r["depth"]) for r in report["results"]] == [("gaussian", 0), ("radial", 2)]
    assert report["settings"]["energies"] == ["U1"] and report["settings"]["command"] == "flows2d"
    assert (out / "flows2d.png").stat().st_size > 0 and "| radial | 2 |" in (out / "table.md").read_text()
    assert "KL(q||p)" in capsys.readouterr().out


@pytest.mark.parametrize("kwargs,match", [
    (dict(energies=("U7",)), r"unknown energy 'U7'"),
    (dict(flows=("maf",)), r"unknown flow 'maf' in flows \(--flows\); use some of " + ", ".join(FLOWS)),
    (dict(depths=(0,)), r"depths \(--depths\)"),
    (dict(samples=1), r"samples \(--samples\) must be at least 2"),
    (dict(anneal_steps=0), r"anneal_steps \(--anneal-steps\)"),
])
def test_config_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Flows2DConfig(**kwargs)


def test_the_old_module_path_still_resolves_and_warns():
    import pyro_deepgen.experiments.flows2d as new

    with pytest.warns(DeprecationWarning, match="pyro_deepgen.experiments.flows2d.run_benchmark"):
        from pyro_deepgen.flows2d import run_benchmark
    assert run_benchmark is new.run_benchmark

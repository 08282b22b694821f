"""``experiments.rbm``: ``run(RBMConfig)`` with tiny settings and the checks of the config."""
import json

import pytest
import torch

from pyro_deepgen.experiments.rbm import RBMConfig, run


def test_run_returns_the_report_it_writes(tmp_path, capsys):
    out = tmp_path / "run"
    config = RBMConfig(hidden=6, epochs=1, cd_k=2, ais_betas=50, ais_runs=4, gibbs_steps=2,
                       chains=2, chain_samples=10, out=out, progress=False)
    report = run(config)
    assert json.loads((out / "report.json").read_text()) == report
    assert report["method"] == "CD-2" and report["epochs"] == 1 and len(report["per_epoch"]) == 1
    assert report["settings"]["hidden"] == 6 and report["settings"]["command"] == "rbm"
    assert report["test_log_likelihood"] < 0
    for name in ("samples.png", "weights.png", "chains_summary.csv", "chains_summary.txt",
                 "loss.png", "rbm.pt"):
        assert (out / name).stat().st_size > 0, name
    assert "log Z =" in capsys.readouterr().out
    # the default sampler is parallel tempering; the report gives its mixing numbers
    chains = report["chains"]
    # the chains run vectorized and share one adapted ladder
    assert chains["sampler"] == "pt" and chains["vectorized"] and chains["shared_ladder"]
    assert len(chains["swap_acceptance"]) == 1 and len(chains["swap_acceptance"][0]) == 24
    assert len(chains["betas"][0]) == 25 and chains["betas"][0][0] == 1.0
    for name in ("energy", "mean_hidden", "mean_visible"):
        assert chains["r_hat"][name] > 0 and chains["ess_bulk"][name] > 0
    assert "swap acceptance" in (out / "chains_summary.txt").read_text()
    # 10% of the digits' training images were held out for early stopping
    assert report["num_val"] == round(0.1 * (report["num_train"] + report["num_val"]))
    assert report["best_epoch"] == 1 and report["val_pseudo_log_likelihood"] < 0


def test_validation_split_is_seeded_and_disjoint():
    from pyro_deepgen.experiments.rbm import validation_split

    x = torch.arange(50.0).unsqueeze(-1)
    train, val = validation_split(x, 0.1, seed=3)
    assert len(val) == 5 and len(train) == 45
    assert sorted(torch.cat([train, val]).squeeze(-1).tolist()) == list(range(50))
    assert torch.equal(validation_split(x, 0.1, seed=3)[1], val)
    assert validation_split(x, 0.0, seed=3) == (x, None)


def test_pt_pcd_run_and_early_stopping(tmp_path):
    """PT-PCD trains (method name, the loss's replicas); patience 1 stops as soon as an epoch
    does not improve the validation score, and the kept epoch is the best one."""
    config = RBMConfig(hidden=6, epochs=6, pt_pcd=True, temperatures=3, lr=0.5, patience=1,
                       ais_betas=20, ais_runs=2, gibbs_steps=2, chains=2, chain_samples=10,
                       sampler="gibbs", out=tmp_path / "run", progress=False)
    report = run(config)
    assert report["method"] == "PT-PCD" and report["chains"]["sampler"] == "gibbs"
    val = {m["epoch"]: m["val_pseudo_log_likelihood"] for m in report["per_epoch"]}
    assert report["val_pseudo_log_likelihood"] == pytest.approx(max(val.values()))
    assert val[report["best_epoch"]] == pytest.approx(max(val.values()))
    if report["stopped_early"]:
        assert report["epochs"] == report["best_epoch"] + 1


@pytest.mark.parametrize("kwargs,match", [
    (dict(ais_runs=1), r"ais_runs \(--ais-runs\) must be at least 2"),
    (dict(ais_betas=2), r"ais_betas \(--ais-betas\) must be at least 3"),
    (dict(momentum=1.5), r"momentum \(--momentum\)"),
    (dict(weight_decay=-1.0), r"weight_decay \(--weight-decay\)"),
    (dict(sparsity_target=2.0), r"sparsity_target \(--sparsity-target\)"),
    (dict(hidden=0), r"hidden \(--hidden\) must be a positive integer"),
    (dict(data="mnist"), r"--data-root"),
    (dict(val_fraction=1.0), r"val_fraction \(--val-fraction\) must be in \[0, 1\)"),
    (dict(patience=-1), r"patience \(--patience\) must be an integer >= 0"),
    (dict(sampler="hmc"), r"sampler \(--sampler\) must be one of pt, gibbs"),
    (dict(min_beta=0.0), r"min_beta \(--min-beta\) must be in \(0, 1\)"),
    (dict(temperatures=0), r"temperatures \(--temperatures\) must be a positive integer"),
    (dict(pcd=True, pt_pcd=True), r"exclude each other"),
    (dict(chain_samples=0), r"chain_samples \(--chain-samples\) must be a positive integer"),
    (dict(chain_warmup=0), r"chain_warmup \(--chain-warmup\) must be a positive integer"),
])
def test_config_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RBMConfig(**kwargs)


def test_chain_summary_thinning_and_base_rate_hot_end():
    """``thin`` sweeps per draw and a base-rate hot end: every chain's adapted ladder still ends
    at beta = 0 and starts at 1, the sweeps per chain (2 * 10 draws * 2, warm-up included) and
    the hot end are reported; bad combinations are rejected."""
    from pyro_deepgen.energy import RBM, base_rate_logits
    from pyro_deepgen.experiments import rbm as experiment

    torch.manual_seed(0)
    model = RBM(6, 4)
    base = base_rate_logits(torch.bernoulli(torch.full((50, 6), 0.3)))
    table = experiment.chain_summary(model, 2, 10, progress=False, sampler="pt", temperatures=3,
                                     min_beta=0.5, thin=2, base_rate=base, vectorized=False)
    assert table.attrs["sweeps"] == 40 and table.attrs["base_rate"] and not table.attrs["vectorized"]
    assert len(table.attrs["betas"]) == 2  # through pyro.infer.MCMC every chain adapts its own ladder
    for betas in table.attrs["betas"]:
        assert betas[0] == 1.0 and betas[-1] == 0.0 and len(betas) == 3
    report = experiment.mixing_report(table)
    assert report["thin"] == 2 and report["sweeps"] == 40
    text = experiment.mixing_text(table)
    assert "base-rate hot end" in text and "2 per retained draw" in text
    with pytest.raises(ValueError, match="thin must be a positive integer"):
        experiment.chain_summary(model, 2, 10, progress=False, thin=0)
    with pytest.raises(ValueError, match="base_rate is the hot end of parallel tempering"):
        experiment.chain_summary(model, 2, 10, progress=False, sampler="gibbs", base_rate=base)


def test_chain_length_defaults_follow_the_data(tmp_path):
    """MNIST's chains are 25 times longer by default (100,000 draws; 4000 on the digits), the
    warm-up is as long as the draws up to 8000 steps, and explicit values are kept."""
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"")
    digits = RBMConfig()
    assert (digits.chain_samples, digits.chain_warmup) == (4000, 4000)
    mnist = RBMConfig(data="mnist", data_root=str(tmp_path))
    assert (mnist.chain_samples, mnist.chain_warmup) == (100000, 8000)
    assert RBMConfig(chain_samples=50).chain_warmup == 50
    assert RBMConfig(chain_samples=50, chain_warmup=7).chain_warmup == 7


def test_chain_summary_warmup_steps():
    """``warmup_steps`` sets the warm-up apart from the draws: the ladder adapts during it and
    the table reports the sweeps with and without it."""
    from pyro_deepgen.energy import RBM
    from pyro_deepgen.experiments import rbm as experiment

    torch.manual_seed(0)
    table = experiment.chain_summary(RBM(6, 4), 2, 10, progress=False, sampler="pt", temperatures=3,
                                     min_beta=0.5, warmup_steps=30)
    assert table.attrs["sweeps"] == 40 and table.attrs["warmup"] == 30
    assert experiment.mixing_report(table)["warmup"] == 30
    assert "(30 warm-up)" in experiment.mixing_text(table)
    with pytest.raises(ValueError, match="warmup_steps must be an integer >= 0"):
        experiment.chain_summary(RBM(6, 4), 2, 10, progress=False, warmup_steps=-1)


def test_chain_summary_snapshots_are_states_of_its_chains():
    """snapshots=k keeps k evenly spaced states of each vectorized chain, as p(v=1|h) (strictly
    inside (0, 1)), shaped (chains, k, V); bad counts and the MCMC path are refused."""
    from pyro_deepgen.energy import RBM
    from pyro_deepgen.experiments import rbm as experiment

    torch.manual_seed(0)
    rbm = RBM(6, 4)
    table = experiment.chain_summary(rbm, 3, 12, progress=False, sampler="pt", temperatures=3,
                                     min_beta=0.5, snapshots=4)
    shots = table.attrs["snapshots"]
    assert shots.shape == (3, 4, 6) and bool(((shots > 0) & (shots < 1)).all())
    for bad in (-1, 13):
        with pytest.raises(ValueError, match="snapshots must be an integer from 0 to num_samples"):
            experiment.chain_summary(rbm, 3, 12, progress=False, snapshots=bad)
    with pytest.raises(ValueError, match="with vectorized=True"):
        experiment.chain_summary(rbm, 3, 12, progress=False, snapshots=2, vectorized=False)


def test_method_name():
    assert RBMConfig().method == "CD-1" and RBMConfig(pcd=True).method == "PCD"
    assert RBMConfig(pt_pcd=True).method == "PT-PCD"

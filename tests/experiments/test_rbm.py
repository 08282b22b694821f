"""``experiments.rbm``: ``run(RBMConfig)`` with tiny settings and the checks of the config."""
import json

import pytest

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


@pytest.mark.parametrize("kwargs,match", [
    (dict(ais_runs=1), r"ais_runs \(--ais-runs\) must be at least 2"),
    (dict(ais_betas=2), r"ais_betas \(--ais-betas\) must be at least 3"),
    (dict(momentum=1.5), r"momentum \(--momentum\)"),
    (dict(weight_decay=-1.0), r"weight_decay \(--weight-decay\)"),
    (dict(sparsity_target=2.0), r"sparsity_target \(--sparsity-target\)"),
    (dict(hidden=0), r"hidden \(--hidden\) must be a positive integer"),
    (dict(data="mnist"), r"--data-root"),
])
def test_config_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RBMConfig(**kwargs)


def test_method_name():
    assert RBMConfig().method == "CD-1" and RBMConfig(pcd=True).method == "PCD"

"""``experiments.score_samples.run`` on tiny run folders of every command with a sampler."""
import json

import pytest
import torch

from pyro_deepgen.experiments import autoregressive, diffusion, rbm, vae
from pyro_deepgen.experiments.score_samples import ScoreSamplesConfig, run


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "vae"
    vae.run(vae.VAEConfig(z_dim=4, hidden=(32,), epochs=1, eval_samples=5, progress=False, out=out))
    return out


def test_scores_a_vae_run_and_caches_its_classifier(vae_run, tmp_path, capsys):
    config = dict(run=vae_run, num_samples=100, num_permutations=50, classifier_epochs=1, progress=False)
    report = run(ScoreSamplesConfig(out=tmp_path / "a", **config))
    for key in ("frechet_distance", "class_coverage", "mmd", "mmd_p_value", "parzen_log_likelihood",
                "parzen_sigma", "num_samples", "classifier_test_accuracy", "c2st_accuracy"):
        assert key in report
    assert report["num_samples"] == 100 and report["command_scored"] == "vae"
    assert sum(report["class_coverage"].values()) == pytest.approx(1.0)
    assert json.loads((tmp_path / "a" / "report.json").read_text())["frechet_distance"] == report["frechet_distance"]
    assert (tmp_path / "a" / "samples.png").stat().st_size > 0
    cached = list(vae_run.glob("classifier-*.pt"))
    assert len(cached) == 1
    marker = json.loads((vae_run / ".pyro-deepgen-run.json").read_text())
    assert cached[0].name in marker["files"]  # the run's --overwrite removes it
    again = run(ScoreSamplesConfig(out=tmp_path / "b", **config))  # the cached classifier: same numbers
    assert again["frechet_distance"] == report["frechet_distance"]
    assert "biased" in capsys.readouterr().out


@pytest.mark.parametrize("settings", [dict(run="nowhere"), dict(against="valid"), dict(num_samples=2)])
def test_bad_settings_name_the_option(settings, tmp_path):
    with pytest.raises(ValueError, match="--run|--against|--num-samples"):
        ScoreSamplesConfig(out=tmp_path / "x", **settings)


def test_a_folder_without_report_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"run \(--run\).*report.json"):
        ScoreSamplesConfig(run=tmp_path / "empty", out=tmp_path / "x")


def test_load_sampler_of_rbm_autoregressive_and_diffusion_runs(tmp_path):
    runs = {
        "rbm": (rbm, rbm.RBMConfig(hidden=16, epochs=1, ais_betas=3, ais_runs=2, gibbs_steps=2, chains=2,
                                   chain_samples=4, progress=False, out=tmp_path / "rbm")),
        "autoregressive": (autoregressive, autoregressive.AutoregressiveConfig(
            hidden=(16,), epochs=1, progress=False, out=tmp_path / "ar")),
        "diffusion": (diffusion, diffusion.DiffusionConfig(
            data="digits", steps=4, epochs=1, num_train=64, max_test=8, num_samples=4, base_channels=4,
            progress=False, out=tmp_path / "diff")),
    }
    for name, (module, config) in runs.items():
        module.run(config)
        torch.manual_seed(0)
        x = module.load_sampler(config.out)(5)
        assert x.shape == (5, 64), name
        assert ((x >= 0) & (x <= 1)).all(), name

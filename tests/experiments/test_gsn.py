"""``experiments.gsn``: ``run(GSNConfig)`` with tiny settings, resume, the sampler loaded from the
run folder, and the checks of the config."""
import json

import pytest

from pyro_deepgen.experiments.gsn import GSNConfig, load_sampler, run

TINY = dict(batch_size=200, hidden=(16,), chain_steps=5, mixing_chains=3, mixing_warmup=5, mixing_draws=20,
            progress=False)


@pytest.mark.parametrize("noise", ["salt-and-pepper", "gaussian"])
def test_run_returns_the_report_it_writes(noise, tmp_path, capsys):
    out = tmp_path / "run"
    report = run(GSNConfig(noise=noise, epochs=2, walkback=2, out=out, **TINY))
    assert json.loads((out / "report.json").read_text()) == report
    assert len(report["train_loss"]) == len(report["test_loss"]) == 2
    mix = report["mixing"]
    assert set(mix["r_hat"]) == {"mean_intensity", "pc1"} and mix["chains"] == 3
    for name in ("checkpoint.pt", "samples.png", "chain.png", "losses.png", "progress.png"):
        assert (out / name).stat().st_size > 0
    x = load_sampler(out)(6)
    assert x.shape == (6, 64) and 0 <= x.min() and x.max() <= 1
    assert "R-hat" in capsys.readouterr().out


def test_resume_continues_to_the_same_report(tmp_path):
    whole = run(GSNConfig(epochs=3, out=tmp_path / "a", **TINY))
    run(GSNConfig(epochs=1, out=tmp_path / "b", **TINY))
    resumed = run(GSNConfig(epochs=3, out=tmp_path / "b", resume=True, **TINY))
    assert resumed["train_loss"] == pytest.approx(whole["train_loss"], abs=1e-5)
    assert resumed["test_loss"] == pytest.approx(whole["test_loss"], abs=1e-5)


@pytest.mark.parametrize("kwargs,match", [
    (dict(walkback=0), r"walkback \(--walkback\)"),
    (dict(noise="dropout"), r"noise \(--noise\) must be one of"),
    (dict(noise_level=1.5), r"noise_level \(--noise-level\) must be a probability"),
    (dict(mixing_chains=1), r"mixing_chains \(--mixing-chains\) must be at least 2"),
    (dict(hidden=()), r"hidden \(--hidden\)"),
])
def test_config_rejects_bad_settings_in_one_line(kwargs, match, tmp_path):
    with pytest.raises(ValueError, match=match) as e:
        GSNConfig(out=tmp_path / "run", **kwargs)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "run").exists()

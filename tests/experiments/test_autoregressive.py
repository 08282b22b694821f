"""``experiments.autoregressive``: ``run(AutoregressiveConfig)`` with tiny settings (each model),
resume, and the checks of the config."""
import json
import math

import pytest

from pyro_deepgen.experiments.autoregressive import AutoregressiveConfig, run

TINY = dict(epochs=2, batch_size=200, progress=False)


@pytest.mark.parametrize("model,hidden,orderings", [("nade", (16,), 1), ("made", (16,), 3), ("pixelcnn", (4, 4), 1)])
def test_run_returns_the_report_it_writes(model, hidden, orderings, tmp_path, capsys):
    out = tmp_path / "run"
    report = run(AutoregressiveConfig(model=model, hidden=hidden, orderings=orderings, out=out, **TINY))
    assert json.loads((out / "report.json").read_text()) == report
    ll = report["test_log_likelihood"]
    assert -64 * math.log(2) * 1.5 < ll < 0  # 64 binary pixels
    assert report["test_bits_per_dim"] == pytest.approx(-ll / (64 * math.log(2)))
    per_mask = report["test_log_likelihood_per_mask"]
    assert len(per_mask) == orderings
    if orderings > 1:  # the ensemble is a log-mean-exp: at least the worst mask, per image and on average
        assert ll >= min(per_mask) - 1e-6
    assert report["epochs"] == 2 and len(report["val_loss"]) == 2
    assert report["settings"]["command"] == "autoregressive" and report["settings"]["model"] == model
    for name in ("checkpoint.pt", "samples.png", "loss.png"):
        assert (out / name).stat().st_size > 0
    assert "test log p(x) (exact, nats)" in capsys.readouterr().out


def test_resume_continues_to_the_same_report(tmp_path):
    settings = dict(model="made", hidden=(16,), orderings=2, progress=False, batch_size=200)
    whole = run(AutoregressiveConfig(epochs=3, out=tmp_path / "a", **settings))
    run(AutoregressiveConfig(epochs=1, out=tmp_path / "b", **settings))
    resumed = run(AutoregressiveConfig(epochs=3, out=tmp_path / "b", resume=True, **settings))
    assert resumed["test_log_likelihood"] == pytest.approx(whole["test_log_likelihood"], abs=1e-5)
    assert resumed["train_loss"] == pytest.approx(whole["train_loss"], abs=1e-5)


@pytest.mark.parametrize("kwargs,match", [
    (dict(model="rnade"), r"model \(--model\) must be one of nade, made, pixelcnn"),
    (dict(orderings=0), r"orderings \(--orderings\) must be a positive integer"),
    (dict(model="nade", orderings=2), r"orderings \(--orderings\) applies to --model made only"),
    (dict(model="nade", hidden=(5, 5)), r"hidden \(--hidden\) for --model nade is one size"),
    (dict(model="pixelcnn", hidden=(4, 8)), r"hidden \(--hidden\) for --model pixelcnn"),
    (dict(hidden=(0,)), r"hidden \(--hidden\)"),
    (dict(patience=0), r"patience \(--patience\)"),
    (dict(lr=-1.0), r"lr \(--lr\)"),
    (dict(data="mnist"), r"data_root \(--data-root DIR\)"),
])
def test_config_rejects_bad_settings_in_one_line(kwargs, match, tmp_path):
    with pytest.raises(ValueError, match=match) as e:
        AutoregressiveConfig(out=tmp_path / "run", **kwargs)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "run").exists()

"""``experiments.gan``: ``run(GANConfig)`` with tiny settings for each objective, resume, the
sampler loaded from the run folder, and the checks of the config."""
import json

import pytest
import torch

from pyro_deepgen.experiments.gan import GANConfig, build, load_sampler, run
from pyro_deepgen.train import load_checkpoint

TINY = dict(epochs=2, batch_size=200, hidden=(16,), z_dim=4, progress=False)


@pytest.mark.parametrize("loss,conditional", [("nonsaturating", True), ("minimax", False), ("wgan-gp", False),
                                              ("hinge", False)])
def test_run_returns_the_report_it_writes(loss, conditional, tmp_path, capsys):
    out = tmp_path / "run"
    report = run(GANConfig(loss=loss, conditional=conditional, out=out, **TINY))
    assert json.loads((out / "report.json").read_text()) == report
    assert report["n_critic"] == (5 if loss == "wgan-gp" else 1)
    assert len(report["generator_loss"]) == len(report["discriminator_loss"]) == 2
    assert report["generator_steps"] == 2 * 9  # 1617 training digits in batches of 200
    for name in ("checkpoint.pt", "samples.png", "losses.png", "progress.png"):
        assert (out / name).stat().st_size > 0
    sample = load_sampler(out)
    x = sample(7)
    assert x.shape == (7, 64) and 0 <= x.min() and x.max() <= 1
    assert "final D / G loss" in capsys.readouterr().out


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_resume_continues_to_the_same_report(ema, tmp_path):
    rest = {k: v for k, v in TINY.items() if k != "epochs"}
    whole = run(GANConfig(epochs=3, ema=ema, out=tmp_path / "a", **rest))
    run(GANConfig(epochs=1, ema=ema, out=tmp_path / "b", **rest))
    resumed = run(GANConfig(epochs=3, ema=ema, out=tmp_path / "b", resume=True, **rest))
    for key in ("generator_loss", "discriminator_loss", "d_real", "d_fake"):
        assert resumed[key] == pytest.approx(whole[key], abs=1e-6)
    torch.manual_seed(0)
    a = load_sampler(tmp_path / "a")(5)
    torch.manual_seed(0)
    assert torch.allclose(a, load_sampler(tmp_path / "b")(5), atol=1e-6)


@pytest.mark.parametrize("kwargs,match", [
    (dict(loss="lsgan"), r"loss \(--loss\) must be one of"),
    (dict(n_critic=0), r"n_critic \(--n-critic\)"),
    (dict(gp_weight=-1.0), r"gp_weight \(--gp-weight\)"),
    (dict(lr=0.0), r"lr \(--lr\)"),
    (dict(z_dim=0), r"z_dim \(--z-dim\)"),
    (dict(hidden=(0,)), r"hidden \(--hidden\)"),
    (dict(data="mnist"), r"data_root \(--data-root DIR\)"),
    (dict(ema=1.0), r"ema \(--ema\) must be a number in \[0, 1\)"),
    (dict(ema=-0.1), r"ema \(--ema\)"),
    (dict(minibatch_std="yes"), r"minibatch_std \(--no-minibatch-std\)"),
    (dict(spectral_norm=1), r"spectral_norm \(--spectral-norm\)"),
])
def test_config_rejects_bad_settings_in_one_line(kwargs, match, tmp_path):
    with pytest.raises(ValueError, match=match) as e:
        GANConfig(out=tmp_path / "run", **kwargs)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "run").exists()


def test_load_sampler_refuses_other_folders(tmp_path):
    with pytest.raises(ValueError, match="no readable report.json"):
        load_sampler(tmp_path)


@pytest.mark.parametrize("ema", [0.9, 0.0])
def test_load_sampler_draws_from_the_moving_average_unless_ema_is_0(ema, tmp_path):
    report = run(GANConfig(ema=ema, spectral_norm=True, out=tmp_path / "run", **TINY))
    assert report["ema"] == ema and report["spectral_norm"] and report["minibatch_std"]
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    last, average = build(report["settings"], 64)[0], build(report["settings"], 64)[0]
    last.load_state_dict(state["modules"][0])
    if ema > 0:
        average.load_state_dict(state["loss"]["average"])
    else:
        assert state["loss"]["average"] is None
        average = last
    z = torch.randn(5, 4)
    sampler = load_sampler(tmp_path / "run")
    torch.manual_seed(1)
    drawn = sampler(5)
    torch.manual_seed(1)
    with torch.no_grad():
        assert torch.allclose(drawn, average.decode(torch.randn(5, 4)), atol=1e-6)
        assert torch.allclose(average.decode(z), last.decode(z)) == (ema == 0)

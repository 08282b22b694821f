"""``experiments.autoencoder``: ``run(AutoencoderConfig)`` with tiny settings (each of this
module's kinds), the PCA and K-means limits in the report, resume, and the checks of the config."""
import json

import pytest

from pyro_deepgen.experiments.autoencoder import AutoencoderConfig, run

TINY = dict(epochs=3, progress=False)


@pytest.mark.parametrize("kind,extra", [("sparse", {}), ("contractive", dict(code_dim=2)),
                                        ("denoising", dict(corruption="gaussian", noise=0.1, loss="bernoulli"))])
def test_run_returns_the_report_it_writes(kind, extra, tmp_path, capsys):
    out = tmp_path / "run"
    report = run(AutoencoderConfig(kind=kind, out=out, **TINY, **extra))
    assert json.loads((out / "report.json").read_text()) == report
    for key in ("reconstruction_error", "sparsity", "contraction", "train_loss"):
        assert key in report
    assert 0 <= report["sparsity"] <= 1 and report["contraction"] > 0
    assert report["epochs"] == 3 and report["settings"]["kind"] == kind
    names = {"report.json", "filters.png", "reconstructions.png", "loss.png", "checkpoint.pt"}
    if extra.get("code_dim") == 2:
        names.add("codes.png")
    for name in names:
        assert (out / name).stat().st_size > 0
    assert not (out / "codes.png").exists() or "codes.png" in names
    assert "test reconstruction error" in capsys.readouterr().out


def test_linear_kind_reaches_the_pca_limit_in_the_report(tmp_path):
    """Default full-batch training (cosine-decayed Adam) with 5 code units, 400 steps."""
    report = run(AutoencoderConfig(kind="linear", code_dim=5, epochs=400, out=tmp_path / "run", progress=False))
    assert report["principal_angle_max_deg"] < 1.0
    assert report["train_reconstruction_error"] <= 1.01 * report["sklearn_train_reconstruction_error"]
    assert report["reconstruction_error"] == pytest.approx(report["sklearn_reconstruction_error"], rel=0.01)
    assert report["sparsity"] == 0.0


def test_kmeans_kind_matches_sklearn_inertia(tmp_path):
    report = run(AutoencoderConfig(kind="kmeans", code_dim=8, out=tmp_path / "run", progress=False))
    assert report["inertia"] <= 1.01 * report["sklearn_inertia"]
    assert report["contraction"] == 0.0 and report["sparsity"] == pytest.approx(7 / 8)
    assert (tmp_path / "run" / "filters.png").exists() and not (tmp_path / "run" / "checkpoint.pt").exists()


def test_resume_continues_to_the_same_report(tmp_path):
    settings = dict(kind="sparse", code_dim=16, progress=False)
    whole = run(AutoencoderConfig(epochs=3, out=tmp_path / "a", **settings))
    run(AutoencoderConfig(epochs=1, out=tmp_path / "b", **settings))
    resumed = run(AutoencoderConfig(epochs=3, out=tmp_path / "b", resume=True, **settings))
    assert resumed["reconstruction_error"] == pytest.approx(whole["reconstruction_error"], abs=1e-5)
    assert resumed["train_loss"] == pytest.approx(whole["train_loss"], abs=1e-5)


def test_defaults_are_filled_per_kind():
    c = AutoencoderConfig(kind="sparse")
    assert (c.code_dim, c.lam, c.epochs, c.batch_size) == (64, 0.1, 50, 100)
    c = AutoencoderConfig(kind="lista")
    assert isinstance(c.code_dim, int) and isinstance(c.lam, float) and isinstance(c.lr, float)


@pytest.mark.parametrize("kwargs,match", [
    (dict(kind="pca"), r"kind \(--kind\) must be one of linear, sparse"),
    (dict(code_dim=0), r"code_dim \(--code-dim\) must be a positive integer"),
    (dict(lam=-0.1), r"lam \(--lambda\) must be a finite number >= 0"),
    (dict(layers=0), r"layers \(--layers\)"),
    (dict(kind="denoising", noise=1.0), r"noise \(--noise\) is a masking probability"),
    (dict(kind="linear", loss="bernoulli"), r"loss \(--loss\) bernoulli applies to"),
    (dict(kind="kmeans", resume=True), r"resume \(--resume\) applies to the kinds trained with fit"),
    (dict(lr=0.0), r"lr \(--lr\)"),
    (dict(data="mnist"), r"data_root \(--data-root DIR\)"),
])
def test_config_rejects_bad_settings_in_one_line(kwargs, match, tmp_path):
    with pytest.raises(ValueError, match=match) as e:
        AutoencoderConfig(out=tmp_path / "run", **kwargs)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "run").exists()

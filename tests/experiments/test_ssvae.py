"""The ssvae experiment on tiny settings: the report, the files, resume, the label checks."""
import json

import pytest
import torch

from pyro_deepgen.experiments.ssvae import SSVAEConfig, balanced_labels, default_alpha, run

TINY = dict(labels=20, label_draws=2, z_dim=2, hidden=(16,), epochs=1, batch_size=200, progress=False)


def test_m2_report_files_and_resume(tmp_path):
    report = run(SSVAEConfig(model="m2", out=tmp_path / "r", **TINY))
    assert set(report) >= {"test_error", "test_error_std", "per_draw", "labels", "model", "settings"}
    assert len(report["per_draw"]) == 2 and 0 <= report["test_error"] <= 100
    assert report["styles"].startswith("the first draw's model")
    for name in ("report.json", "table.md", "confusion.png", "analogies.png", "styles.png"):
        assert (tmp_path / "r" / name).is_file(), name
    assert "| 20 (this run, digits, 2 draws) |" in (tmp_path / "r" / "table.md").read_text()
    again = run(SSVAEConfig(model="m2", out=tmp_path / "r", resume=True, **TINY))
    assert again["per_draw"] == report["per_draw"]  # completed checkpoints: the same networks
    assert json.loads((tmp_path / "r" / "report.json").read_text())["per_draw"] == report["per_draw"]


def test_m1_and_m1m2(tmp_path):
    m1 = run(SSVAEConfig(model="m1", out=tmp_path / "m1", **{**TINY, "label_draws": 1}))
    assert "RBF SVM" in m1["classifier"] and not (tmp_path / "m1" / "styles.png").exists()
    tiny = {**TINY, "label_draws": 1, "z_dim": 3}
    m1m2 = run(SSVAEConfig(model="m1m2", out=tmp_path / "m1m2", **tiny))
    assert (tmp_path / "m1m2" / "styles.png").is_file() and "separate model" in m1m2["styles"]
    # the classifier averages over draws of z1, seeded per draw: a resumed run scores the same
    again = run(SSVAEConfig(model="m1m2", out=tmp_path / "m1m2", resume=True, **tiny))
    assert again["per_draw"] == m1m2["per_draw"]


def test_balanced_labels():
    y = torch.arange(10).repeat(5)
    index = balanced_labels(y, 30, seed=0)
    assert torch.bincount(y[index], minlength=10).tolist() == [3] * 10
    assert not torch.equal(index, balanced_labels(y, 30, seed=1))
    with pytest.raises(ValueError, match=r"labels \(--labels\) 50 asks for 5 per class"):
        balanced_labels(y, 50, seed=0)


@pytest.mark.parametrize("labels, match", [(0, "positive integer"), (15, "multiple of the 10 classes")])
def test_bad_labels(tmp_path, labels, match):
    with pytest.raises(ValueError, match=match):
        SSVAEConfig(labels=labels, out=tmp_path)


def test_too_many_labels(tmp_path):
    with pytest.raises(ValueError, match=r"labels \(--labels\) 2000"):
        run(SSVAEConfig(labels=2000, out=tmp_path / "r", **{k: v for k, v in TINY.items() if k != "labels"}))


def test_defaults_per_data_and_model(tmp_path):
    # None takes DEFAULTS, else FALLBACK: the digits keep one setting for every network (10 epochs
    # at 3e-3, z 50, hidden 500); on MNIST M2 uses 100 epochs at 3e-3 with dropout 0.7, M1 a 20-D z, and M1+M2 a small
    # M2 (z 2, hidden 100, dropout 0.3, 100 per label, 300 epochs at 2e-3) on a 40-epoch M1 with a
    # 20-D z at 1e-3; given values are kept (download=True: no files needed to configure)
    digits = SSVAEConfig(out=tmp_path).resolved()
    assert (digits.epochs, digits.lr, digits.z_dim, digits.hidden) == (10, 3e-3, 50, (500,))
    assert digits.classifier_dropout == 0
    assert default_alpha(digits) == 46 * 100
    stacked = SSVAEConfig(model="m1m2", z_dim=3, epochs=2, out=tmp_path).resolved()
    assert stacked.m1_settings() == (3, (500,), 2, 3e-3)  # the digits: M1 follows the plain settings
    mnist = dict(data="mnist", data_root=str(tmp_path / "mnist"), download=True, out=tmp_path)
    m1m2 = SSVAEConfig(model="m1m2", **mnist).resolved()
    assert (m1m2.epochs, m1m2.lr, m1m2.z_dim, m1m2.hidden, m1m2.classifier_dropout) == (300, 2e-3, 2, (100,), 0.3)
    assert m1m2.m1_settings() == (20, (500,), 40, 1e-3) and default_alpha(m1m2) == 100 * 100
    m2 = SSVAEConfig(model="m2", **mnist).resolved()
    assert (m2.epochs, m2.lr, m2.z_dim, m2.hidden, m2.classifier_dropout) == (100, 3e-3, 50, (500,), 0.7)
    assert SSVAEConfig(model="m1", **mnist).resolved().m1_settings() == (20, (500,), 40, 1e-3)
    kept = SSVAEConfig(model="m1m2", epochs=3, lr=0.5, m1_z_dim=7, alpha=1.0, **mnist).resolved()
    assert (kept.epochs, kept.lr, kept.m1_z_dim, default_alpha(kept)) == (3, 0.5, 7, 1.0)
    with pytest.raises(ValueError, match=r"epochs \(--epochs\) must be a positive integer"):
        SSVAEConfig(epochs=0, out=tmp_path)


@pytest.mark.parametrize("model", ["m1", "m2"])
def test_m1_settings_are_refused_outside_m1m2(tmp_path, model):
    with pytest.raises(ValueError, match=r"m1_z_dim \(--m1-z-dim\) is M1's setting under --model m1m2; "
                                         rf"with --model {model} use z_dim \(--z-dim\)"):
        SSVAEConfig(model=model, m1_z_dim=5, out=tmp_path)


@pytest.mark.parametrize("value", [-0.1, 1.0, float("nan")])
def test_bad_classifier_dropout(tmp_path, value):
    with pytest.raises(ValueError, match=r"classifier_dropout \(--classifier-dropout\)"):
        SSVAEConfig(classifier_dropout=value, out=tmp_path)

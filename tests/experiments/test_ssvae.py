"""The ssvae experiment on tiny settings: the report, the files, resume, the label checks."""
import json

import pytest
import torch

from pyro_deepgen.experiments.ssvae import SSVAEConfig, balanced_labels, run

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
    m1m2 = run(SSVAEConfig(model="m1m2", out=tmp_path / "m1m2", **{**TINY, "label_draws": 1, "z_dim": 3}))
    assert (tmp_path / "m1m2" / "styles.png").is_file() and "separate model" in m1m2["styles"]


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


def test_epochs_and_lr_defaults_per_data_and_model(tmp_path):
    # None takes DEFAULTS: the digits keep 10 epochs at 3e-3; on MNIST M1+M2 uses 40 epochs at
    # 1e-3 and M2 50 at 3e-3; given values are kept (download=True: no files needed to configure)
    digits = SSVAEConfig(out=tmp_path).resolved()
    assert (digits.epochs, digits.lr) == (10, 3e-3)
    mnist = dict(data="mnist", data_root=str(tmp_path / "mnist"), download=True, out=tmp_path)
    assert (SSVAEConfig(model="m1m2", **mnist).resolved().epochs, SSVAEConfig(model="m1m2", **mnist).resolved().lr) \
        == (40, 1e-3)
    assert (SSVAEConfig(model="m2", **mnist).resolved().epochs, SSVAEConfig(model="m2", **mnist).resolved().lr) \
        == (50, 3e-3)
    kept = SSVAEConfig(model="m1m2", epochs=3, lr=0.5, **mnist).resolved()
    assert (kept.epochs, kept.lr) == (3, 0.5)
    with pytest.raises(ValueError, match=r"epochs \(--epochs\) must be a positive integer"):
        SSVAEConfig(epochs=0, out=tmp_path)

"""``experiments.vae``: ``run(VAEConfig)`` with tiny settings, the name tables, and the checks of
the config."""
import json

import pytest
from pyro.infer import Trace_ELBO

from pyro_deepgen.distributions.transforms import FLOWS
from pyro_deepgen.experiments.vae import ELBOS, GUIDES, VAEConfig, make_elbo, run
from pyro_deepgen.infer import TraceHVI_ELBO, TraceIWAE_ELBO, TraceVIMCO_ELBO


def test_run_returns_the_report_it_writes(tmp_path, capsys):
    out = tmp_path / "run"
    config = VAEConfig(epochs=1, z_dim=3, hidden=[16], eval_samples=25, batch_size=200,
                       guide="planar", flow_depth=2, out=str(out), progress=False)
    report = run(config)
    assert json.loads((out / "report.json").read_text()) == report
    assert report["epochs"] == 1 and len(report["train_loss"]) == 1
    assert report["test_elbo"] <= report["test_log_likelihood"] + 1e-3
    assert report["khat_max"] is not None  # 25 >= 21 samples: PSIS runs
    assert report["settings"]["guide"] == "planar" and report["settings"]["hidden"] == [16]
    assert report["settings"]["command"] == "vae" and report["settings"]["out"] == str(out)
    for name in ("checkpoint.pt", "samples.png", "reconstructions.png", "loss.png"):
        assert (out / name).stat().st_size > 0
    assert not (out / "manifold.png").exists()  # only for z_dim = 2
    printed = capsys.readouterr().out
    assert "test log p(x) (K=25)" in printed
    # the last line says where the files went
    assert printed.splitlines()[-1] == (f"wrote {out / 'report.json'}, checkpoint.pt, loss.png, "
                                        "reconstructions.png, samples.png")


def test_name_tables_come_from_the_library():
    assert GUIDES == ("diagonal",) + tuple(FLOWS)
    assert tuple(ELBOS) == ("trace", "iwae", "stl", "dreg", "vimco", "hvi")
    assert isinstance(make_elbo("trace", 3, 4), Trace_ELBO)
    assert isinstance(make_elbo("dreg", 3, 4), TraceIWAE_ELBO)
    with pytest.raises(ValueError, match="num_particles"):  # the leave-one-out baseline needs 2
        make_elbo("vimco", 1, 4)  # refused, never silently trained with 2
    assert isinstance(make_elbo("hvi", 1, 2), TraceHVI_ELBO)
    assert isinstance(make_elbo("vimco", 3, 4), TraceVIMCO_ELBO)
    with pytest.raises(ValueError, match="elbo='rws' is not known"):
        make_elbo("rws")


@pytest.mark.parametrize("kwargs,match", [
    (dict(epochs=0), r"epochs \(--epochs\) must be a positive integer"),
    (dict(z_dim=2.5), r"z_dim \(--z-dim\)"),
    (dict(lr=-1.0), r"lr \(--lr\) must be a finite positive number"),
    (dict(hidden=(20, 0)), r"hidden \(--hidden\)"),
    (dict(binarize="maybe"), r"binarize \(--binarize\) must be one of"),
    (dict(elbo="rws"), r"elbo \(--elbo\) must be one of"),
    (dict(guide="maf"), r"guide \(--guide\) must be one of diagonal, planar"),
    (dict(data="mnist"), r"data_root \(--data-root DIR\)"),
    (dict(device="tpu:x"), r"device \(--device\)"),
])
def test_config_rejects_bad_settings_in_one_line(kwargs, match, tmp_path):
    with pytest.raises(ValueError, match=match) as e:
        VAEConfig(out=tmp_path / "run", **kwargs)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "run").exists()

"""examples/lightning_vae.py: the VAE with the DReG-IWAE ELBOModule under Lightning (skipped when
the optional ``lightning`` is not installed)."""
import importlib.util
import math
import sys
from pathlib import Path

import pyro
import pytest

pytest.importorskip("lightning")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "lightning_vae.py"


def _load():
    spec = importlib.util.spec_from_file_location("lightning_vae", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["lightning_vae"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.filterwarnings("ignore")  # Lightning's advice (dataloader workers, logging) is not ours to fix
def test_lightning_trains_the_vae_with_elbo_module():
    example = _load()
    pyro.clear_param_store()
    try:
        module = example.train(epochs=1, limit_batches=3)
    finally:
        pyro.settings.set(module_local_params=False)
    params = dict(module.named_parameters())
    assert any(name.startswith("loss_fn.") or name.startswith("vae.") for name in params)
    assert len(pyro.get_param_store().keys()) == 0  # module-local parameters: none in the global store
    assert math.isfinite(float(module.trainer.callback_metrics["loss"]))

"""Checks of ``pyro_deepgen/_arviz.py`` that run in any Python with numpy and arviz (0.2x or
1.x) and without torch: ``tests/test_arviz_compat.py`` runs this file with an interpreter that
has arviz 1.x. It loads the module by path (the package itself needs torch) and prints
``ok <arviz version>`` when every check passes."""
import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np

warnings.simplefilter("error")
warnings.filterwarnings("ignore", category=FutureWarning)  # arviz 0.23's daily refactor notice

spec = importlib.util.spec_from_file_location(
    "_arviz", Path(__file__).resolve().parents[1] / "pyro_deepgen" / "_arviz.py")
compat = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compat)


class _FakeMCMC:
    """What ``from_pyro`` reads of a ``pyro.infer.MCMC``: samples and extra fields grouped by chain."""

    def __init__(self, rng):
        self.samples = {"a": rng.normal(size=(4, 200)), "b": rng.normal(size=(4, 200, 3))}

    def get_samples(self, group_by_chain=False):
        assert group_by_chain
        return self.samples

    def get_extra_fields(self, group_by_chain=False):
        return {"diverging": np.zeros((4, 200), dtype=bool)}


def main(expected_khat):
    rng = np.random.default_rng(0)
    # iid draws: ESS near chains x draws = 800, R-hat near 1
    data = compat.from_dict(posterior={"a": rng.normal(size=(4, 200)), "b": rng.normal(size=(4, 200, 3))},
                            observed_data={"y": np.ones(3)})
    assert compat.is_inference_data(data), type(data)
    ess = compat.ess(data)
    assert set(ess) == {"a", "b"} and ess["b"].shape == (3,), ess
    assert all(500 < float(v) < 1100 for v in np.concatenate([np.ravel(x) for x in ess.values()])), ess
    rhat = compat.rhat(data)
    assert all(abs(float(v) - 1) < 0.02 for v in np.concatenate([np.ravel(x) for x in rhat.values()])), rhat
    table = compat.summary(data, kind="diagnostics")
    assert {"ess_bulk", "ess_tail", "r_hat"} <= set(table.columns), list(table.columns)
    assert list(table.index) == ["a", "b[0]", "b[1]", "b[2]"], list(table.index)
    # the chains are not mixed: one chain shifted by 3 gives R-hat far above 1
    shifted = rng.normal(size=(4, 200))
    shifted[0] += 3.0
    assert float(compat.rhat(compat.from_dict(posterior={"a": shifted}))["a"]) > 1.2
    if compat.ARVIZ_MAJOR >= 1:  # 0.2x's from_pyro needs a real MCMC (tests/test_diagnostics.py)
        idata = compat.from_pyro(_FakeMCMC(rng))
        assert compat.is_inference_data(idata)
        assert compat.ess(idata)["b"].shape == (3,)
    # PSIS: log-normal weights of known scale; k-hat as arviz 0.2x gives it (within 0.03)
    log_weights = np.random.default_rng(1).normal(size=(6, 2000)) * np.array([0.3, 0.7, 1.0, 1.5, 2.0, 3.0])[:, None]
    smoothed, khat = compat.psislw(log_weights)
    assert smoothed.shape == (6, 2000) and khat.shape == (6,)
    assert np.all(np.diff(khat) > 0), khat  # heavier tails, larger k-hat
    np.testing.assert_allclose(khat, expected_khat, atol=0.03)
    print("ok", compat.arviz.__version__)


if __name__ == "__main__":
    main([float(x) for x in sys.argv[1:]])

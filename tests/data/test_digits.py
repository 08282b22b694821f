import torch

from pyro_deepgen.data import load_digits


def test_load_digits_shape_range_labels():
    x, y = load_digits()
    assert x.shape == (1797, 64) and x.dtype == torch.float32
    assert y.shape == (1797,) and y.dtype == torch.int64
    assert x.min() == 0 and x.max() == 1
    # the 17 grey levels 0..16 divided by 16
    assert torch.equal(torch.unique(x * 16), torch.arange(17, dtype=torch.float32))
    assert set(y.tolist()) == set(range(10))


def test_load_digits_binarized():
    x, _ = load_digits()
    xt, _ = load_digits(binarize="threshold")
    assert torch.equal(xt, (x > 0.5).float())
    xs, _ = load_digits(binarize="stochastic", seed=3)
    assert torch.equal(xs, load_digits(binarize="stochastic", seed=3)[0])
    assert set(xs.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(load_digits(binarize="dynamic")[0], x)

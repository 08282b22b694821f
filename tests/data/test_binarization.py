import pytest
import torch

from pyro_deepgen.data import binarize, binarize_split, dynamic_binarize


def _grey(n=2000, d=50, seed=0):
    return torch.rand(n, d, generator=torch.Generator().manual_seed(seed))


def test_none_and_dynamic_return_grey_values():
    x = _grey()
    assert binarize(x, None) is x
    assert binarize(x, "none") is x
    assert binarize(x, "dynamic") is x
    assert binarize_split(x, "dynamic", "train") is x


def test_threshold_is_exact():
    x = torch.tensor([[0.0, 0.25, 0.5, 0.5000001, 0.75, 1.0]], dtype=torch.float64)
    out = binarize(x, "threshold")
    assert out.dtype == torch.float64
    assert out.tolist() == [[0.0, 0.0, 0.0, 1.0, 1.0, 1.0]]


def test_stochastic_is_reproducible_and_seeded():
    x = _grey()
    a = binarize(x, "stochastic", seed=1)
    assert torch.equal(a, binarize(x, "stochastic", seed=1))  # same draw every call
    torch.manual_seed(123)  # the global RNG does not matter
    assert torch.equal(a, binarize(x, "stochastic", seed=1))
    assert not torch.equal(a, binarize(x, "stochastic", seed=2))
    assert set(a.unique().tolist()) == {0.0, 1.0}


def test_stochastic_limits_and_mean():
    """Probabilities 0 and 1 give 0 and 1; the mean of 100000 draws of p=0.3 is 0.3 +- 0.006
    (4.1 standard errors of sqrt(0.21 / 1e5) = 0.00145)."""
    x = torch.tensor([0.0, 1.0]).repeat(1000)
    assert torch.equal(binarize(x, "stochastic"), x)
    p = torch.full((100000,), 0.3)
    assert abs(binarize(p, "stochastic", seed=4).mean().item() - 0.3) < 0.006


def test_dynamic_split_test_is_fixed_draw():
    x = _grey()
    assert torch.equal(binarize_split(x, "dynamic", "test", seed=7), binarize(x, "stochastic", 7))
    assert torch.equal(binarize_split(x, "threshold", "test"), binarize(x, "threshold"))


def test_dynamic_binarize_differs_across_generators_and_has_mean_x():
    """2000x50 draws: each pixel's mean over 400 draws is within 5 standard errors of x, and
    the overall mean of (draw - x) is within 0.002 (about 8 standard errors of 2.5e-4)."""
    x = _grey(40, 50, seed=1)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    a, b = dynamic_binarize(x, g1), dynamic_binarize(x, g2)
    assert not torch.equal(a, b)
    assert not torch.equal(a, dynamic_binarize(x, g1))  # the generator advances: a fresh draw
    assert torch.equal(a, dynamic_binarize(x, torch.Generator().manual_seed(0)))
    draws = torch.stack([dynamic_binarize(x, g1) for _ in range(400)])
    mean = draws.mean(0)
    stderr = (x * (1 - x) / 400).sqrt().clamp(min=1e-3)
    assert ((mean - x).abs() <= 5 * stderr).all()
    assert abs((mean - x).mean().item()) < 0.002


def test_bad_method_and_inputs():
    x = _grey(3, 3)
    with pytest.raises(ValueError, match="binarize must be one of None, 'threshold'"):
        binarize(x, "otsu")
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        binarize_split(x, "dynamic", "val")
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        binarize(x * 16, "stochastic")
    with pytest.raises(TypeError, match="floating-point Tensor"):
        dynamic_binarize(torch.ones(3, dtype=torch.long))
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        dynamic_binarize(x, 0)

"""The compiled CPU kernels (pyro_deepgen/nn/cpu_kernels.c) against torch's float64 results:
sparse products (every block width and tail, weighted and empty rows, the too-dense fallback,
``out=``), 16-bit Bernoulli draws (frequencies, independence, seeding, thread counts), the fused
sigmoid / softplus pass; the build (cache folder, atomic write, a failing compiler) and the torch
fallbacks with the kernels switched off."""
import os

import pytest
import torch
from torch.nn import functional as F

from pyro_deepgen.energy.rbm import bernoulli_sample_16bit
from pyro_deepgen.energy._kernels import native
from pyro_deepgen.energy._kernels.sparse_matmul import sparse_rows_matmul, sparse_rows_matmul_t

needs_kernels = pytest.mark.skipif(native.library() is None,
                                   reason=f"no CPU kernels: {native.unavailable_reason()}")


@pytest.fixture
def reload_kernels():
    """Forget the loaded library before and after a test that changes how it is found."""
    native.library.cache_clear()
    yield
    native.library.cache_clear()


def sparse_values(n, k, density, weighted=True):
    x = (torch.rand(n, k) < density).float()
    return x * (torch.rand(n, k) * 3 - 1) if weighted else x


def test_kernels_are_built_or_say_why():
    assert native.library() is not None or native.unavailable_reason()


@needs_kernels
@pytest.mark.parametrize("k", [1, 9, 784])
@pytest.mark.parametrize("m", [1, 7, 31, 32, 33, 64, 65, 130, 500])
def test_sparse_products_equal_the_dense_ones(k, m):
    """float32 kernels against float64 dense products, to float32 rounding (1e-5 relative to the
    row norms): 13%-dense weighted left factor with an empty row, plus a bias."""
    torch.manual_seed(k * 1000 + m)
    x = sparse_values(23, k, 0.13)
    x[4] = 0
    table, other, bias = torch.randn(k, m), torch.randn(23, m), torch.randn(m)
    got = sparse_rows_matmul(x, table, bias=bias, max_density=1.0)
    want = torch.addmm(bias.double(), x.double(), table.double())
    assert got.dtype == torch.float32 and got.shape == (23, m)
    assert torch.allclose(got.double(), want, atol=1e-5 * (1 + want.abs().max().item()))
    got_t = sparse_rows_matmul_t(x, other, max_density=1.0)
    want_t = x.double().t() @ other.double()
    assert got_t.shape == (k, m) and got_t.is_contiguous()
    assert torch.allclose(got_t.double(), want_t, atol=1e-5 * (1 + want_t.abs().max().item()))


@needs_kernels
def test_sparse_products_edge_cases():
    """All-zero x; x above max_density (dense fallback, same result); ``out=`` into a slice of a
    bigger tensor; results identical (bitwise) with 1 and 2 threads."""
    torch.manual_seed(0)
    table, other = torch.randn(50, 70), torch.randn(8, 70)
    zero = torch.zeros(8, 50)
    assert torch.equal(sparse_rows_matmul(zero, table), torch.zeros(8, 70))
    assert torch.equal(sparse_rows_matmul_t(zero, other), torch.zeros(50, 70))
    dense = torch.rand(8, 50)
    assert torch.allclose(sparse_rows_matmul(dense, table), dense @ table, atol=1e-5)
    assert torch.allclose(sparse_rows_matmul_t(dense, other), dense.t() @ other, atol=1e-5)
    x = sparse_values(8, 50, 0.2)
    buffer = torch.full((20, 70), 7.0)
    result = sparse_rows_matmul(x, table, out=buffer[5:13])
    assert result.data_ptr() == buffer[5:13].data_ptr()
    assert torch.allclose(buffer[5:13], x @ table, atol=1e-5)
    assert (buffer[:5] == 7).all() and (buffer[13:] == 7).all()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = sparse_rows_matmul(x, table), sparse_rows_matmul_t(x, other)
        torch.set_num_threads(2)
        two = sparse_rows_matmul(x, table), sparse_rows_matmul_t(x, other)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])
    with pytest.raises(ValueError, match="out must have shape"):
        sparse_rows_matmul(x, table, out=torch.empty(8, 69))
    with pytest.raises(ValueError, match=r"x \(n, k\) and other \(n, m\)"):
        sparse_rows_matmul_t(x, torch.randn(9, 70))


@needs_kernels
@pytest.mark.parametrize("p", [0.0, 1e-3, 0.3, 0.5, 0.99, 1.0])
def test_bernoulli_kernel_frequencies(p):
    """200,000 draws (shape 25,000 x 8) per p: the mean is the documented on-probability
    q = ceil(2^16 p) / 2^16 within 5 standard errors (a false failure about once in 3.5
    million); p = 0 never and p = 1 always fires (also in 2.5 million more draws); every one of
    the 8 positions of a vector step (four 16-bit lanes of two words) has the right mean within
    5 s.e. of its 25,000 draws."""
    torch.manual_seed(3)
    n = 25_000
    probs = torch.full((n, 8), p)
    draws = bernoulli_sample_16bit(probs)
    assert draws.dtype == torch.float32 and set(draws.unique().tolist()) <= {0.0, 1.0}
    q = torch.ceil(torch.tensor(p * 65536.0, dtype=torch.float64)).item() / 65536.0
    if q in (0.0, 1.0):  # exact; 2.5 million more draws (u <= 2^16 p would fire ~38 times)
        assert draws.mean().item() == q
        assert bernoulli_sample_16bit(torch.full((2_500_000,), p)).mean().item() == q
        return
    se = (q * (1 - q) / draws.numel()) ** 0.5
    assert abs(draws.mean().item() - q) < 5 * se
    lane_se = (q * (1 - q) / n) ** 0.5
    assert (draws.mean(0) - q).abs().max().item() < 5 * lane_se


@needs_kernels
def test_bernoulli_kernel_independence_seeding_and_threads():
    """At p = 1/2, 400,000 draws: the correlation of neighbours in the stream (lag 1, same word)
    and of lags 4 and 8 (next words) is below 5/sqrt(N) (a false failure about once in 3.5
    million each). The same torch seed gives the same draws, with 1 or 2 threads; a different
    seed gives different ones. A tensor whose size is not a multiple of 8 continues the same
    stream (its first 13 draws equal those of a 16-draw tensor)."""
    probs = torch.full((400_000,), 0.5)
    torch.manual_seed(11)
    u = bernoulli_sample_16bit(probs) - 0.5
    for lag in (1, 4, 8):
        corr = (u[:-lag] * u[lag:]).mean().item() / 0.25
        assert abs(corr) < 5 / len(u) ** 0.5, lag
    threads = torch.get_num_threads()
    try:
        draws = []
        for t in (1, 2):
            torch.set_num_threads(t)
            torch.manual_seed(5)
            draws.append(bernoulli_sample_16bit(probs))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(draws[0], draws[1])
    torch.manual_seed(6)
    assert not torch.equal(bernoulli_sample_16bit(probs), draws[0])
    torch.manual_seed(8)
    short = bernoulli_sample_16bit(probs[:13])
    torch.manual_seed(8)
    assert torch.equal(short, bernoulli_sample_16bit(probs[:16])[:13])
    out = torch.empty(3, 5)
    assert bernoulli_sample_16bit(torch.full((3, 5), 0.5), out=out) is out
    with pytest.raises(ValueError, match="out must have shape"):
        bernoulli_sample_16bit(torch.full((3, 5), 0.5), out=torch.empty(15))


@needs_kernels
@pytest.mark.parametrize("width", [1, 7, 8, 9, 507])
def test_sigmoid_softplus_kernel(width):
    """sigmoid(x) within 2e-7 and the rows' softplus sums within 1e-6 relative of torch's float64
    values, for inputs from -100 to 100 (the vector path and the scalar tail); NaN entries give
    NaN in both outputs, +-inf the limits."""
    torch.manual_seed(width)
    x = torch.cat([torch.randn(40, width) * 10, torch.randn(40, width) * 1e-3,
                   torch.linspace(-100, 100, 3 * width).reshape(3, width)])
    probs, sums = torch.empty_like(x), torch.empty(len(x), dtype=torch.float64)
    assert native.sigmoid_softplus(x, probs, sums)
    assert (probs.double() - torch.sigmoid(x.double())).abs().max().item() < 2e-7
    want = F.softplus(x.double()).sum(-1)
    assert ((sums - want).abs() / want.abs().clamp(min=1e-3)).max().item() < 1e-6
    special = torch.tensor([[float("nan")] + [0.0] * (width - 1), [float("inf")] * width,
                            [-float("inf")] * width])
    probs, sums = torch.empty_like(special), torch.empty(3, dtype=torch.float64)
    native.sigmoid_softplus(special, probs, sums)
    assert probs[0, 0].isnan() and sums[0].isnan()
    assert (probs[1] == 1).all() and sums[1] == float("inf")
    assert probs[2].abs().max() < 1e-30 and sums[2].abs() < 1e-30


def test_kernels_build_into_the_cache_folder(tmp_path, monkeypatch, reload_kernels):
    """A fresh cache folder gets the compiled library (and no temporary file); a compiler that
    fails leaves no library and a reason that names the failure."""
    if native.library() is None:
        pytest.skip(f"no CPU kernels: {native.unavailable_reason()}")
    native.library.cache_clear()
    monkeypatch.setenv("PYRO_DEEPGEN_CACHE", str(tmp_path / "ok"))
    assert native.library() is not None
    assert [p.suffix for p in (tmp_path / "ok").iterdir()] == [".so"]
    native.library.cache_clear()
    monkeypatch.setenv("PYRO_DEEPGEN_CACHE", str(tmp_path / "broken"))
    monkeypatch.setenv("CC", "false")
    assert native.library() is None
    assert "failed" in native.unavailable_reason()
    assert list((tmp_path / "broken").iterdir()) == []


def test_torch_fallbacks_when_switched_off(monkeypatch, reload_kernels):
    """PYRO_DEEPGEN_NATIVE=0: no library, and the products, the Bernoulli draws and a CD step
    still work (torch's embedding_bag / dense products and 64-bit draws)."""
    monkeypatch.setenv("PYRO_DEEPGEN_NATIVE", "0")
    assert native.library() is None and "PYRO_DEEPGEN_NATIVE=0" in native.unavailable_reason()
    x, table, other = sparse_values(6, 20, 0.2), torch.randn(20, 9), torch.randn(6, 9)
    assert torch.allclose(sparse_rows_matmul(x, table), x @ table, atol=1e-5)
    assert torch.allclose(sparse_rows_matmul_t(x, other), x.t() @ other, atol=1e-5)
    draws = bernoulli_sample_16bit(torch.full((10_000,), 0.25))
    assert abs(draws.mean().item() - 0.25) < 5 * (0.25 * 0.75 / 10_000) ** 0.5
    probs, sums = torch.empty(2, 3), torch.empty(2, dtype=torch.float64)
    assert not native.sigmoid_softplus(torch.zeros(2, 3), probs, sums)
    assert os.environ["PYRO_DEEPGEN_NATIVE"] == "0"

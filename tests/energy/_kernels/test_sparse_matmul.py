"""sparse_rows_matmul: equal to the dense product (binary and weighted left factors, empty rows,
all-zero input, dense fallback), and the RBM code path (AIS) that uses it."""
import pytest
import torch

from pyro_deepgen.energy import RBM
from pyro_deepgen.energy._kernels.sparse_matmul import sparse_rows_matmul


def sparse_binary(n, k, density, dtype=torch.float64, device="cpu"):
    return (torch.rand(n, k, device=device) < density).to(dtype)


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("density", [0.0, 0.1, 0.9])
def test_equals_the_dense_product(device, binary, density):
    x = sparse_binary(30, 40, density, device=device)
    x[3] = 0  # an empty row is an empty bag: a zero row
    if not binary:
        x = x * torch.rand_like(x) * 3  # weighted nonzeros
    table = torch.randn(40, 7, dtype=torch.float64, device=device)
    got = sparse_rows_matmul(x, table, binary=binary)
    assert got.shape == (30, 7)
    assert torch.allclose(got, x @ table, atol=1e-12)


def test_non_contiguous_table_and_bad_shapes():
    x = sparse_binary(6, 8, 0.2)
    table = torch.randn(5, 8, dtype=torch.float64).t()  # not contiguous: dense product
    assert torch.allclose(sparse_rows_matmul(x, table, binary=True), x @ table)
    with pytest.raises(ValueError, match=r"x \(n, k\) and table \(k, m\)"):
        sparse_rows_matmul(x, torch.randn(7, 3, dtype=torch.float64))


def test_rbm_weight_layout_survives_dtype_and_state_dict():
    """RBM.weight is stored as the transpose of a (V, H) array so that W^T's rows are contiguous
    (the sparse path); conversions and state_dict loading keep that layout."""
    rbm = RBM(12, 5)
    assert rbm.weight.shape == (5, 12) and rbm.weight.t().is_contiguous()
    rbm = rbm.double()
    assert rbm.weight.t().is_contiguous()
    other = RBM(12, 5).double()
    other.load_state_dict(rbm.state_dict())
    assert other.weight.t().is_contiguous() and torch.equal(other.weight, rbm.weight)


def test_rbm_hidden_input_of_states_equals_hidden_input(device):
    """The RBM's sparse-path hidden input equals the dense c + W v (binary and grey states);
    Gaussian visible units and batched (3-D) states take the dense path."""
    rbm = RBM(50, 6).to(device, torch.float64)
    v = sparse_binary(8, 50, 0.1, device=device)
    assert torch.allclose(rbm.hidden_input_of_states(v, binary=True), rbm.hidden_input(v))
    assert torch.allclose(rbm.hidden_input_of_states(0.3 * v), rbm.hidden_input(0.3 * v))
    v3 = v.expand(2, 8, 50)
    assert torch.allclose(rbm.hidden_input_of_states(v3, binary=True), rbm.hidden_input(v3))
    gauss = RBM(50, 6, visible="gaussian").to(device, torch.float64)
    assert torch.allclose(gauss.hidden_input_of_states(v), gauss.hidden_input(v))

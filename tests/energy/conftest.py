"""Shared checks of the energy-model tests."""
import pytest
import torch


@pytest.fixture
def assert_cd_matches_autograd():
    """``check(rbm, cd, v)``: one call of the contrastive-divergence loss ``cd`` on data ``v``
    returns the free-energy gap sum_n F(v_n) - s sum_m F(v~_m) of the negative samples it drew
    (``cd.last_negative``, s = B / M), and its gradient is autograd's gradient of that gap
    under ``rbm``'s own free energy (to ``atol``). Returns the loss's gradients (weight,
    visible bias, hidden bias), the negatives and s."""
    def check(rbm, cd, v, atol=1e-10):
        params = (rbm.weight, rbm.visible_bias, rbm.hidden_bias)
        rbm.zero_grad()
        loss = cd(rbm, None, v)
        loss.backward()
        got = [p.grad.clone() for p in params]
        v_neg = cd.last_negative
        s = len(v) / len(v_neg)
        rbm.zero_grad()
        surrogate = rbm.free_energy(v).sum() - s * rbm.free_energy(v_neg).sum()
        surrogate.backward()
        assert torch.allclose(loss, surrogate, atol=atol)
        for g, p in zip(got, params):
            assert torch.allclose(g, p.grad, atol=atol)
        return got, v_neg, s

    return check

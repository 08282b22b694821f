"""Helpers of pyro_deepgen.infer.util."""
import math

import pytest
import torch

from pyro_deepgen.infer.util import chunked_log_mean_exp, log_mean_exp


@pytest.mark.parametrize("chunk_size", [None, 1, 3, 7, 100])
def test_chunked_log_mean_exp_equals_the_unchunked_one(chunk_size):
    """Log weights handed out in chunks (7 = 3 + 3 + 1, ...) give the same log-mean-exp as all
    at once, including weights hundreds of nats apart (float64, 1e-12)."""
    weights = torch.tensor([[0.0, -500.0], [2.0, -800.0], [-1.0, -501.0], [0.5, -499.0],
                            [3.0, -700.0], [1.0, -600.0], [-2.0, -502.0]], dtype=torch.float64)
    start = [0]

    def log_weights(k):
        out = weights[start[0]:start[0] + k]
        start[0] += k
        return out

    got = chunked_log_mean_exp(log_weights, 7, chunk_size)
    assert start[0] == 7
    assert torch.allclose(got, log_mean_exp(weights), atol=1e-12)
    assert got[1].item() == pytest.approx(math.log(sum(math.exp(w + 500) for w in
                                                       weights[:, 1].tolist()) / 7) - 500)
    with pytest.raises(ValueError, match="num_samples"):
        chunked_log_mean_exp(log_weights, 0)

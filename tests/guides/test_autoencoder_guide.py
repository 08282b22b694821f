"""``guides.AutoencoderGuide``: with the Delta guide, Trace_ELBO is the regularized reconstruction
objective up to constants (values and gradients); with a Gaussian guide around the same encoder,
importance sampling recovers the exact log p(x) of a linear-Gaussian autoencoder model, which the
Delta guide cannot."""
import math

import pytest
import torch
from pyro.infer import Trace_ELBO
from torch import nn

from pyro_deepgen.evaluate import log_likelihood
from pyro_deepgen.guides import AutoencoderGuide
from pyro_deepgen.models import L1, Autoencoder


def data(n=7, d=5, seed=0):
    return torch.rand(n, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("penalties,loss", [((), "squared"), ((L1(0.3),), "squared"), ((L1(0.7),), "bernoulli")])
def test_trace_elbo_with_the_delta_guide_is_the_objective_plus_constants(penalties, loss):
    torch.manual_seed(0)
    ae = Autoencoder.one_layer(5, 3, "tanh", loss=loss, penalties=penalties).double()
    x = data()
    guide = AutoencoderGuide(ae.encoder)
    neg_elbo = Trace_ELBO().differentiable_loss(ae.model, guide, x)
    code = ae.encode(x)
    extra = 0.0 if penalties else 0.5 * code.pow(2).sum()  # the N(0, I) prior's -log p(z) without its constant
    const = len(x) * (ae.log_prior_constant(3) + ae.likelihood_constant(5))
    objective = Autoencoder.loss(ae, None, x) + extra
    assert torch.allclose(neg_elbo, objective + const, rtol=1e-12)
    # hence the same gradients: training with Trace_ELBO and this guide is training the autoencoder
    g_elbo = torch.autograd.grad(neg_elbo, list(ae.parameters()))
    g_obj = torch.autograd.grad(objective, list(ae.parameters()))
    for a, b in zip(g_elbo, g_obj):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def exact_log_px(ae, x):
    """Linear-Gaussian truth: z ~ N(0, I), x | z ~ N(Dz + c, I/2)  =>  x ~ N(c, D D^T + I/2)."""
    D, c = ae.decoder.weight, ae.decoder.bias
    cov = D @ D.T + 0.5 * torch.eye(D.shape[0], dtype=D.dtype)
    return torch.distributions.MultivariateNormal(c, cov).log_prob(x)


def test_gaussian_guide_importance_sampling_recovers_log_px_and_the_delta_guide_does_not():
    torch.manual_seed(1)
    ae = Autoencoder.linear(5, 2).double()
    x = data(n=6, seed=2)
    truth = exact_log_px(ae, x)
    # the encoder set to the exact posterior mean m(x) = S 2 D^T (x - c), S = (I + 2 D^T D)^-1
    D, c = ae.decoder.weight.detach(), ae.decoder.bias.detach()
    S = torch.linalg.inv(torch.eye(2, dtype=D.dtype) + 2 * D.T @ D)
    with torch.no_grad():
        ae.encoder.weight.copy_(2 * S @ D.T)
        ae.encoder.bias.copy_(-2 * S @ D.T @ c)
    scale = 1.2 * torch.linalg.eigvalsh(S).max().sqrt().item()  # a little wider than the posterior
    torch.manual_seed(3)
    # K = 4000 samples of a 2-D proposal close to the posterior: the estimate's error is far
    # below 0.01 nats per point
    est = log_likelihood(ae.model, AutoencoderGuide(ae.encoder, scale=scale), x, num_samples=4000)
    assert torch.allclose(est, truth, atol=0.01)
    # the Delta guide's "estimate" is log p(x, Φ(x)) for every K: not log p(x), and K does not help
    delta = AutoencoderGuide(ae.encoder)
    one = log_likelihood(ae.model, delta, x, num_samples=1)
    many = log_likelihood(ae.model, delta, x, num_samples=500)
    assert torch.allclose(one, many, rtol=1e-12)
    code = ae.encode(x)
    log_joint = (torch.distributions.Normal(0.0, 1.0).log_prob(code).sum(-1)
                 + torch.distributions.Normal(ae.decoder(code), math.sqrt(0.5)).log_prob(x).sum(-1))
    assert torch.allclose(one, log_joint, rtol=1e-10)
    # at the posterior mean, log p(x, m) = log p(x) + log N(m; m, S) = log p(x) - log det(2 pi S) / 2
    gap = -0.5 * torch.logdet(2 * math.pi * S)
    assert torch.allclose(one, truth + gap, rtol=1e-10) and gap.abs() > 0.1


def test_guide_arguments_and_site():
    enc = nn.Linear(3, 2)
    assert AutoencoderGuide(enc, site="code").site == "code"
    with pytest.raises(ValueError, match="scale must be a finite number > 0"):
        AutoencoderGuide(enc, scale=0.0)
    with pytest.raises(ValueError, match="encoder must be a torch.nn.Module"):
        AutoencoderGuide(lambda x: x)
    with pytest.raises(ValueError, match="site must be a non-empty string"):
        AutoencoderGuide(enc, site="")

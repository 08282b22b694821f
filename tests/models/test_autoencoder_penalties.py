"""``models.autoencoder_penalties``: the contractive penalty (closed form, torch.func Jacobian,
Hutchinson) against the autograd Jacobian, L1 and the denoising corruptions."""
import pytest
import torch
from torch import nn

from pyro_deepgen.models.autoencoder_penalties import L1, Contractive, Denoising, jacobian_frobenius_sq, one_layer


def autograd_frobenius_sq(encoder, x):
    """The truth: ‖J‖_F² from torch.autograd.functional.jacobian, one point at a time."""
    return torch.stack([torch.autograd.functional.jacobian(encoder, xi).pow(2).sum() for xi in x])


def encoders():
    torch.manual_seed(0)
    return {name: nn.Sequential(nn.Linear(7, 5), act).double()
            for name, act in [("sigmoid", nn.Sigmoid()), ("tanh", nn.Tanh()), ("relu", nn.ReLU())]}


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("method", ["closed_form", "jacobian", "auto"])
def test_exact_methods_equal_the_autograd_jacobian(name, method):
    encoder = encoders()[name]
    x = torch.randn(6, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    got = jacobian_frobenius_sq(encoder, x, method)
    assert got.shape == (6,)
    assert torch.allclose(got, autograd_frobenius_sq(encoder, x), rtol=1e-10, atol=1e-12)


def test_jacobian_method_handles_a_deep_encoder_and_closed_form_refuses_it():
    torch.manual_seed(0)
    deep = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3), nn.Softplus()).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    assert one_layer(deep) is None
    assert torch.allclose(jacobian_frobenius_sq(deep, x, "auto"), autograd_frobenius_sq(deep, x), rtol=1e-10)
    with pytest.raises(ValueError, match="closed_form.*one-layer encoder"):
        jacobian_frobenius_sq(deep, x, "closed_form")


@pytest.mark.parametrize("method", ["closed_form", "jacobian"])
def test_penalty_gradients_match_autograd(method):
    """The penalty is differentiable in the encoder's weights: its gradient equals that of the
    autograd-Jacobian truth (built with create_graph)."""
    encoder = encoders()["sigmoid"]
    x = torch.randn(4, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    w = encoder[0].weight
    (g,) = torch.autograd.grad(jacobian_frobenius_sq(encoder, x, method).sum(), w)
    truth = sum(torch.autograd.functional.jacobian(encoder, xi, create_graph=True).pow(2).sum() for xi in x)
    (g_truth,) = torch.autograd.grad(truth, w)
    assert torch.allclose(g, g_truth, rtol=1e-8)


def test_hutchinson_is_unbiased_and_its_spread_shrinks_with_probes():
    """Seeded: 4000 Rademacher probes per point; the mean is within 4 standard errors of the exact
    value (standard error estimated from the same probes); one probe has the stated spread."""
    encoder = encoders()["tanh"]
    x = torch.randn(3, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    exact = autograd_frobenius_sq(encoder, x)
    torch.manual_seed(4)
    singles = torch.stack([jacobian_frobenius_sq(encoder, x, "hutchinson", probes=1) for _ in range(4000)])
    se = singles.std(0) / 4000 ** 0.5
    assert ((singles.mean(0) - exact).abs() < 4 * se).all()
    # variance of one Rademacher probe: 2 sum_{j != k} (J J^T)_{jk}^2
    jac = torch.stack([torch.autograd.functional.jacobian(encoder, xi) for xi in x])
    gram = jac @ jac.transpose(1, 2)
    var = 2 * (gram.pow(2).sum((1, 2)) - gram.diagonal(dim1=1, dim2=2).pow(2).sum(-1))
    assert torch.allclose(singles.var(0), var, rtol=0.15)  # 4000 draws: var of a variance estimate ~ 5%
    many = jacobian_frobenius_sq(encoder, x, "hutchinson", probes=64)
    assert many.shape == (3,)


def test_contractive_l1_and_denoising_values():
    encoder = encoders()["sigmoid"]
    x = torch.randn(5, 7, dtype=torch.float64)
    code = encoder(x)
    assert torch.allclose(Contractive(0.3).value(encoder, x, code), 0.3 * autograd_frobenius_sq(encoder, x))
    assert torch.allclose(L1(0.5).value(encoder, x, code), 0.5 * code.abs().sum(-1))
    torch.manual_seed(0)
    big = torch.ones(200, 50)
    masked = Denoising("masking", 0.25).corrupt(big)
    assert set(masked.unique().tolist()) <= {0.0, 1.0}
    assert abs((masked == 0).double().mean().item() - 0.25) < 0.02  # 10000 Bernoulli(0.25): sd 0.004
    noisy = Denoising("gaussian", 0.5).corrupt(big)
    assert abs((noisy - big).std().item() - 0.5) < 0.02
    assert torch.equal(Denoising("gaussian", 0.0).corrupt(big), big)
    assert torch.equal(L1(1.0).corrupt(big), big)


@pytest.mark.parametrize("make,match", [
    (lambda: L1(-1.0), "lam must be a finite number >= 0"),
    (lambda: Contractive(0.1, method="svd"), "method='svd' is not known"),
    (lambda: Contractive(0.1, method="hutchinson", probes=0), "probes must be a positive integer"),
    (lambda: Denoising("salt"), "corruption='salt' is not known"),
    (lambda: Denoising("masking", 1.0), r"level must be a masking probability in \[0, 1\)"),
    (lambda: Denoising("gaussian", float("nan")), "level must be a finite number"),
])
def test_bad_arguments_are_one_line_errors(make, match):
    with pytest.raises(ValueError, match=match) as e:
        make()
    assert "\n" not in str(e.value)

"""NADE, MADE and PixelCNN against truth: normalization over all 2^D vectors, the autoregressive
property by autograd Jacobian, samples against the enumerated probabilities, the ensemble as the
log-mean-exp over its masks, Pyro's contract, and the argument checks."""
import itertools

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO
from scipy import stats

from pyro_deepgen.distributions import MADE, NADE, AutoregressiveBernoulli, PixelCNN
from pyro_deepgen.nn.masks import conv_mask, made_degrees, made_masks


def _all(d):
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=d)), dtype=torch.float64)


def _randomized(module, seed=0):
    """Large random weights, so that every conditional matters (float64 for exact sums)."""
    torch.manual_seed(seed)
    module = module.double()
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 1.0)
    return module


MODELS = {
    "nade": lambda: NADE(8, 6),
    "nade-order": lambda: NADE(9, 4, order=torch.randperm(9, generator=torch.Generator().manual_seed(1))),
    "made-narrow": lambda: MADE(9, (6, 5), seed=1),  # hidden layers narrower than D
    "made-random-order": lambda: MADE(10, (16,), random_order=True, seed=3),
    "made-ensemble": lambda: MADE(8, (12, 12), num_masks=4).eval(),
    "pixelcnn": lambda: PixelCNN(3, channels=6, layers=2, kernel_size=3),
    "pixelcnn-5x5": lambda: PixelCNN(3, channels=4, layers=1, kernel_size=5),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_normalized_over_all_binary_vectors(name):
    model = _randomized(MODELS[name]())
    x = _all(model.dim)
    lp = model().log_prob(x)
    assert lp.shape == (2 ** model.dim,)
    assert torch.logsumexp(lp, 0).item() == pytest.approx(0.0, abs=1e-10)


def test_each_mask_of_the_ensemble_is_normalized_and_the_ensemble_is_their_log_mean_exp():
    made = _randomized(MADE(8, (6,), num_masks=3, seed=5)).eval()
    x = _all(8)
    per_mask = torch.stack([made(masks=[k]).log_prob(x) for k in range(3)])
    assert torch.allclose(torch.logsumexp(per_mask, 1), torch.zeros(3, dtype=torch.float64), atol=1e-10)
    expected = per_mask.logsumexp(0) - torch.log(torch.tensor(3.0, dtype=torch.float64))
    assert torch.allclose(made().log_prob(x), expected, atol=1e-12)
    assert not torch.allclose(per_mask[0], per_mask[1])  # the masks are different models
    orders = [made.order(k).tolist() for k in range(3)]
    assert len({tuple(o) for o in orders}) == 3
    made.train()  # in training, one mask: the current one
    assert made().masks == (made.current_mask(),)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_autoregressive_property_by_jacobian(name):
    model = _randomized(MODELS[name]())
    x = _all(model.dim)[torch.randperm(2 ** model.dim)[:8]]
    for k in range(model.num_masks):
        order = model.order(k)
        position = order.argsort()  # position[d]: where dimension d comes in the ordering
        allowed = position[None, :] < position[:, None]  # d depends on j only if j comes before d
        used = torch.zeros_like(allowed)
        for row in x:
            jac = torch.autograd.functional.jacobian(lambda v: model.logits(v, None, k), row)
            assert (jac[~allowed] == 0).all(), (name, k)
            used |= jac != 0
        assert used.any()  # and it does depend on something (ReLUs may be off at a given x)


@pytest.mark.parametrize("name", ["nade", "made", "made-ensemble", "pixelcnn"])
def test_samples_match_the_enumerated_probabilities(name):
    """Chi-square test of 20000 samples against the enumerated probabilities of a tiny model
    (D = 3: 8 cells; the PixelCNN a 2x2 image: 16 cells), at level 1e-4 (the seed is fixed, so
    the test is deterministic; a correct sampler fails it for one seed in 10^4)."""
    torch.manual_seed(0)
    model = {"nade": lambda: NADE(3, 4, order=torch.tensor([2, 0, 1])),
             "made": lambda: MADE(3, (5,), random_order=True, seed=1),
             "made-ensemble": lambda: MADE(3, (5,), num_masks=3, seed=2).eval(),
             "pixelcnn": lambda: PixelCNN(2, 4, 1, 3)}[name]()
    model = _randomized(model, seed=1)
    n = 20000
    x = model().sample((n,))
    assert x.shape == (n, model.dim) and set(x.unique().tolist()) <= {0.0, 1.0}
    codes = (x * 2 ** torch.arange(model.dim - 1, -1, -1, dtype=x.dtype)).sum(-1).long()
    observed = torch.bincount(codes, minlength=2 ** model.dim).double()
    expected = model().log_prob(_all(model.dim)).exp().detach() * n
    chi2 = ((observed - expected) ** 2 / expected).sum().item()
    assert chi2 < stats.chi2.ppf(1 - 1e-4, 2 ** model.dim - 1), chi2


def test_distribution_shapes_context_and_pyro_contract():
    made = MADE(6, (8,), context_dim=2)
    z = torch.randn(5, 2)
    d = made(z)
    assert isinstance(d, AutoregressiveBernoulli) and not d.has_rsample
    assert d.batch_shape == (5,) and d.event_shape == (6,)
    assert d.sample((3,)).shape == (3, 5, 6) and d.log_prob(d.sample()).shape == (5,)
    assert d.expand((4, 5)).log_prob(torch.zeros(6)).shape == (4, 5)
    with pytest.raises(NotImplementedError):
        d.rsample()
    with pytest.raises(ValueError, match="context_dim"):
        made()
    with pytest.raises(ValueError, match="context_dim"):
        NADE(4, 3)(torch.randn(2))
    # different contexts, different distributions (the first dimension included)
    x = torch.zeros(2, 6)
    lp = MADE(6, (8,), context_dim=2)(torch.randn(2, 2)).log_prob(x)
    assert lp[0] != lp[1]


def test_inside_a_pyro_model_and_with_trace_elbo():
    nade = NADE(5, 4)
    x = torch.bernoulli(torch.full((7, 5), 0.5))
    trace = pyro.poutine.trace(nade.model).get_trace(x)
    trace.compute_log_prob()
    assert torch.allclose(trace.nodes["x"]["log_prob"], nade().log_prob(x))
    loss = Trace_ELBO().differentiable_loss(nade.model, nade.guide, x)
    assert torch.allclose(loss, -nade().log_prob(x).sum())


def test_order_agnostic_training_cycles_the_masks():
    made = MADE(4, (8,), num_masks=3, resample_every=2)
    x = torch.zeros(2, 4)
    seen = []
    for _ in range(6):
        made.model(x)
        seen.append(made.current_mask())
    assert seen == [0, 1, 1, 2, 2, 0]
    made.resample_masks()
    assert made.current_mask() == 1
    with torch.no_grad():  # validation does not advance the masks
        made.model(x)
    assert made.current_mask() == 1
    assert "input_degrees" in made.state_dict() and "mask0" in made.state_dict()


def test_to_moves_masks_and_parameters():
    made = MADE(4, (8,), num_masks=2).to(torch.float64)
    assert made.mask0.dtype == torch.float64 and made().sample((2,)).dtype == torch.float64


def test_mask_utilities():
    m0 = torch.tensor([3, 1, 2])
    hidden = made_degrees(m0, (2,))
    masks = made_masks(m0, hidden)
    assert [m.shape for m in masks] == [(2, 3), (3, 2)]
    assert conv_mask(3, "A").tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert conv_mask(3, "B").tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]
    with pytest.raises(ValueError, match="mask_type"):
        conv_mask(3, "C")


@pytest.mark.parametrize("make,match", [
    (lambda: NADE(0, 4), "dim"),
    (lambda: NADE(4, 2.5), "hidden"),
    (lambda: NADE(3, 4, order=[0, 0, 1]), "order must be a permutation"),
    (lambda: MADE(4, ()), "hidden_dims"),
    (lambda: MADE(4, (8,), num_masks=0), "num_masks"),
    (lambda: MADE(4, (8,), context_dim=-1), "context_dim"),
    (lambda: PixelCNN(3, kernel_size=4), "kernel_size"),
    (lambda: PixelCNN(0), "side"),
    (lambda: MADE(4, (8,))(masks=[1]), "masks"),
])
def test_bad_arguments_are_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("make", [lambda d: MADE(d, (64,), num_masks=2), lambda d: NADE(d, 32)])
def test_fit_with_trace_elbo_lowers_the_exact_nll_on_digits(make):
    from pyro_deepgen.data import load_train_test
    from pyro_deepgen.train import fit

    data = load_train_test("digits", binarize="threshold", seed=0)
    torch.manual_seed(0)
    model = make(data.x_train.shape[1])
    model.eval()
    with torch.no_grad():
        before = -model().log_prob(data.x_test).mean().item()
    model.train()
    pyro.clear_param_store()
    history = fit(model.model, model.guide, data.x_train, loss=Trace_ELBO(), epochs=4, batch_size=100,
                  lr=1e-2, progress=False)
    model.eval()
    with torch.no_grad():
        after = -model().log_prob(data.x_test).mean().item()
    assert history.loss[-1] < history.loss[0]
    assert after < before - 10  # nats per image; 64 pixels start near 64 log 2 = 44


@pytest.mark.parametrize("make", [lambda: NADE(6, 8, context_dim=1), lambda: MADE(6, (8,), context_dim=1),
                                  lambda: PixelCNN(2, 4, 1, 3, context_dim=1)])
def test_autoregressive_vae_decoder_scored_by_log_likelihood(make):
    """A VAE with z ~ N(0, 1) and an autoregressive p(x|z): the package's importance-sampled
    log_likelihood (proposal = prior, K = 20000) matches log p(x) by quadrature over z."""
    from pyro_deepgen.evaluate import log_likelihood

    decoder = _randomized(make(), seed=2)
    dim = decoder.dim

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", pyro.distributions.Normal(torch.zeros(1, dtype=x.dtype), 1.0).to_event(1))
            pyro.sample("x", decoder(z), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", pyro.distributions.Normal(torch.zeros(1, dtype=x.dtype), 1.0).to_event(1))

    x = _all(dim)[[0, 5, 2 ** dim - 1]]
    pyro.set_rng_seed(0)
    with torch.no_grad():
        estimate = log_likelihood(model, guide, x, num_samples=20000)
        z = torch.linspace(-9, 9, 4001, dtype=torch.float64)[:, None]
        log_joint = decoder(z[:, None, :]).log_prob(x) + pyro.distributions.Normal(0.0, 1.0).log_prob(z)
        exact = torch.logsumexp(log_joint, 0) + torch.log(z[1, 0] - z[0, 0])
    assert torch.allclose(estimate, exact, atol=0.05), (estimate, exact)


def test_nade_custom_backward_matches_autograd_of_the_plain_formula():
    """NADE's hand-derived O(DH) backward against autograd through the direct formula
    h_d = sigmoid(c + sum_{j<d} W_j x_j) (float64, a random order, with a context)."""
    nade = _randomized(NADE(7, 5, context_dim=3, order=torch.randperm(7, generator=torch.Generator().manual_seed(1))))
    x = (torch.rand(4, 7, dtype=torch.float64) < 0.5).double().requires_grad_()
    z = torch.randn(4, 3, dtype=torch.float64)
    g = torch.randn(4, 7, dtype=torch.float64)
    o = nade._order
    xo = x[:, o]
    strict = torch.tril(torch.ones(7, 7, dtype=torch.float64), -1)  # [j < d]
    a = torch.einsum("dj,bj,jh->bdh", strict, xo, nade.W[o]) + nade._bias(z)[:, None]
    expected = ((torch.sigmoid(a) * nade.V[o]).sum(-1) + nade.b[o])[:, nade._inverse]
    params = [x] + list(nade.parameters())
    got = nade.logits(x, z)
    assert torch.allclose(got, expected, atol=1e-12)
    for a_, b_ in zip(torch.autograd.grad(got, params, g), torch.autograd.grad(expected, params, g)):
        assert torch.allclose(a_, b_, atol=1e-10)


@pytest.mark.parametrize("context_dim", [None, 2])
def test_iaf_conditioner_is_autoregressive_with_hidden_narrower_than_input(context_dim):
    """The IAF's MADE network (built from pyro_deepgen.nn.masks) with a hidden layer narrower
    than the input, which pyro.nn.AutoRegressiveNN refuses: d(mean_i, log_scale_i)/dx_j = 0
    unless j comes before i in the permutation (autograd Jacobian)."""
    from pyro.nn import AutoRegressiveNN

    from pyro_deepgen.distributions.transforms.affine_autoregressive import MADEConditioner

    with pytest.raises(ValueError):
        AutoRegressiveNN(6, [3])
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    net = _randomized(MADEConditioner(6, [3, 4], permutation=perm, context_dim=context_dim))
    z = None if context_dim is None else torch.randn(context_dim, dtype=torch.float64)
    x = torch.randn(6, dtype=torch.float64)
    rank = perm.argsort()
    allowed = rank[None, :] < rank[:, None]  # [i, j]: j before i
    for k in range(2):
        jac = torch.autograd.functional.jacobian(lambda v: net(v, z)[k], x)
        assert torch.all(jac[~allowed] == 0)
    wide = _randomized(MADEConditioner(6, [30], permutation=perm))
    jac = torch.autograd.functional.jacobian(lambda v: wide(v)[0], x)
    assert torch.all(jac[allowed] != 0)  # wide enough: every allowed edge is used (the test can fail)

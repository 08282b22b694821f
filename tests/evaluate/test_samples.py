"""The offline sample metrics against truth: closed forms, exact densities, known stationary
marginals, and seeded Monte Carlo with stated sizes and tolerances."""
import math

import numpy as np
import pytest
import scipy.linalg
import torch

from pyro_deepgen.data import load_train_test
from pyro_deepgen.evaluate.coverage import class_coverage
from pyro_deepgen.evaluate.csl import bernoulli_csl, bernoulli_log_prob_matrix
from pyro_deepgen.evaluate.features import accuracy, cached_classifier, classifier_features
from pyro_deepgen.evaluate.frechet import frechet_distance, gaussian_frechet_distance
from pyro_deepgen.evaluate.parzen import ParzenBiasWarning, parzen_log_prob, parzen_window, select_sigma
from pyro_deepgen.evaluate.samples import score_samples
from pyro_deepgen.evaluate.two_sample import classifier_two_sample_test, mmd2_unbiased, mmd_test


def _gen(seed):
    return torch.Generator().manual_seed(seed)


# -- Fréchet distance --------------------------------------------------------------------------
def test_frechet_of_a_sample_against_itself_is_zero():
    f = torch.randn(500, 6, generator=_gen(0)) @ torch.randn(6, 6, generator=_gen(1))
    assert frechet_distance(f, f) == pytest.approx(0.0, abs=1e-8)


def test_gaussian_frechet_matches_scipy_sqrtm_formula():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    c1, c2 = a @ a.T + 0.1 * np.eye(4), b @ b.T + 0.1 * np.eye(4)  # non-commuting
    m1, m2 = rng.normal(size=4), rng.normal(size=4)
    expected = ((m1 - m2) ** 2).sum() + np.trace(c1 + c2 - 2 * scipy.linalg.sqrtm(c1 @ c2).real)
    got = gaussian_frechet_distance(torch.tensor(m1), torch.tensor(c1), torch.tensor(m2), torch.tensor(c2))
    assert got == pytest.approx(expected, rel=1e-8)


def test_gaussian_frechet_of_diagonal_gaussians_is_the_closed_form():
    # N(0, diag(1, 4)) vs N((3, 0), diag(9, 1)): 9 + (1-3)^2 + (2-1)^2 = 14
    got = gaussian_frechet_distance(torch.zeros(2), torch.diag(torch.tensor([1.0, 4.0])), torch.tensor([3.0, 0.0]),
                                    torch.diag(torch.tensor([9.0, 1.0])))
    assert got == pytest.approx(14.0, rel=1e-10)


def test_frechet_of_samples_approaches_the_closed_form():
    # 20000 draws in 3-D: the plug-in value's error is O(d/n) plus O(1/sqrt(n)); tolerance 0.1 of 7.0
    x = torch.randn(20000, 3, generator=_gen(2))
    y = 2 ** 0.5 * torch.randn(20000, 3, generator=_gen(3)) + torch.tensor([2.0, 0.0, 0.0])
    expected = 4 + 3 * (1 - 2 ** 0.5) ** 2
    assert frechet_distance(x, y) == pytest.approx(expected, abs=0.1)


# -- MMD and C2ST ------------------------------------------------------------------------------
def test_mmd2_unbiased_matches_a_direct_sum():
    x, y = torch.randn(7, 3, generator=_gen(0)), torch.randn(5, 3, generator=_gen(1)) + 0.5
    sigma = 1.3

    def k(a, b):
        return math.exp(-float(((a - b) ** 2).sum()) / (2 * sigma ** 2))

    xx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / 42
    yy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / 20
    xy = sum(k(x[i], y[j]) for i in range(7) for j in range(5)) / 35
    assert mmd2_unbiased(x, y, bandwidth=sigma) == pytest.approx(xx + yy - 2 * xy, rel=1e-6)  # float32 inputs


def test_mmd_test_false_positive_rate_and_power():
    # 200 seeded repeats of n = m = 40 draws of N(0, I_2), 200 permutations each: the rejection rate at
    # alpha = 0.05 has standard error 0.015 under H0; accept [0.01, 0.10]. Power against a mean shift of
    # 1.0 in the first coordinate: at least 18 of 20 repeats reject.
    rejections = sum(mmd_test(torch.randn(40, 2, generator=_gen(2 * s)), torch.randn(40, 2, generator=_gen(2 * s + 1)),
                              num_permutations=200, seed=s).p_value <= 0.05 for s in range(200))
    assert 0.01 <= rejections / 200 <= 0.10
    shift = torch.tensor([1.0, 0.0])
    power = sum(mmd_test(torch.randn(40, 2, generator=_gen(1000 + s)),
                         torch.randn(40, 2, generator=_gen(2000 + s)) + shift,
                         num_permutations=200, seed=s).p_value <= 0.05 for s in range(20))
    assert power >= 18


def test_c2st_separates_shifted_samples_and_not_equal_ones():
    x, y = torch.randn(300, 3, generator=_gen(0)), torch.randn(300, 3, generator=_gen(1))
    same = classifier_two_sample_test(x, y, seed=0)
    shifted = classifier_two_sample_test(x, y + 1.0, seed=0)
    assert same.p_value > 0.01 and abs(same.accuracy - 0.5) < 0.1
    assert shifted.accuracy > 0.7 and shifted.p_value < 1e-6


# -- Parzen ------------------------------------------------------------------------------------
def _mixture_log_density(x, centres, var):
    d = x.shape[1]
    d2 = ((x[:, None] - centres[None]) ** 2).sum(-1)
    return (torch.logsumexp(-d2 / (2 * var), 1) - math.log(len(centres)) - d / 2 * math.log(2 * math.pi * var))


def test_parzen_on_the_mixture_centres_is_the_exact_mixture_density():
    # an equal-weight Gaussian mixture with shared isotropic sigma IS a Parzen window on its centres
    centres = torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, -3.0]], dtype=torch.float64)
    x = torch.randn(50, 2, generator=_gen(0), dtype=torch.float64) * 2
    got = parzen_log_prob(centres, x, 0.7, chunk=2)  # chunks smaller than both sets
    torch.testing.assert_close(got, _mixture_log_density(x, centres, 0.49), rtol=0, atol=1e-10)


def test_parzen_of_mixture_samples_estimates_the_smoothed_density():
    # 20000 samples of the mixture N(c_k, 0.5^2 I): E[p_sigma(x)] is the mixture with variance 0.25 + sigma^2;
    # the mean log-density over 200 test points is within 0.03 nats (Monte Carlo error about 0.01)
    centres = torch.tensor([[-2.0, 0.0], [2.0, 1.0]], dtype=torch.float64)
    g = _gen(0)
    samples = centres[torch.randint(2, (20000,), generator=g)] + 0.5 * torch.randn(20000, 2, generator=g,
                                                                                   dtype=torch.float64)
    x = centres[torch.randint(2, (200,), generator=g)] + 0.5 * torch.randn(200, 2, generator=g, dtype=torch.float64)
    sigma = 0.3
    got = parzen_log_prob(samples, x, sigma).mean()
    assert got.item() == pytest.approx(_mixture_log_density(x, centres, 0.25 + sigma ** 2).mean().item(), abs=0.03)


def test_parzen_window_chooses_sigma_on_validation_and_warns():
    g = _gen(1)
    samples, val, test = (torch.randn(n, 2, generator=g) for n in (2000, 300, 300))
    best, scores = select_sigma(samples, val, sigmas=(0.05, 0.3, 3.0))
    assert best == 0.3 and scores[0.3] > max(scores[0.05], scores[3.0])
    with pytest.warns(ParzenBiasWarning, match="biased"):
        result = parzen_window(samples, test, val, sigmas=(0.05, 0.3, 3.0))
    assert result.sigma == 0.3 and result.stderr > 0


# -- CSL ---------------------------------------------------------------------------------------
def test_csl_on_a_chain_with_a_known_stationary_marginal():
    # latent two-state chain with P(stay) = 0.9 (stationary pi = (1/2, 1/2)); x | h ~ Bernoulli(mu_h)^3.
    # p(x) = sum_h pi_h P(x|h) by enumeration of the 8 points. 400 chains x 100 steps after 50 burn-in:
    # 40000 correlated states, CSL within 0.02 nats of log p(x).
    mu = torch.tensor([[0.9, 0.8, 0.1], [0.2, 0.3, 0.7]], dtype=torch.float64)
    g = _gen(0)
    h = torch.randint(2, (400,), generator=g)
    states = []
    for t in range(150):
        switch = torch.rand(400, generator=g) < 0.1
        h = torch.where(switch, 1 - h, h)
        if t >= 50:
            states.append(h)
    means = mu[torch.cat(states)]
    x = torch.tensor([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], dtype=torch.float64)
    exact = torch.logsumexp(bernoulli_log_prob_matrix(mu, x) + math.log(0.5), 0)
    torch.testing.assert_close(bernoulli_csl(means, x, chunk=7000), exact, rtol=0, atol=0.02)
    # conservative: with S = 3 states per estimate the mean over 300 estimates lies below log p(x)
    # (equal up to Monte Carlo error where P(x|h) hardly depends on h)
    short = torch.stack([bernoulli_csl(means[3 * i:3 * i + 3], x) for i in range(300)]).mean(0)
    assert (short <= exact + 1e-9).all() and (short < exact - 0.05).sum() >= 4


# -- classifier, coverage, front door -----------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    return load_train_test("digits", seed=0)


def test_classifier_is_accurate_cached_and_keyed(digits, tmp_path):
    c = cached_classifier(digits.x_train, digits.y_train, tmp_path, epochs=5, seed=0)
    assert accuracy(c, digits.x_test, digits.y_test) > 0.93
    files = list(tmp_path.glob("classifier-*.pt"))
    assert len(files) == 1 and not list(tmp_path.glob(".*tmp"))
    again = cached_classifier(digits.x_train, digits.y_train, tmp_path, epochs=5, seed=0)
    torch.testing.assert_close(classifier_features(again, digits.x_test), classifier_features(c, digits.x_test))
    cached_classifier(digits.x_train[:300], digits.y_train[:300], tmp_path, epochs=1, seed=0)
    assert len(list(tmp_path.glob("classifier-*.pt"))) == 2  # other data or settings: another key


def test_classifier_cache_that_cannot_be_written_is_skipped(digits, tmp_path):
    # a cache folder that does not exist: torch.save raises RuntimeError (not OSError); the
    # classifier is still trained and returned, and nothing is written anywhere
    missing = tmp_path / "no" / "such" / "folder"
    c = cached_classifier(digits.x_train[:200], digits.y_train[:200], missing, epochs=1, seed=0)
    assert classifier_features(c, digits.x_test[:5]).shape[0] == 5
    assert not missing.exists() and not list(tmp_path.rglob("*.pt")) and not list(tmp_path.rglob(".*tmp"))


def test_class_coverage_shares_and_kl():
    probs = torch.nn.functional.one_hot(torch.tensor([0, 0, 1, 2]), 4).float()
    cov = class_coverage(probs, min_share=0.25)
    assert cov["shares"] == {"0": 0.5, "1": 0.25, "2": 0.25, "3": 0.0}
    assert cov["kl_to_uniform"] == pytest.approx(0.5 * math.log(2) + 2 * 0.25 * math.log(1))
    assert cov["classes_covered"] == 3 and not cov["all_covered"]
    assert class_coverage(torch.eye(5))["kl_to_uniform"] == pytest.approx(0.0)


def test_score_samples_ranks_real_images_above_independent_pixels(digits):
    g = _gen(0)
    order = torch.randperm(len(digits.x_train), generator=g)
    held, train = order[:180], order[180:]
    real = digits.x_train[held]
    pixels = torch.bernoulli(digits.x_train[train].mean(0).expand(180, -1), generator=g)
    common = dict(train_data=digits.x_train[train], train_labels=digits.y_train[train], test_labels=digits.y_test,
                  num_permutations=200, classifier_epochs=3)
    with pytest.warns(ParzenBiasWarning):
        good = score_samples(real, digits.x_test, **common)
    bad = score_samples(pixels, digits.x_test, warn=False, **common)
    for key in ("frechet_distance", "class_coverage", "mmd", "mmd_p_value", "parzen_log_likelihood", "parzen_sigma",
                "num_samples", "classifier_test_accuracy", "c2st_accuracy", "c2st_p_value"):
        assert key in good and key in bad
    assert good["frechet_distance"] < bad["frechet_distance"] / 2
    # seeded and deterministic; the held-out real subset gives p = 0.04 here (the digits test split is one fixed
    # draw of 180 images, so p-values against it across seeds are correlated): the bound is 0.01
    assert good["mmd_p_value"] > 0.01 and bad["mmd_p_value"] < 0.01
    assert good["parzen_log_likelihood"] > bad["parzen_log_likelihood"]
    with pytest.raises(ValueError, match="train_data and train_labels"):
        score_samples(real, digits.x_test)
    with pytest.raises(ValueError, match="samples has 10 pixels"):
        score_samples(torch.rand(5, 10), digits.x_test, **common)

"""``models.KMeansAutoencoder``: the autoencoder view of K-means (one-hot codes, linear decoder)
and its inertia against scikit-learn's KMeans."""
import pytest
import torch
from sklearn.cluster import KMeans

from pyro_deepgen.data import load_digits
from pyro_deepgen.models import KMeansAutoencoder


def blobs(seed=0):
    gen = torch.Generator().manual_seed(seed)
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]], dtype=torch.float64)
    labels = torch.arange(4).repeat_interleave(50)
    return centers[labels] + 0.5 * torch.randn(200, 2, generator=gen, dtype=torch.float64), centers


def test_codes_are_one_hot_and_the_decoder_is_linear():
    x, centers = blobs()
    km = KMeansAutoencoder(2, 4).double().fit(x, n_init=3, seed=0)
    z = km.encode(x)
    assert z.shape == (200, 4) and torch.equal(z.sum(1), torch.ones(200, dtype=z.dtype))
    assert torch.allclose(km.decode(z), z @ km.centers) and torch.allclose(km.decode(z), km.reconstruct(x))
    assert km.inertia(x) == pytest.approx(((x - km.decode(z)) ** 2).sum().item())
    # the well-separated blobs are recovered: every true center has a learned column nearby
    assert (torch.cdist(centers, km.centers).min(1).values < 0.3).all()


def test_the_decoder_is_the_least_squares_fit_to_its_own_codes():
    """A fixed point of the alternating exact steps: D = X^T Z (Z^T Z)^-1 for Z = Φ(X)."""
    x = load_digits()[0][:400].double()
    km = KMeansAutoencoder(64, 6).double().fit(x, n_init=2, seed=1)
    z = km.encode(x)
    lstsq = torch.linalg.lstsq(z, x).solution
    assert torch.allclose(lstsq, km.centers, atol=1e-8)


@pytest.mark.parametrize("k", [5, 12])
def test_inertia_matches_sklearn_on_a_digits_subset(k):
    """Seeded 700-image subset of the digits (the command uses the whole training split): within
    1% of KMeans(n_init=10)."""
    x = load_digits()[0]
    x = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(21))[:700]].double()
    ours = KMeansAutoencoder(64, k).double().fit(x, n_init=10, seed=0).inertia(x)
    theirs = KMeans(k, n_init=10, random_state=0).fit(x.numpy()).inertia_
    assert ours <= 1.01 * theirs


def test_fewer_distinct_points_than_clusters_leaves_empty_clusters_finite():
    """Three distinct points, five clusters: k-means++ falls back to uniform draws and empty
    clusters are refilled; the inertia is exactly 0 and every center is finite."""
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]], dtype=torch.float64).repeat(4, 1)
    km = KMeansAutoencoder(2, 5).double().fit(x, n_init=4, seed=0)
    assert torch.isfinite(km.centers).all() and km.inertia(x) == 0.0


def test_bad_arguments_are_one_line_errors():
    km = KMeansAutoencoder(2, 3)
    with pytest.raises(ValueError, match=r"x must have shape \(n, 2\)"):
        km.fit(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="fewer than num_clusters=3"):
        km.fit(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="n_init must be a positive integer"):
        km.fit(torch.zeros(5, 2), n_init=0)
    with pytest.raises(ValueError, match="num_clusters must be a positive integer"):
        KMeansAutoencoder(2, 0)

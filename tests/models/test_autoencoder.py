"""``models.Autoencoder``: losses and penalties against their formulas, training through ``fit``,
and the PCA limit of the linear autoencoder against scikit-learn."""
import math

import numpy as np
import pyro
import pytest
import torch
from scipy.linalg import subspace_angles
from sklearn.decomposition import PCA
from torch import nn

from pyro_deepgen.data import load_digits
from pyro_deepgen.models import L1, Autoencoder, Contractive, Denoising
from pyro_deepgen.train import fit


def test_losses_and_objective_follow_their_formulas():
    torch.manual_seed(0)
    ae = Autoencoder.one_layer(6, 3, "sigmoid", penalties=[L1(0.2), Contractive(0.5)]).double()
    x = torch.rand(5, 6, dtype=torch.float64)
    code = torch.sigmoid(x @ ae.encoder[0].weight.T + ae.encoder[0].bias)
    recon = code @ ae.decoder.weight.T + ae.decoder.bias
    assert torch.allclose(ae.encode(x), code) and torch.allclose(ae.reconstruct(x), recon)
    err = (x - recon).pow(2).sum(-1)
    assert torch.allclose(ae.reconstruction_error(x), err)
    slope = code * (1 - code)
    jac_sq = (slope ** 2) @ ae.encoder[0].weight.pow(2).sum(1)
    assert torch.allclose(ae.objective(x), err + 0.2 * code.abs().sum(-1) + 0.5 * jac_sq)
    assert torch.allclose(ae.contraction(x), jac_sq.sqrt())
    assert torch.allclose(Autoencoder.loss(ae, None, x), ae.objective(x).sum())
    bern = Autoencoder.one_layer(6, 3, "tanh", loss="bernoulli").double()
    p = bern.reconstruct(x)
    assert torch.allclose(bern.reconstruction_error(x), -(x * p.log() + (1 - x) * (1 - p).log()).sum(-1))


def test_denoising_objective_encodes_the_corrupted_input_and_compares_with_the_clean_one():
    torch.manual_seed(0)
    ae = Autoencoder.one_layer(6, 3, penalties=[Denoising("masking", 0.5)]).double()
    x = torch.rand(4, 6, dtype=torch.float64)
    torch.manual_seed(1)
    got = ae.objective(x)
    torch.manual_seed(1)
    x_tilde = Denoising("masking", 0.5).corrupt(x)
    assert torch.allclose(got, (x - ae.decoder(ae.encoder(x_tilde))).pow(2).sum(-1))
    assert not torch.allclose(got, ae.reconstruction_error(x))


def test_sparse_autoencoder_trained_with_fit_has_sparse_codes():
    x = load_digits()[0][:300]
    torch.manual_seed(0)
    dense = Autoencoder.one_layer(64, 32, "relu")
    sparse = Autoencoder.one_layer(64, 32, "relu", penalties=[L1(0.5)])
    sparse.load_state_dict(dense.state_dict())
    for ae in (dense, sparse):
        history = fit(ae, None, x, loss=Autoencoder.loss, epochs=30, batch_size=100, lr=3e-3, progress=False)
        assert history.loss[-1] < history.loss[0]
    zeros = [(ae.encode(x) == 0).float().mean().item() for ae in (dense, sparse)]
    assert zeros[1] > zeros[0] + 0.2


def linear_pca_check(x: torch.Tensor, k: int, steps: int, lr: float):
    """Train Autoencoder.linear full-batch through fit (Adam, cosine-decayed step) on centred x;
    return (largest principal angle in degrees, AE error / PCA error)."""
    x = x - x.mean(0)
    torch.manual_seed(0)
    ae = Autoencoder.linear(x.shape[1], k).double()
    schedule = lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)  # noqa: E731
    adam = pyro.optim.Adam({"lr": lr, "betas": (0.9, 0.9)})  # the command's recipe (experiments.autoencoder)
    fit(ae, None, x, loss=Autoencoder.loss, optimizer=adam, epochs=steps, batch_size=len(x), lr_schedule=schedule,
        progress=False)
    pca = PCA(k).fit(x.numpy())
    pca_err = ((x.numpy() - pca.inverse_transform(pca.transform(x.numpy()))) ** 2).sum(1).mean()
    ae_err = ae.reconstruction_error(x).mean().item()
    angle = np.degrees(subspace_angles(ae.decoder.weight.detach().numpy(), pca.components_.T).max())
    return angle, ae_err / pca_err


def test_linear_autoencoder_spans_the_pca_subspace_of_low_rank_data():
    gen = torch.Generator().manual_seed(5)
    basis = torch.linalg.qr(torch.randn(20, 3, generator=gen, dtype=torch.float64))[0]
    scales = torch.tensor([3.0, 2.0, 1.5], dtype=torch.float64)
    signal = torch.randn(400, 3, generator=gen, dtype=torch.float64) * scales
    x = signal @ basis.T + 0.3 * torch.randn(400, 20, generator=gen, dtype=torch.float64) + 1.0
    angle, ratio = linear_pca_check(x, 3, steps=300, lr=3e-2)
    assert angle < 1.0 and ratio < 1.01


def test_linear_autoencoder_spans_the_pca_subspace_of_a_digits_subset():
    """A seeded 600-image subset of the digits (the command uses the whole training split)."""
    x = load_digits()[0].double()
    x = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(11))[:600]]
    angle, ratio = linear_pca_check(x, 5, steps=400, lr=3e-2)
    assert angle < 1.0 and ratio < 1.01


def test_model_likelihood_and_prior_constants():
    ae = Autoencoder.linear(4, 2, penalties=[L1(0.5)])
    assert ae.log_prior_constant(2) == pytest.approx(2 * math.log(4.0))
    assert Autoencoder.linear(4, 2).log_prior_constant(2) == pytest.approx(math.log(2 * math.pi))
    assert ae.likelihood_constant(4) == pytest.approx(2 * math.log(math.pi))


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(ValueError, match="loss='l2' is not known"):
        Autoencoder(nn.Linear(2, 1), nn.Linear(1, 2), loss="l2")
    with pytest.raises(ValueError, match="penalties must be Penalty objects"):
        Autoencoder(nn.Linear(2, 1), nn.Linear(1, 2), penalties=[0.1])
    with pytest.raises(ValueError, match="encoder and decoder must be"):
        Autoencoder(lambda x: x, nn.Linear(1, 2))
    with pytest.raises(ValueError, match="code_dim must be a positive integer"):
        Autoencoder.linear(4, 0)

r"""The sparse-coding kinds of ``pyro-deepgen autoencoder``: dictionary learning (against
scikit-learn), PSD and LISTA, each trained on ``train_x`` and measured on ``test_x``.

:func:`run_sparse_kind` is what ``pyro_deepgen.experiments.autoencoder`` calls for
``--kind dictionary|psd|lista``; the helpers below (:func:`learn_dictionary`,
:func:`optimal_codes`, :func:`train_lista`, :func:`train_psd`) are what
``benchmarks/sparse_coding.py`` uses too. Gradient training (PSD's dictionary and encoder steps,
LISTA) goes through :func:`pyro_deepgen.train.fit` with a loss callable; dictionary learning
alternates exact steps (:meth:`pyro_deepgen.models.dictionary_learning.DictionaryLearning.fit`).

Every report measures on the test split: ``reconstruction_error`` is the mean over points of
:math:`\lVert x - \hat x\rVert^2` and ``sparsity`` the fraction of exactly zero code entries.
"""
import time
import warnings
from typing import Any, Dict, Tuple

import torch

from ..infer.sparse_coding import (fista, ista, ista_iterations_to_reach, relative_code_error,
                                   sparse_coding_objective)
from ..models.dictionary_learning import DictionaryLearning
from ..models.lista import LISTA
from ..models.psd import PSD
from ..train import History, fit

SPARSE_KINDS = ("dictionary", "psd", "lista")
#: the most alternations of dictionary learning (ours and scikit-learn's ``max_iter``); fewer
#: when ``config.epochs`` is smaller
DICTIONARY_MAX_ITER = 50
#: FISTA iterations for the optimal codes :math:`Z^*` (relative change ``OPTIMUM_TOL``)
OPTIMUM_MAX_ITER = 3000
OPTIMUM_TOL = 1e-7
#: PSD's weight of the encoder's prediction term
PSD_ALPHA = 1.0


def _sparsity(codes: torch.Tensor) -> float:
    return float((codes == 0).float().mean())


def _reconstruction_error(x: torch.Tensor, reconstructions: torch.Tensor) -> float:
    return float((x - reconstructions).pow(2).sum(-1).mean())


def optimal_codes(x: torch.Tensor, dictionary: torch.Tensor, lam: float) -> torch.Tensor:
    r"""The lasso codes :math:`Z^*` of the rows of ``x`` by FISTA, run to a relative change of
    ``OPTIMUM_TOL`` (at most ``OPTIMUM_MAX_ITER`` iterations)."""
    return fista(x, dictionary, lam, max_iter=OPTIMUM_MAX_ITER, tol=OPTIMUM_TOL).codes


def learn_dictionary(train_x: torch.Tensor, atoms: int, lam: float, iterations: int = DICTIONARY_MAX_ITER,
                     seed: int = 0) -> DictionaryLearning:
    """:class:`~pyro_deepgen.models.dictionary_learning.DictionaryLearning` (block coordinate descent) fitted on
    ``train_x`` for ``iterations`` alternations."""
    model = DictionaryLearning(train_x.shape[1], atoms, lam, code_max_iter=300, code_tol=1e-5).to(train_x)
    return model.fit(train_x, max_iter=iterations, tol=1e-6, seed=seed)


def sklearn_dictionary(train_x: torch.Tensor, atoms: int, lam: float, iterations: int, seed: int
                       ) -> Tuple[torch.Tensor, float]:
    """scikit-learn's ``DictionaryLearning(n_components=atoms, alpha=lam, max_iter=iterations,
    fit_algorithm="cd")`` on ``train_x``: its ``components_`` (as a tensor like ``train_x``) and
    its last reported objective per point (``error_[-1] / n``). Its convergence warnings are
    silenced (the budget is fixed on purpose)."""
    from sklearn.decomposition import DictionaryLearning as SklearnDictionaryLearning
    from sklearn.exceptions import ConvergenceWarning

    estimator = SklearnDictionaryLearning(n_components=atoms, alpha=lam, max_iter=iterations, fit_algorithm="cd",
                                          transform_algorithm="lasso_cd", random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator.fit(train_x.detach().cpu().double().numpy())
    components = torch.as_tensor(estimator.components_).to(train_x)
    return components, float(estimator.error_[-1]) / train_x.shape[0]


def train_lista(dictionary: torch.Tensor, lam: float, layers: int, train_x: torch.Tensor, z_star: torch.Tensor,
                epochs: int, lr: float, batch_size: int, seed: int = 0, tied: bool = False
                ) -> Tuple[LISTA, History]:
    r""":class:`~pyro_deepgen.models.lista.LISTA` with ``layers`` layers, initialized to ISTA and trained by
    :func:`~pyro_deepgen.train.fit` (Adam) to regress ``z_star``: the loss is
    :math:`\sum_i \lVert z_T(x_i) - z_i^*\rVert^2` over the minibatch."""
    torch.manual_seed(seed)
    model = LISTA(dictionary, lam, layers, tied=tied)
    history = fit(model, None, (train_x, z_star), loss=lambda m, guide, x, z: m.code_loss(x, z) * x.shape[0],
                  lr=lr, epochs=epochs, batch_size=batch_size, seed=seed, progress=False)
    return model, history


def train_psd(train_x: torch.Tensor, atoms: int, lam: float, epochs: int, lr: float, batch_size: int,
              seed: int = 0, alpha: float = PSD_ALPHA) -> Tuple[PSD, History]:
    """:class:`~pyro_deepgen.models.psd.PSD` with its atoms started at random training points, trained
    by :func:`~pyro_deepgen.train.fit` (Adam): every minibatch infers the codes with the
    encoder's term, then takes one gradient step on the dictionary and the encoder."""
    generator = torch.Generator().manual_seed(seed)
    start = train_x[torch.randint(train_x.shape[0], (atoms,), generator=generator).to(train_x.device)]
    start = start + 1e-3 * torch.randn(start.shape, generator=generator).to(start)
    model = PSD(train_x.shape[1], atoms, lam, alpha, dictionary=start)
    history = fit(model, None, train_x, loss=lambda m, guide, x: m.loss(x) * x.shape[0],
                  lr=lr, epochs=epochs, batch_size=batch_size, seed=seed, progress=False)
    return model, history


def _dictionary_kind(config, train_x, test_x) -> Dict[str, Any]:
    lam, atoms = float(config.lam), int(config.code_dim)
    iterations = min(int(config.epochs), DICTIONARY_MAX_ITER)
    t0 = time.perf_counter()
    model = learn_dictionary(train_x, atoms, lam, iterations, config.seed)
    seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    theirs, their_reported = sklearn_dictionary(train_x, atoms, lam, iterations, config.seed)
    sklearn_seconds = time.perf_counter() - t0
    ours = model.dictionary
    objective = fista(train_x, ours, lam, max_iter=OPTIMUM_MAX_ITER, tol=OPTIMUM_TOL).objective
    sklearn_objective = fista(train_x, theirs, lam, max_iter=OPTIMUM_MAX_ITER, tol=OPTIMUM_TOL).objective
    codes = optimal_codes(test_x, ours, lam)
    reconstructions = model.decode(codes)
    report = {
        "objective": objective,
        "sklearn_objective": sklearn_objective,
        "objective_ratio": objective / sklearn_objective,
        "sklearn_reported_objective": their_reported,
        "test_objective": float(sparse_coding_objective(test_x, codes, ours, lam)),
        "sklearn_test_objective": fista(test_x, theirs, lam, max_iter=OPTIMUM_MAX_ITER, tol=OPTIMUM_TOL).objective,
        "iterations": len(model.history),
        "reconstruction_error": _reconstruction_error(test_x, reconstructions),
        "sparsity": _sparsity(codes),
        "seconds": seconds,
        "sklearn_seconds": sklearn_seconds,
    }
    return {"report": report, "filters": ours, "reconstructions": reconstructions, "codes": codes}


def _psd_kind(config, train_x, test_x) -> Dict[str, Any]:
    lam, atoms = float(config.lam), int(config.code_dim)
    model, history = train_psd(train_x, atoms, lam, int(config.epochs), float(config.lr), int(config.batch_size),
                               config.seed)
    with torch.no_grad():
        codes = model.encode(test_x)
        z_star = model.optimal_codes(test_x, max_iter=OPTIMUM_MAX_ITER, tol=OPTIMUM_TOL)
        reconstructions = model.decode(codes)
        report = {
            "reconstruction_error": _reconstruction_error(test_x, reconstructions),
            "sparsity": _sparsity(z_star),
            "code_error": relative_code_error(codes, z_star),
            "optimal_reconstruction_error": _reconstruction_error(test_x, model.decode(z_star)),
            "encoder_objective": float(sparse_coding_objective(test_x, codes, model.dictionary, lam)),
            "optimal_objective": float(sparse_coding_objective(test_x, z_star, model.dictionary, lam)),
            "alpha": model.alpha,
            "train_loss": history.loss[-1],
            "seconds": history.seconds,
        }
    return {"report": report, "filters": model.dictionary.detach(), "reconstructions": reconstructions,
            "codes": codes, "encoder": model.encode}


def _lista_kind(config, train_x, test_x) -> Dict[str, Any]:
    lam, atoms, layers = float(config.lam), int(config.code_dim), int(config.layers)
    dictionary = learn_dictionary(train_x, atoms, lam, min(int(config.epochs), DICTIONARY_MAX_ITER),
                                  config.seed).dictionary
    z_train, z_test = optimal_codes(train_x, dictionary, lam), optimal_codes(test_x, dictionary, lam)
    model, history = train_lista(dictionary, lam, layers, train_x, z_train, int(config.epochs), float(config.lr),
                                 int(config.batch_size), config.seed)
    with torch.no_grad():
        codes = model(test_x)
        code_error = relative_code_error(codes, z_test)
        ista_codes = ista(test_x, dictionary, lam, max_iter=layers, tol=0.0).codes
        report = {
            "layers": layers,
            "code_error": code_error,
            "ista_iterations_matched": ista_iterations_to_reach(test_x, dictionary, lam, z_test, code_error),
            "ista_code_error": relative_code_error(ista_codes, z_test),
            "sparsity": _sparsity(codes),
            "objective": float(model.objective(test_x)),
            "optimal_objective": float(sparse_coding_objective(test_x, z_test, dictionary, lam)),
            "reconstruction_error": _reconstruction_error(test_x, model.decode(codes)),
            "train_loss": history.loss[-1],
            "seconds": history.seconds,
        }
        reconstructions = model.decode(codes)
    return {"report": report, "filters": dictionary, "reconstructions": reconstructions, "codes": codes,
            "encoder": model}


def run_sparse_kind(kind: str, config, train_x: torch.Tensor, test_x: torch.Tensor) -> Dict[str, Any]:
    r"""Train the sparse-coding ``kind`` on ``train_x`` and measure it on ``test_x``.

    Reads ``config.code_dim`` (atoms), ``config.lam`` (:math:`\lambda`), ``config.layers``
    (LISTA's :math:`T`), ``config.epochs`` (gradient epochs; for the dictionary, the alternations,
    at most :data:`DICTIONARY_MAX_ITER`, scikit-learn getting the same), ``config.lr``,
    ``config.batch_size``, ``config.seed`` and ``config.device``.

    :returns: ``{"report": {...}, "filters": (atoms, features), "reconstructions": (n_test,
        features), "codes": (n_test, atoms)}``. The report's keys: for ``"dictionary"``
        ``objective`` and ``sklearn_objective`` (per training point, each dictionary's codes solved
        by the same FISTA), ``reconstruction_error``, ``sparsity``; for ``"psd"``
        ``reconstruction_error`` (of the fast encoder's codes), ``sparsity`` (of the optimal
        codes; tanh codes are dense), ``code_error`` (the encoder's codes against the optimal
        ones); for ``"lista"`` ``layers``, ``code_error`` (:math:`\lVert Z_T - Z^*\rVert_F /
        \lVert Z^*\rVert_F` on ``test_x``), ``ista_iterations_matched`` (ISTA iterations to reach
        it; ``None`` beyond 10000), ``sparsity``; each with a few more.
    """
    if kind not in SPARSE_KINDS:
        raise ValueError(f"kind (--kind) {kind!r} is not a sparse-coding kind; use one of {SPARSE_KINDS}")
    for name, value in (("train_x", train_x), ("test_x", test_x)):
        if not torch.is_tensor(value) or value.dim() != 2 or value.shape[0] == 0:
            raise ValueError(f"{name} must be a non-empty 2-D tensor (points, features)")
    device = torch.device(getattr(config, "device", "cpu") or "cpu")
    train_x = train_x.to(device=device, dtype=torch.float32)
    test_x = test_x.to(device=device, dtype=torch.float32)
    torch.manual_seed(config.seed)
    runner = {"dictionary": _dictionary_kind, "psd": _psd_kind, "lista": _lista_kind}[kind]
    out = runner(config, train_x, test_x)
    out["report"] = {"kind": kind, "lam": float(config.lam), "atoms": int(config.code_dim), **out["report"],
                     "contraction": _contraction(out.pop("encoder", None), test_x)}
    return out


def _contraction(encoder, x: torch.Tensor):
    """Mean :math:`\\lVert J_\\Phi(x)\\rVert_F` of a feed-forward encoder over ``x`` (the exact
    Jacobian, :func:`~pyro_deepgen.models.autoencoder_penalties.jacobian_frobenius_sq`); ``None``
    for dictionary learning, whose codes solve an optimization problem and have no encoder."""
    if encoder is None:
        return None
    from ..models.autoencoder_penalties import jacobian_frobenius_sq

    def one_row(v):  # the encoders take (points, features); the exact Jacobian maps one row
        return encoder(v.unsqueeze(0)).squeeze(0) if v.dim() == 1 else encoder(v)

    return float(jacobian_frobenius_sq(one_row, x, method="jacobian").detach().sqrt().mean())

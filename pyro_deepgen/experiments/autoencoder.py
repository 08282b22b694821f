r"""Train one member of the autoencoder family on the digits or MNIST and compare the limits with
scikit-learn.

Every kind minimizes :math:`\frac1n\sum_i \ell(x_i, \Psi(\Phi(\tilde x_i))) + R` with the
squared error (or the Bernoulli cross-entropy, ``loss="bernoulli"``):

===============  ===========================================================  =========================
kind             encoder :math:`\Phi`, decoder :math:`\Psi`, regularizer         trained by
===============  ===========================================================  =========================
``linear``       linear, linear, none; on centred data (the PCA limit)         full-batch Adam, cosine
``sparse``       :math:`\mathrm{ReLU}(Wx+b)`, linear, :math:`\lambda\|z\|_1`   minibatch Adam
``contractive``  :math:`\sigma(Wx+b)`, linear, :math:`\lambda\|J_\Phi\|_F^2`   minibatch Adam
``denoising``    :math:`\sigma(Wx+b)`, linear, masking noise ``noise``         minibatch Adam
``kmeans``       one-hot nearest column, linear, none (the K-means limit)      Lloyd, k-means++
``dictionary``   ISTA/FISTA codes, linear, :math:`\lambda\|z\|_1`              see ``autoencoder_sparse``
``psd``          :math:`\mathrm{diag}(\beta)\tanh(Wx+b)`, linear, PSD          see ``autoencoder_sparse``
``lista``        T unrolled ISTA steps, linear, :math:`\lambda\|z\|_1`        see ``autoencoder_sparse``
===============  ===========================================================  =========================

The report (``report.json``) gives on the test split ``reconstruction_error`` (mean per image of
:math:`\ell`), ``sparsity`` (fraction of exact zeros in the codes) and ``contraction`` (mean
:math:`\|J_\Phi(x)\|_F`; 0 for the piecewise-constant one-hot encoder), and for the limits the
same numbers of scikit-learn fitted to the same training split:

- ``linear``: ``sklearn_reconstruction_error`` (PCA with ``code_dim`` components) and
  ``principal_angle_max_deg``, the largest principal angle between the decoder's column span and
  PCA's top-``code_dim`` subspace (Baldi & Hornik 1989: they agree at convergence);
- ``kmeans``: ``inertia`` and ``sklearn_inertia`` (``KMeans(n_init=10)``), both on the training
  split;
- ``dictionary``, ``psd``, ``lista``: the keys of
  :func:`pyro_deepgen.experiments.autoencoder_sparse.run_sparse_kind`.

:func:`run` writes ``report.json``, ``filters.png`` (decoder columns or atoms as images),
``reconstructions.png`` (test images next to their reconstructions), ``codes.png`` for a 2-D code
(test codes coloured by label), and for the kinds trained with :func:`~pyro_deepgen.train.fit`
``loss.png`` and ``checkpoint.pt``. ``pyro-deepgen autoencoder`` calls it.
"""
import dataclasses
import time
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np
import pyro
import torch

from ..models import Autoencoder, Contractive, Denoising, KMeansAutoencoder, L1
from ..plotting import image_shape, save_codes, save_image_grid, save_loss_curve
from ..train import fit
from .common import (
    ResumableConfig,
    check_choice,
    check_common,
    check_data,
    check_nonnegative_float,
    check_positive_float,
    check_positive_int,
    fit_run_arguments,
    load_data,
    prepare_output,
    resume_report,
    settings,
    write_report,
    wrote_line,
)

COMMAND = "autoencoder"
KINDS = ("linear", "sparse", "contractive", "denoising", "psd", "lista", "kmeans", "dictionary")
#: the kinds trained with :func:`~pyro_deepgen.train.fit` (resumable, with ``loss.png``)
FIT_KINDS = ("linear", "sparse", "contractive", "denoising")
#: the kinds run by :func:`pyro_deepgen.experiments.autoencoder_sparse.run_sparse_kind`
SPARSE_KINDS = ("dictionary", "psd", "lista")
LOSSES = ("squared", "bernoulli")
CORRUPTIONS = ("masking", "gaussian")
DEFAULT_CODE_DIM = {"linear": 10, "sparse": 64, "contractive": 64, "denoising": 64, "kmeans": 10,
                    "dictionary": 64, "psd": 64, "lista": 64}
DEFAULT_LAMBDA = {"linear": 0.0, "sparse": 0.1, "contractive": 0.1, "denoising": 0.0, "kmeans": 0.0,
                  "dictionary": 0.2, "psd": 0.2, "lista": 0.2}
#: epochs (for ``linear``: full-batch steps)
DEFAULT_EPOCHS = {"linear": 1000, "sparse": 50, "contractive": 50, "denoising": 50, "kmeans": 300,
                  "dictionary": 30, "psd": 30, "lista": 30}
DEFAULT_LR = {"linear": 3e-2, "sparse": 3e-3, "contractive": 3e-3, "denoising": 3e-3, "kmeans": 1e-3,
              "dictionary": 1e-3, "psd": 1e-3, "lista": 1e-3}
ACTIVATION = {"sparse": "relu", "contractive": "sigmoid", "denoising": "sigmoid"}
#: Adam's moment decays for the full-batch linear kind. The principal angle of the last direction
#: closes at a rate set by the eigengap :math:`\lambda_k/\lambda_{k+1}` (6% for MNIST's 10th/11th),
#: and a short second-moment average converges much faster there: on MNIST (4500 images, 10
#: units, 1000 steps, lr 3e-2 cosine-decayed) the largest angle to PCA's subspace was 0.12 deg
#: with betas (0.9, 0.9) and 2.8 deg with the default (0.9, 0.999).
LINEAR_BETAS = (0.9, 0.9)


@dataclasses.dataclass
class AutoencoderConfig(ResumableConfig):
    """The settings of :func:`run`, one per option of ``pyro-deepgen autoencoder`` (same
    defaults). ``None`` means the kind's default from the tables of this module.

    :param kind: one of ``KINDS``.
    :param code_dim: code units, clusters (``kmeans``) or atoms (``DEFAULT_CODE_DIM``).
    :param lam: :math:`\\lambda` of the L1 (``sparse``, ``dictionary``, ``psd``, ``lista``) or
        contractive penalty (``--lambda``; ``DEFAULT_LAMBDA``).
    :param layers: LISTA's unrolled layers :math:`T`.
    :param noise: ``denoising``: the masking probability or the Gaussian noise's sd.
    :param corruption: ``denoising``: ``masking`` or ``gaussian``.
    :param loss: ``squared`` or ``bernoulli`` (cross-entropy; not for ``linear``, ``kmeans`` and
        the sparse-coding kinds).
    :param data: ``digits`` (embedded) or ``mnist``; ``data_root``, ``download`` as elsewhere.
    :param epochs: passes over the data (``linear``: full-batch steps; ``kmeans``: the most
        Lloyd steps).
    :param batch_size: minibatch size (``linear`` is always full-batch; default 100).
    :param lr: Adam step size (``DEFAULT_LR``).
    :param n_init: ``kmeans``: k-means++ restarts.

    The shared fields (seed, device, out, progress, overwrite, resume, resume_override) come from
    :class:`~pyro_deepgen.experiments.common.ResumableConfig`.
    """

    kind: str = "linear"
    code_dim: Optional[int] = None
    lam: Optional[float] = None
    layers: int = 5
    noise: float = 0.3
    corruption: str = "masking"
    loss: str = "squared"
    data: str = "digits"
    data_root: Optional[str] = None
    download: bool = False
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    lr: Optional[float] = None
    n_init: int = 10
    out: Union[str, Path] = Path("runs/autoencoder")

    def __post_init__(self) -> None:
        check_choice(self, "kind", KINDS)
        kind = self.kind
        for name, table in (("code_dim", DEFAULT_CODE_DIM), ("lam", DEFAULT_LAMBDA), ("epochs", DEFAULT_EPOCHS),
                            ("lr", DEFAULT_LR)):
            if getattr(self, name) is None:
                setattr(self, name, table[kind])
        if self.batch_size is None:
            self.batch_size = 100
        check_positive_int(self, "code_dim", "layers", "epochs", "batch_size", "n_init")
        if isinstance(self.lam, bool) or not isinstance(self.lam, (int, float)) or not np.isfinite(self.lam) \
                or self.lam < 0:
            raise ValueError(f"lam (--lambda) must be a finite number >= 0, got {self.lam!r}")
        check_nonnegative_float(self, "noise")
        check_positive_float(self, "lr")
        check_choice(self, "corruption", CORRUPTIONS)
        check_choice(self, "loss", LOSSES)
        if self.corruption == "masking" and not self.noise < 1:
            raise ValueError(f"noise (--noise) is a masking probability in [0, 1) for --corruption masking, "
                             f"got {self.noise!r}")
        if self.loss == "bernoulli" and kind not in ("sparse", "contractive", "denoising"):
            raise ValueError(f"loss (--loss) bernoulli applies to --kind sparse, contractive or denoising, not {kind}")
        check_data(self)
        check_common(self)
        if self.resume and kind not in FIT_KINDS:
            raise ValueError(f"resume (--resume) applies to the kinds trained with fit ({', '.join(FIT_KINDS)}), "
                             f"not {kind}; rerun with --overwrite")


def build_autoencoder(config: AutoencoderConfig, dim: int) -> Autoencoder:
    """The :class:`~pyro_deepgen.models.Autoencoder` of a kind in :data:`FIT_KINDS`."""
    if config.kind == "linear":
        return Autoencoder.linear(dim, config.code_dim)
    penalties = {"sparse": [L1(config.lam)], "contractive": [Contractive(config.lam)],
                 "denoising": [Denoising(config.corruption, config.noise)]}[config.kind]
    return Autoencoder.one_layer(dim, config.code_dim, ACTIVATION[config.kind], config.loss, penalties)


def run(config: AutoencoderConfig) -> Dict[str, Any]:
    """Train, evaluate (see the module doc), write the files to ``config.out``, print the summary
    and return the report (the contents of ``report.json``)."""
    folder = prepare_output(config.out, COMMAND, overwrite=config.overwrite, resume=config.resume)
    data = load_data(config)
    device = config.device
    x_train, x_test = data.x_train.to(device), data.x_test.to(device)
    dim = x_train.shape[1]
    pyro.set_rng_seed(config.seed)
    pyro.clear_param_store()
    t0 = time.time()
    history = None
    offset = torch.zeros(dim, device=device)
    if config.kind in FIT_KINDS:
        report, history, filters, recon, codes, offset = _run_fit_kind(config, folder, x_train, x_test)
    elif config.kind == "kmeans":
        report, filters, recon, codes = _run_kmeans(config, x_train, x_test)
    else:
        from .autoencoder_sparse import run_sparse_kind

        result = run_sparse_kind(config.kind, config, x_train, x_test)
        report = dict(result["report"])
        filters, recon, codes = result["filters"], result["reconstructions"], result["codes"]
        report.setdefault("sparsity", float((codes == 0).float().mean()))
    report = {
        "kind": config.kind,
        "code_dim": config.code_dim,
        **report,
        "seconds": time.time() - t0,
        "test_split": data.test_split,
        "num_train": int(x_train.shape[0]),
        "num_test": int(x_test.shape[0]),
        "settings": settings(config, COMMAND),
    }
    if history is not None:
        report.update(epochs=history.epochs, train_loss=history.loss, **resume_report(history))
    with folder.results() as out:
        write_report(out, report)
        write_figures(config, out, filters, x_test, recon, codes, data.y_test, offset, history)
    print_summary(report)
    print(wrote_line(config.out, folder.files))
    return report


def _run_fit_kind(config, folder, x_train, x_test):
    """Train an :class:`Autoencoder` with :func:`fit`; ``linear`` on centred data, full-batch,
    with a cosine-decayed step, and compared with scikit-learn's PCA."""
    linear = config.kind == "linear"
    offset = x_train.mean(0) if linear else torch.zeros_like(x_train[0])
    train, test = x_train - offset, x_test - offset
    ae = build_autoencoder(config, x_train.shape[1]).to(device=x_train.device)
    batch_size = train.shape[0] if linear else config.batch_size
    schedule = _cosine(config.epochs) if linear else None
    optimizer = pyro.optim.Adam({"lr": config.lr, "betas": LINEAR_BETAS}) if linear else None
    history = fit(ae, None, train, loss=Autoencoder.loss, optimizer=optimizer, lr=config.lr, epochs=config.epochs,
                  batch_size=batch_size, seed=config.seed, progress=config.progress, lr_schedule=schedule,
                  **fit_run_arguments(config, COMMAND, folder))
    with torch.no_grad():
        codes = ae.encode(test)
        report = {
            "reconstruction_error": float(ae.reconstruction_error(test).mean()),
            "train_reconstruction_error": float(ae.reconstruction_error(train).mean()),
            "sparsity": float((codes == 0).float().mean()),
            "contraction": float(ae.contraction(test).mean()),
        }
        recon = ae.reconstruct(test) + offset
    if linear:
        report.update(_pca_comparison(ae, train, test, config.code_dim))
    return report, history, ae.decoder.weight.detach().T, recon, codes, offset


def _cosine(steps: int):
    def schedule(optimizer):
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    return schedule


def _pca_comparison(ae: Autoencoder, train: torch.Tensor, test: torch.Tensor, k: int) -> Dict[str, float]:
    """scikit-learn's PCA on the same centred training split: its errors and the largest principal
    angle (degrees) between its top-k subspace and the decoder's column span."""
    from scipy.linalg import subspace_angles
    from sklearn.decomposition import PCA

    tr, te = train.double().cpu().numpy(), test.double().cpu().numpy()
    pca = PCA(k, svd_solver="full").fit(tr)

    def err(a):
        return float(((a - pca.inverse_transform(pca.transform(a))) ** 2).sum(1).mean())

    columns = ae.decoder.weight.detach().double().cpu().numpy()
    angle = float(np.degrees(subspace_angles(columns, pca.components_.T).max()))
    return {"sklearn_reconstruction_error": err(te), "sklearn_train_reconstruction_error": err(tr),
            "principal_angle_max_deg": angle}


def _run_kmeans(config, x_train, x_test):
    from sklearn.cluster import KMeans

    km = KMeansAutoencoder(x_train.shape[1], config.code_dim).to(x_train.device)
    km.fit(x_train, n_init=config.n_init, max_iter=config.epochs, seed=config.seed)
    sk = KMeans(config.code_dim, n_init=10, random_state=config.seed).fit(x_train.double().cpu().numpy())
    codes = km.encode(x_test)
    report = {
        "reconstruction_error": float(km.reconstruction_error(x_test).mean()),
        "train_reconstruction_error": float(km.reconstruction_error(x_train).mean()),
        "sparsity": float((codes == 0).float().mean()),
        "contraction": 0.0,  # the one-hot encoder is piecewise constant: J = 0 almost everywhere
        "inertia": km.inertia(x_train),
        "sklearn_inertia": float(sk.inertia_),
        "lloyd_steps": km.n_iter,
    }
    return report, km.centers, km.reconstruct(x_test), codes


def _unit_range(images: torch.Tensor) -> torch.Tensor:
    """Each row scaled to [0, 1] (min-max), for showing filters of any sign."""
    lo = images.min(-1, keepdim=True).values
    hi = images.max(-1, keepdim=True).values
    return (images - lo) / (hi - lo).clamp_min(1e-12)


def write_figures(config, out: Path, filters, x_test, recon, codes, labels, offset, history) -> None:
    """``filters.png``, ``reconstructions.png``, ``codes.png`` (2-D codes) and ``loss.png``."""
    dim = x_test.shape[1]
    shape = image_shape(dim)
    filters = filters.detach().float().cpu()[:100]
    what = {"kmeans": "cluster centers (decoder columns)", "dictionary": "dictionary atoms",
            "psd": "dictionary atoms", "lista": "dictionary atoms"}.get(config.kind, "decoder columns")
    save_image_grid(_unit_range(filters), out / "filters.png", shape, title=f"{config.kind}: {what}",
                    caption=f"{filters.shape[0]} of {config.code_dim}, each scaled to [0, 1]")
    n = min(16, x_test.shape[0])
    pairs = torch.stack([x_test[:n].cpu(), recon[:n].detach().cpu()], 1).reshape(2 * n, dim)
    save_image_grid(pairs, out / "reconstructions.png", shape, ncol=8, title=f"{config.kind}: test reconstructions",
                    caption=f"{n} test images (data) and their reconstructions (recon.), in pairs",
                    column_labels=["data", "recon."])
    if codes.shape[1] == 2 and config.kind != "kmeans":
        save_codes(codes, labels, out / "codes.png", title=f"{config.kind}: 2-D codes of the test images")
    if history is not None:
        save_loss_curve(history.loss, out / "loss.png", ylabel="objective per image",
                        title="training objective per epoch" if config.kind != "linear" else
                        "training objective per full-batch step")


def print_summary(report: Dict[str, Any]) -> None:
    """The summary table of a report."""
    rows = [("kind / code size", f"{report['kind']} / {report['code_dim']}"),
            ("test reconstruction error", f"{report['reconstruction_error']:.4f}")]
    pairs = [("sklearn PCA error (test)", "sklearn_reconstruction_error", ".4f"),
             ("largest principal angle (deg)", "principal_angle_max_deg", ".3f"),
             ("inertia / sklearn inertia", None, None),
             ("objective", "objective", ".4f"), ("sklearn objective", "sklearn_objective", ".4f"),
             ("LISTA code error", "code_error", ".4f"), ("ISTA iterations matched", "ista_iterations_matched", "")]
    for label, key, fmt in pairs:
        if key is None and "inertia" in report:
            rows.append((label, f"{report['inertia']:.2f} / {report['sklearn_inertia']:.2f}"))
        elif key is not None and report.get(key) is not None:
            rows.append((label, format(report[key], fmt)))
    if "sparsity" in report:
        rows.append(("sparsity (fraction of zeros)", f"{report['sparsity']:.3f}"))
    if report.get("contraction") is not None:
        rows.append(("contraction (mean |J|_F)", f"{report['contraction']:.4f}"))
    rows.append(("seconds", f"{report['seconds']:.1f}"))
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))

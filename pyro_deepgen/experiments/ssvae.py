r"""Semi-supervised classification with VAEs (Kingma et al. 2014): M1, M2 and M1+M2.

For each of ``label_draws`` draws (seed ``seed + d``) a class-balanced labelled subset of
``labels`` training images is drawn; the other training images are the unlabelled set. Then

- ``m2``: an :class:`~pyro_deepgen.models.SSVAE` (Bernoulli likelihood on the grey values) is
  trained on both with :class:`~pyro_deepgen.models.ssvae.SemiSupervisedLoss` (the objective
  :math:`\mathcal J^\alpha`, the unlabelled term enumerated; :math:`\alpha = 46\,N_l` by default,
  Pyro's weight of 46 per labelled pair: the paper's :math:`0.1\,N`, a weight of :math:`0.1\,N/N_l`
  per pair, gave 26.7% test error on the digits at 100 labels against 8.3% with 46, one draw, 10
  epochs; on mnist-5k, 5 per label, about :math:`0.1\,N`, left 11-12% of the 100 labels
  misclassified and the test error higher, see docs/ssvae.rst);
  the test prediction is :math:`\arg\max_y q(y|x)`;
- ``m1``: a :class:`~pyro_deepgen.models.VAE` (M1) is trained once on all training images; its
  posterior means :math:`\mathbb E[z|x]` of the labelled images train a scikit-learn SVM with an
  RBF kernel, **a stand-in for the paper's transductive SVM** (TSVM), which scikit-learn lacks;
- ``m1m2``: the same M1, frozen, under an M2 with a Gaussian likelihood trained on draws
  :math:`z_1\sim q(z_1|x)` (:class:`~pyro_deepgen.models.StackedSSVAE`); the test prediction is
  :math:`\arg\max_y \mathbb E_{q(z_1|x)} q(y|z_1)` (32 draws of :math:`z_1`).

Settings left as ``None`` take per-data, per-model values (:data:`DEFAULTS`): on the digits one
setting for every network; on MNIST, M1+M2 puts a small M2 (2-D :math:`z`, 100 hidden units,
dropout on the classifier's input, 100 per label) on a 20-D M1.
Training goes through :func:`~pyro_deepgen.train.fit`, with one checkpoint per trained network
(``checkpoint.pt`` for the first: M1, or M2's first draw; then ``checkpoint-draw<d>.pt``,
``checkpoint-styles.pt``); ``resume``
continues an interrupted run. :func:`run` writes ``report.json`` (``test_error`` and
``test_error_std`` in %, mean and standard deviation over the draws, ``per_draw``, ``labels``,
``model``, ``settings``, timings), ``table.md`` (the paper's MNIST table with this run's row),
``confusion.png`` (first draw), and for ``m2``/``m1m2`` ``analogies.png`` (test images' inferred
:math:`z` decoded with every label) and ``styles.png`` (each class decoded over a grid of a 2-D
:math:`z`: from the first draw's model when ``z_dim`` is 2, else from a separate M2 with a 2-D
:math:`z` trained on the first draw for the figure only, as the report's ``styles`` says).

**Reference**: D. P. Kingma, D. J. Rezende, S. Mohamed, M. Welling, *Semi-Supervised Learning
with Deep Generative Models*, NeurIPS 2014, arXiv:1406.5298.
"""
import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import pyro
import torch
from pyro.infer import Trace_ELBO

from ..models import VAE, SSVAE, StackedSSVAE
from ..models.ssvae import SemiSupervisedLoss
from ..plotting import image_shape, save_confusion, save_image_grid
from ..train import fit
from .common import (
    ResumableConfig,
    check_choice,
    check_common,
    check_data,
    check_int_tuple,
    check_positive_float,
    check_nonnegative_float,
    check_positive_int,
    fit_run_arguments,
    load_data,
    prepare_output,
    settings,
    write_report,
    wrote_line,
)

COMMAND = "ssvae"
MODELS = ("m1", "m2", "m1m2")
NUM_CLASSES = 10
#: The MNIST test errors (%) of Table 1 of Kingma et al. (2014), with 50,000 training images
PAPER = {
    100: {"NN": "25.81", "TSVM": "16.81", "M1+TSVM": "11.82 (±0.25)", "M2": "11.97 (±1.71)", "M1+M2": "3.33 (±0.14)"},
    600: {"NN": "11.44", "TSVM": "6.16", "M1+TSVM": "5.72", "M2": "4.94", "M1+M2": "2.59"},
    1000: {"NN": "10.7", "TSVM": "5.38", "M1+TSVM": "4.24", "M2": "3.60", "M1+M2": "2.40"},
    3000: {"NN": "6.04", "TSVM": "3.45", "M1+TSVM": "3.49", "M2": "3.92", "M1+M2": "2.18"},
}
#: the default weight of the classification term per labelled pair (Pyro's ss_vae_M2 multiplier)
ALPHA_PER_LABEL = 46.0
#: what a setting left as ``None`` takes when :data:`DEFAULTS` has no value for it
FALLBACK: Dict[str, Any] = dict(z_dim=50, hidden=(500,), epochs=10, lr=3e-3, classifier_dropout=0.0,
                                alpha_per_label=ALPHA_PER_LABEL)
#: the values of the settings left as ``None``, per data set and model (else :data:`FALLBACK`;
#: M1+M2's ``m1_*`` else the M2's value). The digits: about a minute on two CPU cores, every
#: network alike. MNIST (mnist-5k, 100 labels, single thread, docs/ssvae.rst): M2 has dropout 0.7 on
#: q(y|x)'s input and 100 epochs at 3e-3 (11.4 +- 2.8% over 5 draws, against 24.0 +- 3.2% without
#: dropout and 50 epochs; the same classifier trained on the labels alone: 23.0% on draw 0); M1
#: has a 20-D z (its means + SVM 18.8% against 21.0% with 50 on draw 0); M1+M2 puts a small M2 (2-D z, 100 hidden units,
#: dropout 0.3 on q(y|z1)'s input, 100 per label) on that M1 and trains it for 300 epochs at 2e-3
#: (11.7 +- 0.9% over 5 draws, against 14.2 +- 1.1% with 150 epochs and 200 per label, and 19.3%
#: for the old 50/500/46-per-label M2)
DEFAULTS: Dict[str, Dict[str, Dict[str, Any]]] = {
    "digits": {m: {} for m in MODELS},
    "mnist": {
        "m1": dict(z_dim=20, epochs=40, lr=1e-3),
        "m2": dict(epochs=100, classifier_dropout=0.7),
        "m1m2": dict(z_dim=2, hidden=(100,), epochs=300, lr=2e-3, classifier_dropout=0.3, alpha_per_label=100.0,
                     m1_z_dim=20, m1_hidden=(500,), m1_epochs=40, m1_lr=1e-3),
    },
}
#: the settings of M1 under M1+M2 (for ``m1`` the plain ones are M1's)
M1_SETTINGS = {"m1_z_dim": "z_dim", "m1_hidden": "hidden", "m1_epochs": "epochs", "m1_lr": "lr"}
COLUMN = {"m1": "M1+TSVM", "m2": "M2", "m1m2": "M1+M2"}


@dataclasses.dataclass
class SSVAEConfig(ResumableConfig):
    """The settings of :func:`run`, one per option of ``pyro-deepgen ssvae`` (same defaults).

    :param model: ``m1`` (VAE features + RBF SVM), ``m2`` or ``m1m2``.
    :param labels: labelled training images per draw, a multiple of the 10 classes.
    :param label_draws: number of labelled subsets (seeds ``seed``, ``seed + 1``, ...).
    :param data: ``digits`` (embedded 8x8) or ``mnist`` (IDX files in ``data_root``; test set: the
        t10k files when present, else a seeded 10% hold-out).
    :param z_dim: latent size of the trained network (M2's :math:`z`; for ``m1``, M1's).
    :param hidden: its hidden layer sizes (every network of M2; for ``m1``, M1's).
    :param epochs: its epochs (M2's per draw, an epoch being one pass over the unlabelled images;
        for ``m1``, M1's over every training image).
    :param m1_z_dim: ``m1m2`` only: M1's latent size (``None``: :data:`DEFAULTS`, else ``z_dim``).
    :param m1_hidden: ``m1m2`` only: M1's hidden layers (``None``: :data:`DEFAULTS`, else ``hidden``).
    :param m1_epochs: ``m1m2`` only: M1's epochs (``None``: :data:`DEFAULTS`, else ``epochs``).
    :param m1_lr: ``m1m2`` only: M1's Adam step size (``None``: :data:`DEFAULTS`, else ``lr``).
    :param batch_size: unlabelled images per step (and ``min(labels, batch_size)`` labelled pairs).
    :param lr: Adam step size (M2's; for ``m1``, M1's).
    :param classifier_dropout: dropout on the input of :math:`q(y|x)` in training (M2, M1+M2).
    :param alpha: :math:`\\alpha` of the classification term (``None``: a per-label weight of
        :data:`DEFAULTS`, else :data:`ALPHA_PER_LABEL`, times ``labels``; the paper's rule is
        ``0.1 * N``, N the number of training images).

    Settings left as ``None`` take the per-data, per-model values of :data:`DEFAULTS`, else
    :data:`FALLBACK` (see :meth:`resolved`).
    """

    model: str = "m2"
    labels: int = 100
    label_draws: int = 5
    data: str = "digits"
    data_root: Optional[str] = None
    download: bool = False
    z_dim: Optional[int] = None
    hidden: Optional[Tuple[int, ...]] = None
    epochs: Optional[int] = None
    m1_z_dim: Optional[int] = None
    m1_hidden: Optional[Tuple[int, ...]] = None
    m1_epochs: Optional[int] = None
    m1_lr: Optional[float] = None
    batch_size: int = 100
    lr: Optional[float] = None
    classifier_dropout: Optional[float] = None
    alpha: Optional[float] = None
    out: Union[str, Path] = Path("runs/ssvae")

    def __post_init__(self) -> None:
        check_choice(self, "model", MODELS)
        check_data(self)
        check_positive_int(self, "labels", "label_draws", "batch_size")
        for name in ("z_dim", "epochs", "m1_z_dim", "m1_epochs"):
            if getattr(self, name) is not None:
                check_positive_int(self, name)
        if self.labels % NUM_CLASSES:
            raise ValueError(f"labels (--labels) must be a multiple of the {NUM_CLASSES} classes (class-balanced "
                             f"draws); got {self.labels}")
        check_int_tuple(self, "hidden", allow_none=True)
        check_int_tuple(self, "m1_hidden", allow_none=True)
        if self.model != "m1m2":
            for name, plain in M1_SETTINGS.items():
                if getattr(self, name) is not None:
                    flag = "--" + name.replace("_", "-")
                    raise ValueError(f"{name} ({flag}) is M1's setting under --model m1m2; with --model "
                                     f"{self.model} use {plain} (--{plain.replace('_', '-')})")
        for name in ("lr", "m1_lr"):
            if getattr(self, name) is not None:
                check_positive_float(self, name)
        if self.classifier_dropout is not None:
            check_nonnegative_float(self, "classifier_dropout")
            if self.classifier_dropout >= 1:
                raise ValueError("classifier_dropout (--classifier-dropout) must be in [0, 1), got "
                                 f"{self.classifier_dropout}")
        if self.alpha is not None:
            if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not (
                    math.isfinite(self.alpha) and self.alpha >= 0):
                raise ValueError(f"alpha (--alpha) must be a finite number >= 0, got {self.alpha!r}")
        check_common(self)

    def resolved(self) -> "SSVAEConfig":
        """A copy with every setting left as ``None`` (but ``alpha``) set from :data:`DEFAULTS`, else
        :data:`FALLBACK`; M1+M2's ``m1_*`` settings from :data:`DEFAULTS`, else the M2's."""
        defaults = DEFAULTS[self.data][self.model]
        values = {k: defaults.get(k, FALLBACK[k]) for k in ("z_dim", "hidden", "epochs", "lr", "classifier_dropout")
                  if getattr(self, k) is None}
        config = dataclasses.replace(self, **values)
        if self.model == "m1m2":
            config = dataclasses.replace(config, **{k: defaults.get(k, getattr(config, plain))
                                                    for k, plain in M1_SETTINGS.items() if getattr(self, k) is None})
        return config

    def m1_settings(self) -> Tuple[int, Tuple[int, ...], int, float]:
        """M1's ``(z_dim, hidden, epochs, lr)`` of a resolved config."""
        if self.model == "m1m2":
            return self.m1_z_dim, self.m1_hidden, self.m1_epochs, self.m1_lr
        return self.z_dim, self.hidden, self.epochs, self.lr


def balanced_labels(y: torch.Tensor, labels: int, seed: int) -> torch.Tensor:
    """Indices of a class-balanced subset: ``labels // C`` images of each class, drawn with
    ``seed``; a ``ValueError`` names ``labels (--labels)`` when a class has too few images (each
    class keeps at least one unlabelled image)."""
    classes = int(y.max()) + 1
    per = labels // classes
    counts = torch.bincount(y, minlength=classes)
    if per >= int(counts.min()):
        raise ValueError(f"labels (--labels) {labels} asks for {per} per class, but the training set's smallest "
                         f"class has {int(counts.min())} images (at most {(int(counts.min()) - 1) * classes} "
                         "labels leave every class an unlabelled image)")
    g = torch.Generator().manual_seed(seed)
    picks = []
    for c in range(classes):
        members = torch.nonzero(y.cpu() == c).squeeze(1)
        picks.append(members[torch.randperm(len(members), generator=g)[:per]])
    return torch.cat(picks).to(y.device)


def default_alpha(config: SSVAEConfig) -> float:
    """``config.alpha``, or when it is ``None`` the per-label weight of :data:`DEFAULTS` (else
    :data:`ALPHA_PER_LABEL`) times ``config.labels``."""
    if config.alpha is not None:
        return float(config.alpha)
    return DEFAULTS[config.data][config.model].get("alpha_per_label", FALLBACK["alpha_per_label"]) * config.labels


def _fit_args(config, folder, name: str, **extra) -> Dict[str, Any]:
    args = fit_run_arguments(config, COMMAND, folder)
    if name != ("draw0" if config.model == "m2" else "m1"):  # the first network keeps checkpoint.pt
        args["checkpoint"] = folder.path / f"checkpoint-{name}.pt"
        folder.record(args["checkpoint"].name)
    args["run_settings"] = {**args["run_settings"], "network": name, **extra}
    return args


def train_m1(config: SSVAEConfig, x_train: torch.Tensor, folder) -> Tuple[VAE, float]:
    """M1: a VAE on every training image (``config`` resolved); returns it and its seconds per epoch."""
    pyro.set_rng_seed(config.seed)
    z_dim, hidden, epochs, lr = config.m1_settings()
    vae = VAE(x_train.shape[1], z_dim, hidden, activation="softplus").to(config.device)
    history = fit(vae.model, vae.guide, x_train, loss=Trace_ELBO(max_plate_nesting=1), lr=lr,
                  epochs=epochs, batch_size=config.batch_size, seed=config.seed, progress=config.progress,
                  **_fit_args(config, folder, "m1"))
    return vae, history.seconds / max(history.epochs, 1)


def train_m2(config: SSVAEConfig, x_train, y_train, index, seed: int, folder, name: str,
             m1: Optional[VAE] = None, z_dim: Optional[int] = None):
    """M2 (or M1+M2 on the frozen ``m1``) on one labelled draw (``config`` resolved); returns it and
    seconds per epoch."""
    z_dim = z_dim or config.z_dim
    unlabelled = torch.ones(len(x_train), dtype=torch.bool, device=x_train.device)
    unlabelled[index] = False
    x_u = x_train[unlabelled]
    pyro.set_rng_seed(seed)
    if m1 is None:
        net = SSVAE(x_train.shape[1], NUM_CLASSES, z_dim, config.hidden,
                    classifier_dropout=config.classifier_dropout).to(config.device)
        features = None
    else:
        net = StackedSSVAE(m1, NUM_CLASSES, z_dim, config.hidden,
                           classifier_dropout=config.classifier_dropout).to(config.device)
        features = net.features
    alpha = default_alpha(config)
    lbs = min(config.labels, config.batch_size)
    loss = SemiSupervisedLoss(x_train[index], y_train[index], len(x_u), alpha=alpha, labelled_batch_size=lbs,
                              features=features)
    history = fit(net.model, net.guide, x_u, loss=loss, lr=config.lr, epochs=config.epochs,
                  batch_size=config.batch_size, seed=seed, progress=config.progress,
                  **_fit_args(config, folder, name, z_dim_network=z_dim))
    return net, history.seconds / max(history.epochs, 1)


def _svm_predict(m1: VAE, x_l, y_l, x_test) -> torch.Tensor:
    from sklearn.svm import SVC

    with torch.no_grad():
        f_l, f_t = m1.encode(x_l)[0].cpu().numpy(), m1.encode(x_test)[0].cpu().numpy()
    svm = SVC(kernel="rbf", gamma="scale").fit(f_l, y_l.cpu().numpy())
    return torch.as_tensor(svm.predict(f_t))


def run(config: SSVAEConfig) -> Dict[str, Any]:
    """Train and score every draw (see the module doc), write the files, print the summary and
    return the report (the contents of ``report.json``)."""
    config = config.resolved()
    folder = prepare_output(config.out, COMMAND, overwrite=config.overwrite, resume=config.resume)
    data = load_data(config)
    x_train, y_train = data.x_train.to(config.device), data.y_train.to(config.device)
    x_test, y_test = data.x_test.to(config.device), data.y_test.to(config.device)
    draws = [balanced_labels(y_train, config.labels, config.seed + d) for d in range(config.label_draws)]
    t0 = time.time()
    m1, m1_epoch = (None, None)
    if config.model in ("m1", "m1m2"):
        m1, m1_epoch = train_m1(config, x_train, folder)
    per_draw: List[float] = []
    epoch_seconds: List[float] = []
    first = None
    for d, index in enumerate(draws):
        if config.model == "m1":
            pred = _svm_predict(m1, x_train[index], y_train[index], x_test)
            net = None
        else:
            net, sec = train_m2(config, x_train, y_train, index, config.seed + d, folder, f"draw{d}",
                                m1=m1 if config.model == "m1m2" else None)
            epoch_seconds.append(sec)
            pyro.set_rng_seed(config.seed + d)  # M1+M2 averages over draws of z1: the same on resume
            pred = net.classify(x_test).argmax(-1)
        per_draw.append(100.0 * (pred.cpu() != y_test.cpu()).float().mean().item())
        if d == 0:
            first = (net, pred)
    styles = None
    styles_net = None
    if config.model != "m1":
        if config.z_dim == 2:
            styles_net, styles = first[0], "the first draw's model (z_dim 2)"
        else:
            styles_net, _ = train_m2(config, x_train, y_train, draws[0], config.seed, folder, "styles",
                                     m1=m1 if config.model == "m1m2" else None, z_dim=2)
            styles = f"a separate model with a 2-D z trained on the first draw (z_dim {config.z_dim} is not 2)"
    report = {
        "model": config.model,
        "labels": config.labels,
        "test_error": float(np.mean(per_draw)),
        "test_error_std": float(np.std(per_draw, ddof=1)) if len(per_draw) > 1 else 0.0,
        "per_draw": per_draw,
        "test_split": data.test_split,
        "num_train": int(len(x_train)),
        "num_test": int(len(x_test)),
        "alpha": default_alpha(config),
        "classifier": "RBF SVM on M1 posterior means (stands in for the paper's TSVM)" if config.model == "m1"
        else "argmax q(y|x)",
        "m1_seconds_per_epoch": m1_epoch,
        "m2_seconds_per_epoch": float(np.mean(epoch_seconds)) if epoch_seconds else None,
        "styles": styles,
        "seconds": time.time() - t0,
        "settings": settings(config, COMMAND),
    }
    with folder.results() as out:
        write_report(out, report)
        (out / "table.md").write_text(table(report, data.name))
        save_confusion(first[1], y_test, out / "confusion.png", f"{config.model}, {config.labels} labels, draw 0")
        if first[0] is not None:
            write_generative_figures(first[0], styles_net, x_test, y_test, out, m1 if config.model == "m1m2" else None)
    print(f"{config.model}: test error {report['test_error']:.2f} ± {report['test_error_std']:.2f} % over "
          f"{len(per_draw)} draws of {config.labels} labels ({data.test_split}); {report['seconds']:.1f} s")
    print(wrote_line(config.out, folder.files))
    return report


def table(report: Dict[str, Any], data_name: str) -> str:
    """``table.md``: the paper's MNIST rows for this label count and this run's row."""
    cols = ["NN", "TSVM", "M1+TSVM", "M2", "M1+M2"]
    lines = ["| labels | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    paper = PAPER.get(report["labels"])
    if paper:
        lines.append(f"| {report['labels']} (paper, MNIST) | " + " | ".join(paper[c] for c in cols) + " |")
    ours = {c: "" for c in cols}
    ours[COLUMN[report["model"]]] = f"{report['test_error']:.2f} (±{report['test_error_std']:.2f})"
    lines.append(f"| {report['labels']} (this run, {data_name}, {len(report['per_draw'])} draws) | "
                 + " | ".join(ours[c] for c in cols) + " |")
    note = ("\nTest error (%), mean (± std) over label draws. The M1+TSVM column of this run is M1 with an RBF SVM, "
            "a stand-in for the transductive SVM.\n")
    return "\n".join(lines) + "\n" + note


def _decoder(net, m1: Optional[VAE]):
    """``(z, y) -> images``: the M2 mean, passed through M1's decoder mean for M1+M2."""
    ss = net.m2 if isinstance(net, StackedSSVAE) else net

    def decode(z, y):
        out = ss.mean(z, y)
        return m1.mean(out) if m1 is not None else out
    return decode, ss


@torch.no_grad()
def write_generative_figures(net, styles_net, x_test, y_test, out: Path, m1: Optional[VAE]) -> None:
    """``analogies.png`` (8 test images, their inferred z decoded with every class) and
    ``styles.png`` (each class over a 2-D grid of z, from ``styles_net``)."""
    shape = image_shape(x_test.shape[1])
    decode, ss = _decoder(net, m1)
    x = x_test[:8]
    feats = net.features(x, sample=False) if isinstance(net, StackedSSVAE) else x
    z = ss.encode(feats, y_test[:8])[0]
    classes = torch.arange(NUM_CLASSES, device=x.device)
    gen = decode(z.unsqueeze(1).expand(-1, NUM_CLASSES, -1), classes.expand(len(x), -1))
    rows = torch.cat([x.unsqueeze(1), gen], 1).reshape(-1, x.shape[1]).clamp(0, 1)
    save_image_grid(rows, out / "analogies.png", shape, ncol=NUM_CLASSES + 1,
                    title="analogies: a test image's style z decoded with every label",
                    column_labels=["test"] + [str(c) for c in range(NUM_CLASSES)],
                    caption="each row: a test image, then E[x|y,z] for y = 0..9 with z = the mean of q(z|x,y_true)")
    decode2, ss2 = _decoder(styles_net, m1)
    grid = torch.linspace(-2, 2, 4, device=x.device)
    zz = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    rows = torch.stack([decode2(zz, torch.full((len(zz),), c, device=x.device)) for c in range(NUM_CLASSES)])
    save_image_grid(rows.reshape(-1, x.shape[1]).clamp(0, 1), out / "styles.png", shape, ncol=len(zz),
                    title="handwriting styles: each class over a grid of the 2-D z",
                    row_labels=[str(c) for c in range(NUM_CLASSES)],
                    caption="row y: E[x|y,z] over the same 4x4 grid of z on [-2, 2]^2 (row-major)")

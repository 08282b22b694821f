r"""Train an autoregressive model (NADE, MADE or PixelCNN) on binarized digits or MNIST and report
its exact test log-likelihood.

The pixels are binarized at 0.5 (as ``pyro-deepgen rbm`` does). A seeded 10% of the training
images is held out for validation: training (:func:`~pyro_deepgen.train.fit`, Adam on the exact
negative log-likelihood through :class:`~pyro.infer.Trace_ELBO` with the empty guide) stops when
the validation NLL has not improved for ``patience`` epochs, and the best parameters are kept.
The report gives the exact

.. math:: \frac1N \sum_n \log p(x_n) \ \text{(nats)}, \qquad
          \text{bits/dim} = -\frac{1}{N D \ln 2} \sum_n \log p(x_n)

on the test set (no bound, no sampling). For MADE with ``orderings`` K > 1, training is
order-agnostic over K orderings/masks and the test log-likelihood is that of their ensemble,
:math:`\log \frac1K \sum_k p_k(x)`; each mask's own value is reported too.

:func:`run` writes ``report.json``, ``checkpoint.pt``, ``samples.png`` and ``loss.png`` to
``config.out``. ``pyro-deepgen autoregressive`` calls it.

**References**: H. Larochelle, I. Murray, *The Neural Autoregressive Distribution Estimator*,
AISTATS 2011. M. Germain, K. Gregor, I. Murray, H. Larochelle, *MADE: Masked Autoencoder for
Distribution Estimation*, ICML 2015, arXiv:1502.03509. A. van den Oord, N. Kalchbrenner,
K. Kavukcuoglu, *Pixel Recurrent Neural Networks*, ICML 2016, arXiv:1601.06759.
"""
import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple, Union

import pyro
import torch
from pyro.infer import Trace_ELBO

from ..data.split import holdout_indices
from ..distributions import MADE, NADE, PixelCNN
from ..distributions.autoregressive import AutoregressiveModule
from ..plotting import image_shape, save_image_grid, save_loss_curve
from ..train import fit
from .common import (
    ResumableConfig,
    check_choice,
    check_common,
    check_data,
    check_int_tuple,
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

COMMAND = "autoregressive"
MODELS = ("nade", "made", "pixelcnn")
#: ``hidden`` when not given: NADE's hidden units, MADE's hidden widths, PixelCNN's channels per
#: type-B block (one entry per block, all equal).
DEFAULT_HIDDEN: Dict[str, Tuple[int, ...]] = {"nade": (500,), "made": (500,), "pixelcnn": (32, 32, 32, 32)}
#: ``lr`` when not given (Adam step size), chosen by short runs on mnist-5k (NADE at 1e-3 was 5x slower).
DEFAULT_LR: Dict[str, float] = {"nade": 1e-2, "made": 2e-3, "pixelcnn": 3e-3}
#: The default training budget (the one the benchmark in ``docs/autoregressive.rst`` used).
DEFAULT_EPOCHS = 50
DEFAULT_PATIENCE = 5
VAL_FRACTION = 0.1


@dataclasses.dataclass
class AutoregressiveConfig(ResumableConfig):
    """The settings of :func:`run`, one per option of ``pyro-deepgen autoregressive`` (same
    defaults).

    :param model: ``nade``, ``made`` or ``pixelcnn``.
    :param hidden: NADE: one entry, the hidden units; MADE: the hidden widths; PixelCNN: the
        channels of each type-B block (all equal). ``None``: :data:`DEFAULT_HIDDEN`.
    :param orderings: MADE only: 1 is one fixed mask in the natural order; K > 1 trains over K
        orderings/masks and averages the K at test time.
    :param data: ``digits`` (scikit-learn's 8x8 digits, embedded) or ``mnist``.
    :param data_root: folder with the MNIST IDX files.
    :param download: fetch the missing official MNIST files into ``data_root``.
    :param epochs: the most training epochs.
    :param patience: stop after this many epochs without a better validation NLL.
    :param batch_size: minibatch size.
    :param lr: Adam step size; ``None``: :data:`DEFAULT_LR` of the model.

    The shared fields (seed, device, out, progress, overwrite, resume, resume_override) come from
    :class:`~pyro_deepgen.experiments.common.ResumableConfig`.
    """

    model: str = "made"
    hidden: Optional[Tuple[int, ...]] = None
    orderings: int = 1
    data: str = "digits"
    data_root: Optional[str] = None
    download: bool = False
    epochs: int = DEFAULT_EPOCHS
    patience: int = DEFAULT_PATIENCE
    batch_size: int = 100
    lr: Optional[float] = None
    out: Union[str, Path] = Path("runs/autoregressive")

    def __post_init__(self) -> None:
        check_choice(self, "model", MODELS)
        check_int_tuple(self, "hidden", allow_none=True)
        check_positive_int(self, "orderings", "epochs", "patience", "batch_size")
        if self.model != "made" and self.orderings != 1:
            raise ValueError(f"orderings (--orderings) applies to --model made only; got {self.orderings} "
                             f"with model={self.model!r}")
        hidden = self.hidden or DEFAULT_HIDDEN[self.model]
        if self.model == "nade" and len(hidden) != 1:
            raise ValueError(f"hidden (--hidden) for --model nade is one size (the hidden units), got {hidden}")
        if self.model == "pixelcnn" and len(set(hidden)) != 1:
            raise ValueError(f"hidden (--hidden) for --model pixelcnn is the channels of each block, all equal, "
                             f"got {hidden}")
        if self.lr is not None:
            check_positive_float(self, "lr")
        check_data(self)
        check_common(self)


def build_model(config: AutoregressiveConfig, dim: int) -> AutoregressiveModule:
    """The model of ``config`` over ``dim`` binary pixels (masks seeded with ``config.seed``)."""
    hidden = config.hidden or DEFAULT_HIDDEN[config.model]
    if config.model == "nade":
        return NADE(dim, hidden[0])
    if config.model == "made":
        return MADE(dim, hidden, num_masks=config.orderings, seed=config.seed)
    side = image_shape(dim)[0]
    if side * side != dim:
        raise ValueError(f"model='pixelcnn' (--model pixelcnn) needs square images, got {dim} pixels")
    return PixelCNN(side, channels=hidden[0], layers=len(hidden))


@torch.no_grad()
def nll(model: AutoregressiveModule, x: torch.Tensor, batch_size: int = 500, masks=None) -> float:
    """The exact mean negative log-likelihood of ``x`` (nats), in ``eval()`` mode (the ensemble
    of every mask, or ``masks``)."""
    was = model.training
    model.eval()
    try:
        total = sum(-model(masks=masks).log_prob(x[i:i + batch_size]).sum().item()
                    for i in range(0, x.shape[0], batch_size))
    finally:
        model.train(was)
    return total / x.shape[0]


def run(config: AutoregressiveConfig) -> Dict[str, Any]:
    """Train, evaluate (see the module doc), write the files to ``config.out``, print the summary
    and return the report (the contents of ``report.json``)."""
    folder = prepare_output(config.out, COMMAND, overwrite=config.overwrite, resume=config.resume)
    data = load_data(config, "threshold")
    device = config.device
    train_index, val_index = holdout_indices(data.x_train.shape[0], VAL_FRACTION, config.seed)
    x_train = data.x_train[train_index].to(device)
    x_val = data.x_train[val_index].to(device)
    x_test = data.x_test.to(device)
    dim = x_train.shape[1]

    pyro.set_rng_seed(config.seed)
    pyro.clear_param_store()
    model = build_model(config, dim).to(device)
    t0 = time.time()
    history = fit(
        model.model, model.guide, x_train, loss=Trace_ELBO(max_plate_nesting=1),
        lr=config.lr or DEFAULT_LR[config.model],
        epochs=config.epochs, batch_size=config.batch_size, seed=config.seed, progress=config.progress,
        val_data=x_val, eval_fn=lambda m, g, x: nll(model, x), patience=config.patience,
        **fit_run_arguments(config, COMMAND, folder),
    )
    train_seconds = time.time() - t0
    test_nll = nll(model, x_test)
    report = {
        "model": config.model,
        "test_log_likelihood": -test_nll,
        "test_bits_per_dim": test_nll / (dim * math.log(2)),
        "val_log_likelihood": -nll(model, x_val),
        "train_log_likelihood": -nll(model, x_train),
        "test_log_likelihood_per_mask": [-nll(model, x_test, masks=[k]) for k in range(model.num_masks)],
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "lr": config.lr or DEFAULT_LR[config.model],
        "epochs": history.epochs,
        "best_epoch": history.best_epoch,
        "stopped_early": history.stopped_early,
        "seconds": time.time() - t0,
        "train_seconds": train_seconds,
        "train_loss": history.loss,
        "val_loss": [v for _, v in history.val],
        "test_split": data.test_split,
        "num_train": int(x_train.shape[0]),
        "num_val": int(x_val.shape[0]),
        "num_test": int(x_test.shape[0]),
        "settings": settings(config, COMMAND),
        **resume_report(history),
    }
    with folder.results() as out:
        write_report(out, report)
        write_figures(model, history, dim, out, config.seed)
    print_summary(report)
    print(wrote_line(config.out, folder.files))
    return report


def write_figures(model: AutoregressiveModule, history, dim: int, out: Path, seed: int) -> None:
    """``samples.png`` (64 exact samples, ensemble in ``eval()`` mode) and ``loss.png``."""
    pyro.set_rng_seed(seed)
    model.eval()
    samples = model().sample((64,))
    save_image_grid(samples, out / "samples.png", image_shape(dim), title="samples x ~ p(x)",
                    caption="64 exact draws, one pixel at a time in the model's order")
    save_loss_curve(history.loss, out / "loss.png", history.val, ylabel="NLL per image (nats)")


def print_summary(report: Dict[str, Any]) -> None:
    """The summary table of a report."""
    rows = [
        ("model", report["model"]),
        ("test log p(x) (exact, nats)", f"{report['test_log_likelihood']:.2f}"),
        ("test bits/dim", f"{report['test_bits_per_dim']:.4f}"),
        ("val / train log p(x)", f"{report['val_log_likelihood']:.2f} / {report['train_log_likelihood']:.2f}"),
        ("test split", report["test_split"]),
        ("epochs (best) / seconds", f"{report['epochs']} ({report['best_epoch']}) / {report['seconds']:.1f}"),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))


def load_sampler(run_dir: Union[str, Path], device: Union[str, torch.device] = "cpu") -> Callable[[int], torch.Tensor]:
    """The trained autoregressive model of a finished run folder as ``sample(n) -> (n, D)``
    binary images: exact ancestral draws, one pixel at a time (the ensemble in ``eval()`` mode).
    The parameters are the checkpoint's best-validation snapshot when it has one."""
    import types

    from ..train import load_checkpoint
    from .common import read_run_report

    s = read_run_report(run_dir, COMMAND)["settings"]
    state = load_checkpoint(Path(run_dir) / "checkpoint.pt", map_location=device)
    modules = (state.get("best") or state)["modules"]
    config = types.SimpleNamespace(**{**s, "hidden": tuple(s["hidden"]) if s["hidden"] else None})
    model = build_model(config, 64 if s["data"] == "digits" else 784)
    model.load_state_dict(modules[0])
    model.to(device).eval()
    return lambda n: model().sample((n,))

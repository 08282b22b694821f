r"""Train a binary RBM with CD-k or PCD on the 8x8 digits or MNIST and estimate its test
log-likelihood with annealed importance sampling.

The pixels are binarized at 0.5. The RBM (:class:`~pyro_deepgen.energy.RBM`, visible biases
started at the log-odds of the pixel marginals, Hinton 2010) is trained by
:func:`~pyro_deepgen.train.fit` on :class:`~pyro_deepgen.energy.ContrastiveDivergence`
(CD-k, Hinton 2002, or persistent CD, Tieleman 2008), whose loss is the batch sum of the
free-energy gap :math:`F(v_\text{data}) - F(v_\text{model})`, with SGD and momentum (see
:func:`make_optimizer`). Every epoch prints the monitors of :func:`monitors`. After training,
AIS (Salakhutdinov & Murray 2008) estimates :math:`\log Z` from a base-rate model fitted to the
training marginals, giving the test log-likelihood

.. math::

    \frac1N \sum_{n=1}^N \log p(v_n) = \frac1N \sum_{n=1}^N -F(v_n) - \log \hat Z

with the standard error of :math:`\log \hat Z`. A seeded ``val_fraction`` of the training
images is held out; their exact pseudo-log-likelihood after every epoch decides early stopping,
and the best epoch's parameters are kept. The mixing of the trained model's chains (parallel
tempering by default, :class:`~pyro_deepgen.energy.ParallelTempering`, or block Gibbs) is
summarized by :func:`chain_summary` (R-hat and ESS through ``pyro.infer.MCMC`` and arviz).

:func:`run` writes ``report.json``, ``rbm.pt`` (the state dict), ``samples.png`` (fantasy
particles), ``weights.png`` (filters of the first hidden units), ``chains_summary.csv`` /
``chains_summary.txt`` and ``loss.png`` to ``config.out``. ``pyro-deepgen rbm`` calls it.

**References**: G. E. Hinton, *Training Products of Experts by Minimizing Contrastive
Divergence*, Neural Computation 2002. T. Tieleman, *Training Restricted Boltzmann Machines
using Approximations to the Likelihood Gradient*, ICML 2008. R. Salakhutdinov, I. Murray, *On
the Quantitative Analysis of Deep Belief Networks*, ICML 2008. G. E. Hinton, *A Practical
Guide to Training Restricted Boltzmann Machines*, UTML TR 2010-003.
"""
import copy
import dataclasses
import json
import os
import statistics
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Union

import pyro
import torch

from ..energy import (
    RBM,
    BlockGibbs,
    ContrastiveDivergence,
    ParallelTempering,
    ais_log_partition,
    log_likelihood_sandwich,
    mean_log_likelihood,
    pseudo_log_likelihood,
    reconstruction_error,
)
from ..infer import default_ais_schedule
from ..plotting import image_shape, save_image_grid, save_loss_curve
from ..train import History, fit
from .common import (
    ResumableConfig,
    check_common,
    check_data,
    check_choice,
    check_nonnegative_float,
    check_positive_float,
    check_positive_int,
    fit_run_arguments,
    load_data,
    prepare_output,
    resume_report,
    settings,
    write_json,
    write_report,
)

COMMAND = "rbm"
#: Settings used only after training, which a resumed run may change (``--resume-override``).
AFTER_TRAINING = ("ais_betas", "ais_runs", "gibbs_steps", "chains", "chain_samples", "chain_warmup",
                  "sampler")
SAMPLERS = ("pt", "gibbs")  # the chain summary's and the sample figure's sampler
#: the statistics of the mixing check (``report["chains"]["mixed"]``): R-hat at most
#: ``MAX_RHAT`` and bulk ESS at least ``MIN_ESS`` for each (R-hat and bulk ESS as in Vehtari et al. 2021)
MIXING_STATISTICS = ("energy", "mean_hidden", "mean_visible")
MAX_RHAT, MIN_ESS = 1.05, 100
ROUND_TO = 4  # decimals of the chain summary (arviz rounds to 2, which would let R-hat 1.054 pass)
#: The chain summary's default number of draws per chain, by data set. An RBM trained on MNIST
#: has modes (the digit classes) that tempered chains leave only every few thousand rounds, so
#: its chains must be 25 times longer than on the 8x8 digits (measured, see the docs).
DEFAULT_CHAIN_SAMPLES = {"digits": 4000, "mnist": 100000}
MAX_DEFAULT_WARMUP = 8000  # the default warm-up: as many steps as draws, at most this many
MONITORS = "monitors.json"  # the per-epoch monitors, kept next to the checkpoint for --resume
MONITOR_SIZE = 1000  # images for the reconstruction error
PLL_SIZE = 200  # images for the exact pseudo-log-likelihood (V flips each)
RAISE_POINTS = 100  # test images scored by RAISE (the conservative side of the sandwich)
RAISE_RUNS = 10  # reverse chains per image
FIGURE_SAMPLES = 64  # images in samples.png


@dataclasses.dataclass
class RBMConfig(ResumableConfig):
    r"""The settings of :func:`run`, one per option of ``pyro-deepgen rbm`` (same defaults).

    :param data: ``digits`` (scikit-learn's 8x8 digits, embedded) or ``mnist`` (the IDX files in
        ``data_root``).
    :param data_root: folder with the MNIST IDX files.
    :param download: fetch the missing official MNIST files into ``data_root`` (checked by MD5).
    :param hidden: number of hidden units (a one-element sequence, as ``--hidden`` parses it, is
        taken as its element).
    :param cd_k: Gibbs sweeps of contrastive divergence (CD-k); ignored with ``pcd``.
    :param pcd: persistent CD (one sweep per update, one chain per batch element).
    :param pt_pcd: PCD whose persistent chains are run by parallel tempering (``temperatures``
        replicas down to ``min_beta``; Desjardins et al. 2010).
    :param epochs: training epochs.
    :param batch_size: minibatch size.
    :param lr: learning rate per example (the mean gradient's step size; the optimizer gets
        ``lr / batch_size`` since the loss is a batch sum).
    :param momentum: SGD momentum, in [0, 1). Default 0: on mnist-5k (CD-25, 100 epochs, lr
        0.05) momentum 0.9 overfits (held-out forward-AIS log-likelihood -152.5 against -90.3
        with momentum 0, issue 23; here -112.4 against -89.1 even with early stopping): momentum
        0.9 multiplies the effective step by 1 / (1 - 0.9) = 10.
    :param weight_decay: L2 cost on the weights (not the biases), >= 0.
    :param sparsity_target: target mean activation of the hidden units, in (0, 1), or None.
    :param sparsity_cost: weight of the sparsity penalty, >= 0.
    :param val_fraction: seeded fraction of the training images held out for validation, in
        [0, 1) (default 0.1; 0: no validation): the exact pseudo-log-likelihood of these images
        is computed after every epoch, and the parameters of the best epoch are kept.
    :param patience: stop after this many epochs without a better validation score (0: train
        all ``epochs``, still keeping the best epoch's parameters).
    :param ais_betas: AIS intermediate distributions, at least 3 (Salakhutdinov & Murray used
        14500; the default 2000 keeps the shape of their schedule).
    :param ais_runs: AIS runs, at least 2 (for an error bar).
    :param gibbs_steps: block-Gibbs sweeps for the fantasy particles of ``sampler="gibbs"``; with
        ``"pt"`` the sample figure shows states of the chain summary's own chains instead.
    :param chains: MCMC chains for the chain summary (default 8), run vectorized
        (:func:`~pyro_deepgen.energy.run_chains`).
    :param chain_samples: draws per chain (default ``None``: 4000 on the digits, 100,000 on
        MNIST, :data:`DEFAULT_CHAIN_SAMPLES`). On the mnist-5k RBM (CD-25, 100 epochs) 4000
        draws per chain left R-hat at 1.06 to 1.16 (depending on the seed), 40,000 gave up to
        1.04 and 60,000 up to 1.05 (the training seed 1); see the docs for 100,000.
    :param chain_warmup: warm-up steps per chain, during which the PT ladder adapts (default
        ``None``: as many as ``chain_samples``, at most 8000).
    :param sampler: ``"pt"`` (parallel tempering, default) or ``"gibbs"`` (block Gibbs) for the
        chain summary and the fantasy particles.
    :param temperatures: replicas of parallel tempering, including :math:`\beta = 1` (default
        25).
    :param min_beta: the hottest replica's inverse temperature, in (0, 1) (default 0.15). On the
        mnist-5k RBM (CD-25, 100 epochs) 25 replicas down to 0.15 with 4000 draws per chain
        mixed best of the ladders tried (see the docs); block Gibbs gives R-hat 1.45 to 1.93.

    The shared fields (seed, device, out, progress, overwrite, resume, resume_override) come from
    :class:`~pyro_deepgen.experiments.common.ResumableConfig`.
    """

    data: str = "digits"
    data_root: Optional[str] = None
    download: bool = False
    hidden: int = 500
    cd_k: int = 1
    pcd: bool = False
    epochs: int = 20
    batch_size: int = 100
    lr: float = 0.05
    momentum: float = 0.0
    weight_decay: float = 1e-4
    sparsity_target: Optional[float] = None
    sparsity_cost: float = 0.01
    pt_pcd: bool = False
    val_fraction: float = 0.1
    patience: int = 10
    ais_betas: int = 2000
    ais_runs: int = 100
    gibbs_steps: int = 1000
    chains: int = 8
    chain_samples: Optional[int] = None
    chain_warmup: Optional[int] = None
    sampler: str = "pt"
    temperatures: int = 25
    min_beta: float = 0.15
    out: Union[str, Path] = Path("runs/rbm")

    def __post_init__(self) -> None:
        check_data(self)
        if isinstance(self.hidden, (tuple, list)):  # --hidden 500 parses as (500,)
            if len(self.hidden) != 1:
                raise ValueError(f"hidden (--hidden) is the size of the RBM's one hidden layer: give one "
                                 f"number, e.g. 500; got {self.hidden!r}")
            self.hidden = self.hidden[0]
        if self.chain_samples is None:
            self.chain_samples = DEFAULT_CHAIN_SAMPLES[self.data]
        if self.chain_warmup is None and isinstance(self.chain_samples, int):
            self.chain_warmup = min(self.chain_samples, MAX_DEFAULT_WARMUP)
        check_positive_int(self, "hidden", "cd_k", "epochs", "batch_size", "ais_betas", "ais_runs",
                           "gibbs_steps", "chains", "chain_samples", "chain_warmup", "temperatures")
        if self.pcd and self.pt_pcd:
            raise ValueError("pcd (--pcd) and pt_pcd (--pt-pcd) exclude each other: pass one")
        if isinstance(self.val_fraction, bool) or not isinstance(self.val_fraction, (int, float)) \
                or not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction (--val-fraction) must be in [0, 1) (0: no validation), got "
                             f"{self.val_fraction!r}")
        if isinstance(self.patience, bool) or not isinstance(self.patience, int) or self.patience < 0:
            raise ValueError(f"patience (--patience) must be an integer >= 0 (0: no early stopping), got "
                             f"{self.patience!r}")
        check_choice(self, "sampler", SAMPLERS)
        if isinstance(self.min_beta, bool) or not isinstance(self.min_beta, (int, float)) \
                or not 0 < self.min_beta < 1:
            raise ValueError(f"min_beta (--min-beta) must be in (0, 1), got {self.min_beta!r}")
        check_positive_float(self, "lr")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum (--momentum) must be in [0, 1), got {self.momentum}")
        check_nonnegative_float(self, "weight_decay", "sparsity_cost")
        if self.sparsity_target is not None and not 0 < self.sparsity_target < 1:
            raise ValueError(f"sparsity_target (--sparsity-target) must be in (0, 1), got "
                             f"{self.sparsity_target}")
        if self.ais_betas < 3:
            raise ValueError(f"ais_betas (--ais-betas) must be at least 3, got {self.ais_betas}")
        if self.ais_runs < 2:
            raise ValueError(f"ais_runs (--ais-runs) must be at least 2 for an error bar, got "
                             f"{self.ais_runs}")
        check_common(self)

    @property
    def method(self) -> str:
        """``"PT-PCD"``, ``"PCD"`` or ``"CD-k"``."""
        return "PT-PCD" if self.pt_pcd else "PCD" if self.pcd else f"CD-{self.cd_k}"


def make_optimizer(rbm: RBM, lr: float, momentum: float, weight_decay: float,
                   batch_size: int) -> Callable[[Any], torch.optim.Optimizer]:
    """SGD with momentum for the summed CD loss; L2 decay on the weights only. ``lr`` and
    ``weight_decay`` are per example: the optimizer gets ``lr / batch_size`` and
    ``weight_decay * batch_size``."""

    def build(params):
        return torch.optim.SGD([
            {"params": [rbm.weight], "weight_decay": weight_decay * batch_size},
            {"params": [rbm.visible_bias, rbm.hidden_bias], "weight_decay": 0.0},
        ], lr=lr / batch_size, momentum=momentum)

    return build


def monitors(rbm: RBM, x_train: torch.Tensor, x_test: torch.Tensor,
             x_val: Optional[torch.Tensor] = None) -> Dict[str, float]:
    """Reconstruction error (up to 1000 images) and exact pseudo-log-likelihood (up to 200) per
    image, of the first training and test (and validation) images."""
    out = {}
    splits = (("train", x_train), ("test", x_test)) + (() if x_val is None else (("val", x_val),))
    for split, x in splits:
        recon = reconstruction_error(rbm, x[:MONITOR_SIZE])
        out[f"{split}_reconstruction_error"] = recon.mean().item()
        pll = pseudo_log_likelihood(rbm, x[:PLL_SIZE])
        out[f"{split}_pseudo_log_likelihood"] = pll.mean().item()
    return out


def chain_summary(rbm: RBM, num_chains: int, num_samples: int, progress: bool = True,
                  sampler: str = "gibbs", temperatures: int = 10, min_beta: float = 0.5,
                  thin: int = 1, base_rate: Optional[torch.Tensor] = None,
                  warmup_steps: Optional[int] = None, vectorized: bool = True, snapshots: int = 0):
    r"""The arviz summary (R-hat, ESS) of the chain statistics of :class:`BlockGibbs`
    (``sampler="gibbs"``) or :class:`ParallelTempering` (``"pt"``: ``temperatures`` replicas
    down to ``min_beta``, the ladder adapted during the warm-up; with ``base_rate``, visible
    log-odds :math:`b_A`, the ladder ends at :math:`\beta = 0` on the base-rate path
    :math:`p_\beta \propto p_A^{1-\beta} p^\beta`): ``num_chains`` chains of ``num_samples``
    draws after ``warmup_steps`` warm-up steps (default as many as the draws), each draw or
    warm-up step ``thin`` sweeps (sweep-and-swap rounds) after the last, each chain from its own
    random start.

    ``vectorized=True`` (default) advances all chains with one batched sweep on the model's
    device (:func:`~pyro_deepgen.energy.run_chains`; a PT ladder is then adapted once for all
    chains); ``vectorized=False`` runs them through ``pyro.infer.MCMC``, one after another or in
    worker processes, on the CPU, each PT chain adapting its own ladder. The table's ``attrs``
    hold ``"sweeps"`` and ``"warmup"`` (per chain), and for PT the ladders (``"betas"``) and swap
    acceptance rates (``"swap_acceptance"``): one entry per chain, or with ``vectorized`` one for
    all (``"shared_ladder"``). With ``snapshots`` = k > 0 (vectorized only) ``attrs["snapshots"]``
    holds k states of each chain, evenly spaced over its draws, as visible means
    :math:`p(v=1\mid h)` of shape ``(chains, k, V)``: samples of the very chains whose mixing
    the table reports."""
    from pyro.infer import MCMC

    from ..diagnostics import summary
    from ..energy import run_chains

    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}; got {sampler!r}")
    if isinstance(thin, bool) or not isinstance(thin, int) or thin < 1:
        raise ValueError(f"thin must be a positive integer (sweeps per retained draw), got {thin!r}")
    warmup_steps = num_samples if warmup_steps is None else warmup_steps
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"warmup_steps must be an integer >= 0, got {warmup_steps!r}")
    if base_rate is not None and sampler != "pt":
        raise ValueError("base_rate is the hot end of parallel tempering: pass sampler='pt' or no base_rate")
    if isinstance(snapshots, bool) or not isinstance(snapshots, int) or snapshots < 0 \
            or (snapshots and not vectorized) or snapshots > num_samples:
        raise ValueError(f"snapshots must be an integer from 0 to num_samples ({num_samples}), with "
                         f"vectorized=True; got {snapshots!r}")
    if not vectorized:
        rbm = copy.deepcopy(rbm).cpu()  # MCMC's worker processes are forked: keep CUDA out of them
    particles = dict(num_particles=num_chains) if vectorized else {}
    kernel = (ParallelTempering(rbm, num_temperatures=temperatures, min_beta=min_beta, num_sweeps=thin,
                                base_rate=base_rate, **particles) if sampler == "pt"
              else BlockGibbs(rbm, num_sweeps=thin, **particles))
    names = list(BlockGibbs.STATISTICS)
    if vectorized:
        every = {"h": num_samples // snapshots} if snapshots else None
        draws = run_chains(kernel, num_samples, warmup_steps, names, progress, every=every)
        hidden = draws.pop("h", None)
        table = summary(draws, var_names=names, round_to=ROUND_TO)
        if hidden is not None:
            with torch.no_grad():
                table.attrs["snapshots"] = rbm.visible_mean(hidden[:, -snapshots:].to(rbm.weight)).cpu()
    else:
        with warnings.catch_warnings():
            # on small machines MCMC runs the chains one after another and says so: expected here
            warnings.filterwarnings("ignore", message="num_chains=.*drawn sequentially")
            mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=warmup_steps,
                        num_chains=num_chains, save_params=names, disable_progbar=not progress)
            mcmc.run()
        table = summary(mcmc, var_names=names, round_to=ROUND_TO)
    table.attrs["sampler"] = sampler
    table.attrs["sweeps"] = (num_samples + warmup_steps) * thin
    table.attrs["warmup"] = warmup_steps * thin
    table.attrs["thin"] = thin
    table.attrs["base_rate"] = base_rate is not None
    table.attrs["vectorized"] = vectorized
    if sampler == "pt":
        if vectorized:
            diagnostics = kernel.diagnostics()
            table.attrs["shared_ladder"] = True
            for key in ("betas", "swap_acceptance"):
                table.attrs[key] = [diagnostics[key]]
        else:
            diagnostics = mcmc.diagnostics()
            for key in ("betas", "swap_acceptance"):
                table.attrs[key] = [diagnostics[key][f"chain {i}"] for i in range(num_chains)]
    return table


def mixing_report(table) -> Dict[str, Any]:
    """The report's ``chains`` entry: the sampler, R-hat, bulk and tail ESS of the chain
    statistics, ``mixed`` (R-hat <= ``MAX_RHAT`` (1.05) and bulk ESS >= ``MIN_ESS`` (100) for each of
    :data:`MIXING_STATISTICS`), and for PT the ladders and swap rates (one per chain, or one
    shared by the vectorized chains: ``shared_ladder``)."""
    rows = [name for name in ("energy", "free_energy", "mean_hidden", "mean_visible") if name in table.index]
    out = {"sampler": table.attrs.get("sampler"),
           "r_hat": {name: float(table.loc[name, "r_hat"]) for name in rows},
           "ess_bulk": {name: float(table.loc[name, "ess_bulk"]) for name in rows},
           "ess_tail": {name: float(table.loc[name, "ess_tail"]) for name in rows}}
    out["mixed"] = all(out["r_hat"][name] <= MAX_RHAT and out["ess_bulk"][name] >= MIN_ESS
                       for name in MIXING_STATISTICS if name in rows)
    for key in ("betas", "swap_acceptance", "shared_ladder", "sweeps", "warmup", "thin", "base_rate",
                "vectorized"):
        if key in table.attrs:
            out[key] = table.attrs[key]
    return out


def mixing_text(table) -> str:
    """``chains_summary.txt``: the table, then the sampler, ladder and swap rates."""
    lines = [table.to_string(), "", f"sampler: {table.attrs.get('sampler')}"
             + (" (base-rate hot end, beta = 0)" if table.attrs.get("base_rate") else "")]
    if "sweeps" in table.attrs:
        lines.append(f"sweeps per chain (warm-up included): {table.attrs['sweeps']}"
                     + (f" ({table.attrs['warmup']} warm-up)" if "warmup" in table.attrs else "")
                     + f", {table.attrs.get('thin', 1)} per retained draw")
    for i, (betas, rates) in enumerate(zip(table.attrs.get("betas", []), table.attrs.get("swap_acceptance", []))):
        who = "all chains (one shared ladder)" if table.attrs.get("shared_ladder") else f"chain {i}"
        lines.append(f"{who}: betas " + " ".join(f"{b:.3f}" for b in betas))
        lines.append(f"{who}: swap acceptance " + " ".join(f"{a:.2f}" for a in rates))
    return "\n".join(lines) + "\n"


def validation_split(x: torch.Tensor, fraction: float, seed: int):
    """``(train, val)``: a seeded random ``fraction`` of the rows of ``x`` held out (``val`` is
    ``None`` for ``fraction = 0``); the same seed gives the same split."""
    n_val = int(round(fraction * x.shape[0]))
    if n_val == 0:
        return x, None
    if n_val >= x.shape[0]:
        raise ValueError(f"val_fraction (--val-fraction) {fraction} leaves no training images of "
                         f"{x.shape[0]}; use a smaller fraction")
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed)).to(x.device)
    return x[order[n_val:]], x[order[:n_val]]


def _negative_pseudo_log_likelihood(rbm: RBM, guide, v: torch.Tensor) -> float:
    """Early stopping's score (lower is better): minus the mean exact pseudo-log-likelihood."""
    return -pseudo_log_likelihood(rbm, v).mean().item()


def _saved_monitors(path: Path) -> list:
    """The per-epoch monitors an interrupted run wrote (``[]`` if none)."""
    try:
        return list(json.loads(path.read_text()))
    except (OSError, ValueError):
        return []


def _write_atomically(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write_json(tmp, data)
    os.replace(tmp, path)


def run(config: RBMConfig) -> Dict[str, Any]:
    """Train, estimate the log-likelihood, write the files to ``config.out``, print the summary
    and return the report (the contents of ``report.json``). The output folder is checked first
    (:func:`~pyro_deepgen.experiments.common.prepare_output`); training checkpoints to
    ``out/checkpoint.pt`` (with the loss's PCD chains) and the monitors to ``out/monitors.json``
    after every epoch, and ``resume`` continues from them with the same report as an
    uninterrupted run."""
    folder = prepare_output(config.out, COMMAND, overwrite=config.overwrite, resume=config.resume)
    monitors_file = folder.path / MONITORS
    data = load_data(config, binarize="threshold")
    device = config.device
    x_train, x_val = validation_split(data.x_train.to(device), config.val_fraction, config.seed)
    x_test = data.x_test.to(device)
    num_visible = x_train.shape[1]

    pyro.set_rng_seed(config.seed)
    rbm = RBM(num_visible, config.hidden).to(device)
    rbm.init_visible_bias(x_train)  # Hinton's guide: the log-odds of the marginals
    persistent = config.pcd or config.pt_pcd
    pt_args = dict(sampler="pt", num_temperatures=config.temperatures, min_beta=config.min_beta) \
        if config.pt_pcd else {}
    loss = ContrastiveDivergence(k=1 if persistent else config.cd_k, persistent=persistent,
                                 sparsity_target=config.sparsity_target,
                                 sparsity_cost=config.sparsity_cost, **pt_args)
    per_epoch = _saved_monitors(monitors_file) if config.resume else []
    folder.record(MONITORS)
    monitor_seconds = [0.0]
    epoch_seconds = []  # training time of each epoch, without the monitors
    epoch_start = [0.0]

    def callback(epoch, history):
        t = time.time()
        epoch_seconds.append(t - epoch_start[0])
        metrics = monitors(rbm, x_train, x_test)
        val = ""
        if history.val and history.val[-1][0] == epoch:  # fit's validation: minus the mean PLL
            metrics["val_pseudo_log_likelihood"] = -history.val[-1][1]
            val = f" / {metrics['val_pseudo_log_likelihood']:8.3f}"
        per_epoch[:] = [m for m in per_epoch if m["epoch"] < epoch]
        per_epoch.append(dict(epoch=epoch, loss=history.loss[-1], **metrics))
        _write_atomically(monitors_file, per_epoch)
        print(f"epoch {epoch:3d}  free-energy gap {history.loss[-1]:8.3f}  reconstruction error "
              f"{metrics['train_reconstruction_error']:7.3f} / "
              f"{metrics['test_reconstruction_error']:7.3f}"
              f"  PLL {metrics['train_pseudo_log_likelihood']:8.3f} / "
              f"{metrics['test_pseudo_log_likelihood']:8.3f}{val} (train / test"
              f"{' / validation' if val else ''})", flush=True)
        monitor_seconds[0] += time.time() - t
        epoch_start[0] = time.time()

    t0 = epoch_start[0] = time.time()
    history = fit(rbm, None, x_train, loss=loss, module=rbm, epochs=config.epochs,
                  batch_size=config.batch_size, seed=config.seed, progress=config.progress,
                  optimizer=make_optimizer(rbm, config.lr, config.momentum, config.weight_decay,
                                           config.batch_size),
                  callback=callback, val_data=x_val, eval_fn=_negative_pseudo_log_likelihood,
                  patience=config.patience or None, restore_best=True,
                  **fit_run_arguments(config, COMMAND, folder, AFTER_TRAINING))
    train_seconds = time.time() - t0 - monitor_seconds[0]  # without the monitors
    t1 = time.time()
    # everything after training starts from the seed: a resumed run reports the same numbers
    pyro.set_rng_seed(config.seed)
    log_z, stderr = ais_log_partition(rbm, betas=default_ais_schedule(config.ais_betas),
                                      num_runs=config.ais_runs, base_rate=x_train)
    ais_seconds = time.time() - t1
    # the conservative side (RAISE, Burda et al. 2015) on the first RAISE_POINTS test images, on
    # the same ladder and base rate; the gap is forward AIS minus RAISE on those images
    sandwich = log_likelihood_sandwich(rbm, x_test[:RAISE_POINTS], default_ais_schedule(config.ais_betas),
                                       raise_runs=RAISE_RUNS, base_rate=x_train, log_z=(log_z, stderr))
    report = {
        "test_log_likelihood_raise": sandwich["raise"]["mean"],
        "test_log_likelihood_raise_stderr": sandwich["raise"]["stderr"],
        "sandwich_gap": sandwich["gap"],
        "raise_points": sandwich["settings"]["num_points"],
        "raise_seconds": time.time() - t1 - ais_seconds,
        "test_log_likelihood": mean_log_likelihood(rbm, x_test, log_z).item(),
        "train_log_likelihood": mean_log_likelihood(rbm, x_train, log_z).item(),
        "log_z": log_z.item(),
        "log_z_stderr": stderr.item(),
        # the median epoch: the first one also pays one-time costs (torch imports its
        # compiler stack when the first optimizer is built, about 1.5 s on 2 CPU cores);
        # None when a resumed run had no epoch left to train
        "seconds_per_epoch": statistics.median(epoch_seconds) if epoch_seconds else None,
        "train_seconds": train_seconds,
        "epochs": history.epochs,
        "ais_seconds": ais_seconds,
        "ais_betas": config.ais_betas,
        "ais_runs": config.ais_runs,
        "method": config.method,
        "per_epoch": per_epoch,
        # the epoch whose parameters were kept (best validation pseudo-log-likelihood)
        "best_epoch": history.best_epoch,
        "stopped_early": history.stopped_early,
        "val_pseudo_log_likelihood": (None if history.best_epoch is None
                                      else -min(value for _, value in history.val)),
        "test_split": data.test_split,
        "num_train": int(x_train.shape[0]),
        "num_val": 0 if x_val is None else int(x_val.shape[0]),
        "num_test": int(x_test.shape[0]),
        "settings": settings(config, COMMAND),
        **resume_report(history),
    }
    t2 = time.time()
    pyro.set_rng_seed(config.seed)
    # the sample figure shows states of the chain summary's own PT chains (64 in all)
    snapshots = min(-(-FIGURE_SAMPLES // config.chains), config.chain_samples) if config.sampler == "pt" else 0
    summary = chain_summary(rbm, config.chains, config.chain_samples, config.progress,
                            sampler=config.sampler, temperatures=config.temperatures,
                            min_beta=config.min_beta, warmup_steps=config.chain_warmup, snapshots=snapshots)
    particles = summary.attrs.pop("snapshots", None)
    report["chains"] = {**mixing_report(summary), "num_chains": config.chains, "draws": config.chain_samples}
    report["chains_seconds"] = time.time() - t2
    with folder.results() as out:
        summary.to_csv(out / "chains_summary.csv")
        (out / "chains_summary.txt").write_text(mixing_text(summary))
        write_report(out, report)
        torch.save(rbm.state_dict(), out / "rbm.pt")
        write_figures(rbm, history, config.gibbs_steps, out, sampler=config.sampler,
                      temperatures=config.temperatures, min_beta=config.min_beta,
                      particles=particles, chain_samples=config.chain_samples)
    print(mixing_text(summary), end="")
    per_epoch_time = ("" if report["seconds_per_epoch"] is None
                      else f"; {report['seconds_per_epoch']:.2f} s per epoch")
    print(f"{report['method']}: log Z = {report['log_z']:.2f} +- {report['log_z_stderr']:.2f}"
          f" (AIS, {config.ais_betas} betas x {config.ais_runs} runs); test log-likelihood "
          f"{report['test_log_likelihood']:.2f} nats (RAISE {report['test_log_likelihood_raise']:.2f} on "
          f"{report['raise_points']} images, gap {report['sandwich_gap']:.2f}){per_epoch_time}; results in "
          f"{config.out}")
    return report


def tempered_fantasy_particles(rbm: RBM, num_particles: int, num_steps: int, temperatures: int = 10,
                               min_beta: float = 0.5, base_rate: Optional[torch.Tensor] = None) -> torch.Tensor:
    r"""``num_particles`` fantasy particles of parallel-tempering chains (the :math:`\beta = 1`
    replica's :math:`E[v\mid h]` after ``num_steps`` sweep-and-swap rounds from random starts;
    the ladder adapted during the first half; ``base_rate``: visible log-odds of a base-rate
    hot end at :math:`\beta = 0`), shape ``(num_particles, V)``."""
    kernel = ParallelTempering(rbm, num_temperatures=temperatures, min_beta=min_beta,
                               num_particles=num_particles, base_rate=base_rate)
    kernel.setup(num_steps // 2)
    params = kernel.initial_params
    for _ in range(num_steps):
        params = kernel.sample(params)
    with torch.no_grad():
        return rbm.visible_mean(params["h"])


def write_figures(rbm: RBM, history: History, gibbs_steps: int, out: Path, sampler: str = "gibbs",
                  temperatures: int = 10, min_beta: float = 0.5, particles: Optional[torch.Tensor] = None,
                  chain_samples: Optional[int] = None) -> None:
    """``samples.png`` (with ``particles`` ``(chains, k, V)``: the chain summary's PT snapshots,
    see :func:`chain_summary`; otherwise fantasy particles after ``gibbs_steps`` block-Gibbs
    sweeps, or with ``sampler="pt"`` as many parallel-tempering rounds), ``weights.png`` (the
    first 100 filters, each scaled to [0, 1]) and ``loss.png``."""
    shape = image_shape(rbm.num_visible)
    if particles is not None:
        chains, k = particles.shape[:2]
        spacing = "" if chain_samples is None else f", {chain_samples // k} rounds apart"
        title = f"samples of the {chains} parallel-tempering chains of the chain summary"
        caption = (f"p(v=1|h) of the beta = 1 replica: row-wise {k} states of each chain{spacing} "
                   f"({temperatures} temperatures down to {min_beta})")
        particles = particles.reshape(chains * k, -1)[:FIGURE_SAMPLES]
    elif sampler == "pt":
        particles = tempered_fantasy_particles(rbm, 64, gibbs_steps, temperatures, min_beta)
        title = f"fantasy particles after {gibbs_steps} parallel-tempering steps"
        caption = (f"visible means p(v=1|h) of the beta = 1 replica of 64 independent chains "
                   f"({temperatures} temperatures down to {min_beta})")
    else:
        particles = rbm.sample(64, num_steps=gibbs_steps)
        title = f"fantasy particles after {gibbs_steps} Gibbs sweeps"
        caption = "visible means p(v=1|h) of 64 independent block-Gibbs chains"
    save_image_grid(particles, out / "samples.png", shape, title=title, caption=caption)
    with torch.no_grad():
        w = rbm.weight[:100]
        lo, hi = w.min(1, keepdim=True).values, w.max(1, keepdim=True).values
        filters = (w - lo) / (hi - lo).clamp_min(1e-12)
    save_image_grid(filters, out / "weights.png", shape, title="filters (rows of W)",
                    caption=f"weights of the first {len(filters)} hidden units, each scaled to [0, 1]")
    save_loss_curve(history.loss, out / "loss.png", ylabel="free-energy gap per image")


def load_sampler(run_dir: Union[str, Path], device: Union[str, torch.device] = "cpu",
                 num_steps: Optional[int] = None, mean: bool = True) -> Callable[[int], torch.Tensor]:
    """The trained RBM of a finished run folder (its ``rbm.pt``) as ``sample(n) -> (n, V)``:
    ``n`` fantasy particles after ``num_steps`` block-Gibbs sweeps (default: the run's
    ``gibbs_steps``) from random starts, all chains at once; ``mean=True`` gives E[v|h] of the last
    sweep, else binary draws."""
    from .common import read_run_report

    s = read_run_report(run_dir, COMMAND)["settings"]
    state = torch.load(Path(run_dir) / "rbm.pt", map_location=device, weights_only=True)
    rbm = RBM(state["visible_bias"].shape[0], state["hidden_bias"].shape[0]).to(device)
    rbm.load_state_dict(state)
    steps = s["gibbs_steps"] if num_steps is None else num_steps
    return lambda n: rbm.sample(n, num_steps=steps, mean=mean)

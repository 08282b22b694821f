"""Train a binary RBM with CD-k, PCD or PT-PCD on the 8x8 digits (default) or MNIST and estimate
its test log-likelihood with annealed importance sampling.

The pixels are binarized at 0.5. A seeded --val-fraction (default 10%) of the training images is
held out: after every epoch their exact pseudo-log-likelihood decides early stopping (--patience),
and the best epoch's parameters are kept. Every epoch prints the reconstruction error (on up to
1000 images) and the exact pseudo-log-likelihood (on up to 200) of training and test images. After
training, AIS (Salakhutdinov & Murray 2008) estimates log Z from a base-rate model fitted to the
training marginals, giving the test log-likelihood mean(-F(v)) - log Z-hat with its standard error.
Writes to --out: report.json, rbm.pt (the state dict), samples.png (fantasy particles),
weights.png (filters of the first hidden units), chains_summary.csv / chains_summary.txt
(arviz summary with R-hat and ESS of parallel-tempering chains, or block-Gibbs with --sampler
gibbs, run through pyro.infer.MCMC) and loss.png.

--ais-betas defaults to 2,000 intermediate distributions (the paper's 14,500, shape kept) so that
the defaults finish in about a minute on two CPU cores; pass --ais-betas 14500 for the paper's.
"""
import argparse

from .._compat import moved_attributes
from ..experiments.rbm import RBMConfig
from ..experiments.rbm import run as run_experiment
from .common import (
    MARKER_FILE,
    RUN_REPORT,
    SIZES_METAVAR,
    add_common_arguments,
    add_data_arguments,
    config_from_args,
    int_list,
    nonnegative_float,
    positive_float,
    positive_int,
    unit_interval,
)

HELP = "train a restricted Boltzmann machine (CD-k / PCD) and estimate log p(x) by AIS"
#: What the command writes to --out: its files, and the keys of report.json.
OUTPUTS = {
    "files": {
        "report.json": "the report (keys below)",
        "checkpoint.pt": "the training checkpoint after the last epoch (--resume continues from it)",
        "monitors.json": "the per-epoch monitors, kept for --resume",
        "rbm.pt": "the trained RBM's state dict",
        "samples.png": "with --sampler pt: states of the chain summary's chains (8 per chain, evenly spaced); "
                       "with gibbs: fantasy particles after --gibbs-steps sweeps",
        "weights.png": "the filters (rows of W) of the first 100 hidden units",
        "loss.png": "the free-energy gap per image by epoch",
        "chains_summary.csv": "arviz summary (ESS, R-hat) of --chains chains (--sampler) of the energy, free "
                              "energy and mean activations",
        "chains_summary.txt": "the same table as text, with the PT ladders and swap acceptance rates",
        **MARKER_FILE,
    },
    "report": {
        "test_log_likelihood": "mean log p(v) per test image with the AIS log Z, nats",
        "train_log_likelihood": "mean log p(v) per training image with the AIS log Z, nats",
        "log_z": "AIS estimate of log Z (--ais-betas temperatures, --ais-runs runs)",
        "log_z_stderr": "its standard error",
        "test_log_likelihood_raise": "RAISE's conservative mean log p(v) (Burda et al. 2015) of the first "
                                     "100 test images, same temperatures, 10 reverse chains each, nats",
        "test_log_likelihood_raise_stderr": "its Monte Carlo standard error",
        "sandwich_gap": "forward AIS minus RAISE on those images, nats (small: both sides are accurate)",
        "raise_points": "test images scored by RAISE",
        "raise_seconds": "wall-clock seconds of RAISE",
        "per_epoch": "the monitors by epoch (reconstruction error, pseudo-log-likelihood, seconds)",
        "seconds_per_epoch": "median wall-clock seconds of a training epoch (None without epochs timed)",
        "train_seconds": "wall-clock seconds of training, without the monitors",
        "epochs": "epochs trained",
        "ais_seconds": "wall-clock seconds of AIS",
        "ais_betas": "the AIS temperatures",
        "ais_runs": "the AIS runs",
        "method": "the training method: CD-k, PCD or PT-PCD",
        "best_epoch": "the epoch whose parameters were kept (best validation pseudo-log-likelihood)",
        "stopped_early": "whether --patience stopped training",
        "val_pseudo_log_likelihood": "the kept epoch's mean exact pseudo-log-likelihood of the validation images",
        "num_val": "validation images (--val-fraction of the training images, seeded)",
        "chains": "the chain summary's sampler, R-hat, bulk and tail ESS of the energy, free energy and "
                  "mean activations, 'mixed' (R-hat <= 1.05 and bulk ESS >= 100 for the energy and mean "
                  "activations), and with --sampler pt each chain's ladder and swap acceptance rates",
        "chains_seconds": "wall-clock seconds of the chain summary",
        "test_split": "how the test set was chosen (the data set's own split or a seeded hold-out)",
        "num_train": "training images",
        "num_test": "test images",
        **RUN_REPORT,
    },
}


def nonnegative_int(text: str) -> int:
    """An integer >= 0 (``--patience``: 0 turns early stopping off)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    parser.add_argument("--hidden", type=int_list, default=500, metavar=SIZES_METAVAR,
                        help="hidden layer size; an RBM has one hidden layer, so one number "
                             "(default 500)")
    method = parser.add_mutually_exclusive_group()
    method.add_argument("--cd-k", type=positive_int, default=1, metavar="K",
                        help="contrastive divergence with K Gibbs sweeps (default CD-1)")
    method.add_argument("--pcd", action="store_true",
                        help="persistent CD (one sweep per update, one chain per batch element)")
    method.add_argument("--pt-pcd", action="store_true",
                        help="persistent CD whose chains are run by parallel tempering (--temperatures "
                             "replicas down to --min-beta; Desjardins et al. 2010)")
    parser.add_argument("--epochs", type=positive_int, default=20, help="default 20")
    parser.add_argument("--batch-size", type=positive_int, default=100, help="default 100")
    parser.add_argument("--lr", type=positive_float, default=0.05, metavar="LR",
                        help="learning rate per example (the mean gradient's step size; the "
                             "optimizer gets lr / batch-size since the loss is a batch sum); "
                             "finite and > 0, default 0.05")
    parser.add_argument("--momentum", type=unit_interval(False, True), default=0.0, metavar="M",
                        help="SGD momentum, in [0, 1) (default 0: 0.9 overfits mnist, see the docs)")
    parser.add_argument("--weight-decay", type=nonnegative_float, default=1e-4, metavar="W",
                        help="L2 cost on the weights (not the biases), >= 0, default 1e-4")
    parser.add_argument("--sparsity-target", type=unit_interval(True, True), default=None, metavar="P",
                        help="target mean activation of the hidden units, in (0, 1) (default: none)")
    parser.add_argument("--sparsity-cost", type=nonnegative_float, default=0.01, metavar="C",
                        help="weight of the sparsity penalty, >= 0, default 0.01")
    parser.add_argument("--val-fraction", type=unit_interval(False, True), default=0.1, metavar="F",
                        help="seeded fraction of the training images held out for validation, in [0, 1) "
                             "(default 0.1; 0: none): early stopping on their exact pseudo-log-likelihood, "
                             "keeping the best epoch's parameters")
    parser.add_argument("--patience", type=nonnegative_int, default=10, metavar="N",
                        help="stop after N epochs without a better validation score (default 10; 0: "
                             "train all epochs, still keeping the best)")
    parser.add_argument("--ais-betas", type=positive_int, default=2000,
                        help="AIS intermediate distributions (default 2000; the paper used 14500)")
    parser.add_argument("--ais-runs", type=positive_int, default=100,
                        help="AIS runs (default 100, as in the paper)")
    parser.add_argument("--gibbs-steps", type=positive_int, default=1000,
                        help="block-Gibbs sweeps for the fantasy particles of --sampler gibbs (with pt the "
                             "figure shows the chain summary's own states; default 1000)")
    parser.add_argument("--sampler", choices=("pt", "gibbs"), default="pt",
                        help="sampler of the chain summary and the fantasy particles: pt (parallel "
                             "tempering, default) or gibbs (block Gibbs)")
    parser.add_argument("--temperatures", type=positive_int, default=25,
                        help="parallel-tempering replicas, beta = 1 included (default 25)")
    parser.add_argument("--min-beta", type=unit_interval(True, True), default=0.15, metavar="BETA",
                        help="the hottest replica's inverse temperature, in (0, 1) (default 0.15)")
    parser.add_argument("--chains", type=positive_int, default=8,
                        help="MCMC chains for the chain summary, run vectorized (default 8)")
    parser.add_argument("--chain-samples", type=positive_int, default=None,
                        help="draws per chain of the chain summary (default 100000 with --data mnist, "
                             "whose modes need long chains, 4000 with digits)")
    parser.add_argument("--chain-warmup", type=positive_int, default=None,
                        help="warm-up steps per chain, the PT ladder adapting (default: as many as "
                             "--chain-samples, at most 8000)")
    add_common_arguments(parser, out_default="runs/rbm")


def run(args: argparse.Namespace) -> None:
    run_experiment(config_from_args(RBMConfig, args))


# moved to pyro_deepgen.experiments.rbm in 0.2
__getattr__ = moved_attributes(__name__, {
    name: "pyro_deepgen.experiments.rbm"
    for name in ("MONITOR_SIZE", "PLL_SIZE", "make_optimizer", "monitors", "chain_summary", "write_figures")
})

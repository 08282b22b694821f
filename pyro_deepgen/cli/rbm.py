"""Train a binary RBM with CD-k or PCD on the 8x8 digits (default) or MNIST and estimate its test
log-likelihood with annealed importance sampling.

The pixels are binarized at 0.5. Every epoch prints the reconstruction error (on up to 1000
images) and the exact pseudo-log-likelihood (on up to 200) of training and test images. After
training, AIS (Salakhutdinov & Murray 2008) estimates log Z from a base-rate model fitted to the
training marginals, giving the test log-likelihood mean(-F(v)) - log Z-hat with its standard error.
Writes to --out: report.json, rbm.pt (the state dict), samples.png (fantasy particles),
weights.png (filters of the first hidden units), chains_summary.csv / chains_summary.txt
(arviz summary with R-hat and ESS of block-Gibbs chains run through pyro.infer.MCMC) and
loss.png.

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
        "samples.png": "fantasy particles after --gibbs-steps Gibbs sweeps",
        "weights.png": "the filters (rows of W) of the first 100 hidden units",
        "loss.png": "the free-energy gap per image by epoch",
        "chains_summary.csv": "arviz summary (ESS, R-hat) of --chains Gibbs chains of the free energy",
        "chains_summary.txt": "the same table as text",
        **MARKER_FILE,
    },
    "report": {
        "test_log_likelihood": "mean log p(v) per test image with the AIS log Z, nats",
        "train_log_likelihood": "mean log p(v) per training image with the AIS log Z, nats",
        "log_z": "AIS estimate of log Z (--ais-betas temperatures, --ais-runs runs)",
        "log_z_stderr": "its standard error",
        "per_epoch": "the monitors by epoch (reconstruction error, pseudo-log-likelihood, seconds)",
        "seconds_per_epoch": "median wall-clock seconds of a training epoch (None without epochs timed)",
        "train_seconds": "wall-clock seconds of training, without the monitors",
        "epochs": "epochs trained",
        "ais_seconds": "wall-clock seconds of AIS",
        "ais_betas": "the AIS temperatures",
        "ais_runs": "the AIS runs",
        "method": "the training method, cd-k or pcd",
        "test_split": "how the test set was chosen (the data set's own split or a seeded hold-out)",
        "num_train": "training images",
        "num_test": "test images",
        **RUN_REPORT,
    },
}


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
    parser.add_argument("--epochs", type=positive_int, default=20, help="default 20")
    parser.add_argument("--batch-size", type=positive_int, default=100, help="default 100")
    parser.add_argument("--lr", type=positive_float, default=0.05, metavar="LR",
                        help="learning rate per example (the mean gradient's step size; the "
                             "optimizer gets lr / batch-size since the loss is a batch sum); "
                             "finite and > 0, default 0.05")
    parser.add_argument("--momentum", type=unit_interval(False, True), default=0.9, metavar="M",
                        help="SGD momentum, in [0, 1) (default 0.9)")
    parser.add_argument("--weight-decay", type=nonnegative_float, default=1e-4, metavar="W",
                        help="L2 cost on the weights (not the biases), >= 0, default 1e-4")
    parser.add_argument("--sparsity-target", type=unit_interval(True, True), default=None, metavar="P",
                        help="target mean activation of the hidden units, in (0, 1) (default: none)")
    parser.add_argument("--sparsity-cost", type=nonnegative_float, default=0.01, metavar="C",
                        help="weight of the sparsity penalty, >= 0, default 0.01")
    parser.add_argument("--ais-betas", type=positive_int, default=2000,
                        help="AIS intermediate distributions (default 2000; the paper used 14500)")
    parser.add_argument("--ais-runs", type=positive_int, default=100,
                        help="AIS runs (default 100, as in the paper)")
    parser.add_argument("--gibbs-steps", type=positive_int, default=1000,
                        help="block-Gibbs sweeps for the fantasy particles (default 1000)")
    parser.add_argument("--chains", type=positive_int, default=4,
                        help="MCMC chains for the chain summary (default 4)")
    parser.add_argument("--chain-samples", type=positive_int, default=200,
                        help="draws per chain after as many warm-up sweeps (default 200)")
    add_common_arguments(parser, out_default="runs/rbm")


def run(args: argparse.Namespace) -> None:
    run_experiment(config_from_args(RBMConfig, args))


# moved to pyro_deepgen.experiments.rbm in 0.2
__getattr__ = moved_attributes(__name__, {
    name: "pyro_deepgen.experiments.rbm"
    for name in ("MONITOR_SIZE", "PLL_SIZE", "make_optimizer", "monitors", "chain_summary", "write_figures")
})

"""Train a VAE on the embedded 8x8 digits (default) or MNIST and evaluate it.

Prints progress and a summary table (train/test ELBO, test log-likelihood, active units, PSIS
k-hat) and writes report.json, checkpoint.pt, samples.png, reconstructions.png, loss.png and,
when --z-dim is 2, manifold.png to --out.
"""
import argparse

from .._compat import moved_attributes
from ..experiments.vae import BINARIZATIONS, ELBOS, GUIDES, VAEConfig
from ..experiments.vae import run as run_experiment
from .common import (
    MARKER_FILE,
    RUN_REPORT,
    SIZES_METAVAR,
    add_common_arguments,
    add_data_arguments,
    config_from_args,
    int_list,
    positive_float,
    positive_int,
)

HELP = "train and evaluate a variational autoencoder"
#: What the command writes to --out: its files, and the keys of report.json.
OUTPUTS = {
    "files": {
        "report.json": "the report (keys below)",
        "checkpoint.pt": "the training checkpoint after the last epoch (--resume continues from it)",
        "samples.png": "64 decoder means E[x|z] of z ~ p(z)",
        "reconstructions.png": "test images next to their reconstructions",
        "loss.png": "the training loss (-ELBO per data point) by epoch",
        "manifold.png": "Only with --z-dim 2: the decoder means over a grid of the latent plane",
        **MARKER_FILE,
    },
    "report": {
        "train_elbo": "ELBO per image on the training set (10 particles), nats",
        "test_elbo": "ELBO per image on the test set (10 particles), nats",
        "test_log_likelihood": "importance-sampled log p(x) per test image (--eval-samples draws of q), nats",
        "eval_samples": "the importance samples K of test_log_likelihood",
        "active_units": "latent units whose posterior mean varies across the test set (Cov > 0.01)",
        "khat_median": "median over test images of the PSIS k-hat of the importance weights "
                       "(None below 21 samples)",
        "khat_max": "largest PSIS k-hat (None below 21 samples)",
        "khat_fraction_above_0.7": "fraction of test images with k-hat > 0.7, where the estimate is "
                                   "unreliable (None below 21 samples)",
        "epochs": "epochs trained",
        "seconds": "wall-clock seconds of training and evaluation",
        "train_seconds": "wall-clock seconds of training",
        "train_loss": "the training loss by epoch",
        "test_split": "how the test set was chosen (the data set's own split or a seeded hold-out)",
        "num_train": "training images",
        "num_test": "test images",
        **RUN_REPORT,
    },
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    parser.add_argument("--binarize", choices=BINARIZATIONS,
                        default="dynamic", help="binarization of the pixels (default dynamic)")
    parser.add_argument("--z-dim", type=positive_int, default=50, help="latent size (default 50)")
    parser.add_argument("--hidden", type=int_list, default=(200, 200), metavar=SIZES_METAVAR,
                        help="hidden layer sizes, comma-separated, at least one (default 200,200)")
    parser.add_argument("--epochs", type=positive_int, default=50, help="default 50")
    parser.add_argument("--batch-size", type=positive_int, default=100, help="default 100")
    parser.add_argument("--lr", type=positive_float, default=1e-3, metavar="LR",
                        help="Adam step size, finite and > 0 (default 1e-3)")
    parser.add_argument("--elbo", choices=ELBOS, default="trace",
                        help="training objective (default trace: Pyro's Trace_ELBO)")
    parser.add_argument("--particles", type=positive_int, default=1, metavar="K",
                        help="particles per data point for the multi-sample objectives (default 1; "
                             "--elbo vimco needs at least 2)")
    parser.add_argument("--hvi-steps", type=positive_int, default=4,
                        help="leapfrog steps of --elbo hvi (default 4)")
    parser.add_argument("--guide", choices=GUIDES, default="diagonal",
                        help="q(z|x): the diagonal Gaussian or a normalizing flow on top of it")
    parser.add_argument("--flow-depth", type=positive_int, default=4,
                        help="number of flow layers K for a flow guide (default 4)")
    parser.add_argument("--eval-samples", type=positive_int, default=5000,
                        help="importance samples K of the test log-likelihood (default 5000)")
    add_common_arguments(parser, out_default="runs/vae")


def run(args: argparse.Namespace) -> None:
    run_experiment(config_from_args(VAEConfig, args))


# moved to pyro_deepgen.experiments.vae in 0.2
__getattr__ = moved_attributes(__name__, {
    name: "pyro_deepgen.experiments.vae"
    for name in ("PSIS_MIN_SAMPLES", "make_elbo", "make_guide", "evaluate_vae", "write_figures", "print_summary")
})

"""Semi-supervised classification with VAEs (Kingma et al. 2014): M1 (VAE features + an RBF SVM
standing in for the TSVM), M2 or M1+M2, on class-balanced labelled draws of the 8x8 digits
(default) or MNIST.

Prints the test error (mean ± std over the draws) and writes report.json, table.md,
confusion.png and (m2, m1m2) analogies.png and styles.png to --out.
"""
import argparse

from ..experiments.ssvae import MODELS, SSVAEConfig
from ..experiments.ssvae import run as run_experiment
from .common import (
    MARKER_FILE,
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

HELP = "semi-supervised VAEs (M1, M2, M1+M2): test error on a few labels"
OUTPUTS = {
    "files": {
        "report.json": "the report (keys below)",
        "checkpoint.pt": "the first network's training checkpoint (M1, or M2 of draw 0)",
        "checkpoint-draw<d>.pt, checkpoint-styles.pt": "the checkpoints of the other networks",
        "table.md": "the paper's MNIST table with this run's row",
        "confusion.png": "the confusion matrix of draw 0 on the test set",
        "analogies.png": "m2/m1m2: test images' inferred z decoded with every label",
        "styles.png": "m2/m1m2: each class decoded over a grid of a 2-D z",
        **MARKER_FILE,
    },
    "report": {
        "model": "m1, m2 or m1m2",
        "labels": "labelled training images per draw",
        "test_error": "test error in %, mean over the label draws",
        "test_error_std": "its standard deviation over the draws",
        "per_draw": "the test error of each draw",
        "settings": "the options of the run",
        "world_size": "the number of processes that trained it (torchrun --nproc_per_node; 1 without torchrun)",
    },
}


def labels_type(text: str) -> int:
    """A positive multiple of the 10 classes."""
    value = positive_int(text)
    if value % 10:
        raise argparse.ArgumentTypeError(f"must be a multiple of the 10 classes (class-balanced draws), got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=MODELS, default="m2",
                        help="m1: VAE posterior means + RBF SVM (stands in for the TSVM); m2; m1m2 (default m2)")
    parser.add_argument("--labels", type=labels_type, default=100,
                        help="labelled training images per draw, a multiple of 10 (default 100)")
    parser.add_argument("--label-draws", type=positive_int, default=5,
                        help="class-balanced labelled subsets, seeds SEED, SEED+1, ... (default 5)")
    add_data_arguments(parser)
    parser.add_argument("--z-dim", type=positive_int, default=None,
                        help="latent size of M2 (of M1 for --model m1); default 50, on mnist 2 for m1m2 and 20 for m1")
    parser.add_argument("--hidden", type=int_list, default=None, metavar=SIZES_METAVAR,
                        help="hidden layer sizes of M2's networks (of M1 for --model m1); default 500, on mnist "
                             "100 for m1m2")
    parser.add_argument("--epochs", type=positive_int, default=None,
                        help="epochs of M2 per draw, over the unlabelled images (of M1 for --model m1); default 10, "
                             "on mnist 100 for m2, 300 for m1m2, 40 for m1")
    parser.add_argument("--m1-z-dim", type=positive_int, default=None,
                        help="m1m2 only: M1's latent size (default: --z-dim; on mnist 20)")
    parser.add_argument("--m1-hidden", type=int_list, default=None, metavar=SIZES_METAVAR,
                        help="m1m2 only: M1's hidden layer sizes (default: --hidden; on mnist 500)")
    parser.add_argument("--m1-epochs", type=positive_int, default=None,
                        help="m1m2 only: M1's epochs (default: --epochs; on mnist 40)")
    parser.add_argument("--m1-lr", type=positive_float, default=None, metavar="LR",
                        help="m1m2 only: M1's Adam step size (default: --lr; on mnist 1e-3)")
    parser.add_argument("--batch-size", type=positive_int, default=100, help="unlabelled images per step (default 100)")
    parser.add_argument("--lr", type=positive_float, default=None, metavar="LR",
                        help="Adam step size of M2 (of M1 for --model m1); default 3e-3, on mnist 1e-3 for m1 and "
                             "2e-3 for m1m2")
    parser.add_argument("--classifier-dropout", type=unit_interval(False, True), default=None, metavar="P",
                        help="dropout on the input of q(y|x) in training (default 0; on mnist 0.7 for m2, 0.3 for "
                             "m1m2)")
    parser.add_argument("--alpha", type=nonnegative_float, default=None,
                        help="weight of the classification term (default 46 x labels, Pyro's per-label weight; on "
                             "mnist 100 x labels for m1m2; the paper: 0.1 N)")
    add_common_arguments(parser, out_default="runs/ssvae")


def run(args: argparse.Namespace) -> None:
    run_experiment(config_from_args(SSVAEConfig, args))

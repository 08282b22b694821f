"""Train an autoregressive model (NADE, MADE or PixelCNN) on the binarized 8x8 digits (default) or
MNIST, with early stopping on a validation split, and report its exact test log-likelihood.

Prints a summary table and writes report.json (test_log_likelihood in nats, test_bits_per_dim),
checkpoint.pt, samples.png and loss.png to --out.
"""
import argparse

from ..experiments.autoregressive import DEFAULT_EPOCHS, DEFAULT_LR, DEFAULT_PATIENCE, MODELS, AutoregressiveConfig
from ..experiments.autoregressive import run as run_experiment
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

HELP = "train NADE, MADE or PixelCNN and report the exact test log-likelihood"
#: What the command writes to --out: its files, and the keys of report.json.
OUTPUTS = {
    "files": {
        "report.json": "the report (keys below)",
        "checkpoint.pt": "the training checkpoint after the last epoch (--resume continues from it)",
        "samples.png": "draws of the trained model",
        "loss.png": "training and validation loss by epoch",
        **MARKER_FILE,
    },
    "report": {
        "model": "nade, made or pixelcnn",
        "test_log_likelihood": "exact log p(x) per test image (the mean over --orderings masks), nats",
        "test_bits_per_dim": "-test_log_likelihood in bits per pixel",
        "test_log_likelihood_per_mask": "the test log-likelihood of each ordering/mask alone",
        "val_log_likelihood": "log p(x) per validation image (the held-out part of the training set)",
        "train_log_likelihood": "log p(x) per training image",
        "num_parameters": "the model's parameter count",
        "lr": "the Adam step size used (--lr or the model's default)",
        "epochs": "epochs trained",
        "best_epoch": "the epoch of the kept (best validation) parameters",
        "stopped_early": "whether --patience stopped training",
        "seconds": "wall-clock seconds of training and evaluation",
        "train_seconds": "wall-clock seconds of training",
        "train_loss": "the training loss by epoch",
        "val_loss": "the validation loss by epoch",
        "num_val": "validation images",
        "test_split": "how the test set was chosen (the data set's own split or a seeded hold-out)",
        "num_train": "training images",
        "num_test": "test images",
        **RUN_REPORT,
    },
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=MODELS, default="made", help="default made")
    add_data_arguments(parser)
    parser.add_argument("--hidden", type=int_list, default=None, metavar=SIZES_METAVAR,
                        help="nade: hidden units (default 500); made: hidden widths (default 500); "
                             "pixelcnn: channels per masked block, one entry per block (default 32,32,32,32)")
    parser.add_argument("--orderings", type=positive_int, default=1, metavar="K",
                        help="made only: 1 is one fixed mask; K trains over K orderings and masks and "
                             "averages the K at test time (default 1)")
    parser.add_argument("--epochs", type=positive_int, default=DEFAULT_EPOCHS,
                        help=f"the most epochs (default {DEFAULT_EPOCHS})")
    parser.add_argument("--patience", type=positive_int, default=DEFAULT_PATIENCE,
                        help="stop after this many epochs without a better validation NLL "
                             f"(default {DEFAULT_PATIENCE})")
    parser.add_argument("--batch-size", type=positive_int, default=100, help="default 100")
    parser.add_argument("--lr", type=positive_float, default=None, metavar="LR",
                        help="Adam step size, finite and > 0 (default: "
                             + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LR.items()) + ")")
    add_common_arguments(parser, out_default="runs/autoregressive")


def run(args: argparse.Namespace) -> None:
    run_experiment(config_from_args(AutoregressiveConfig, args))

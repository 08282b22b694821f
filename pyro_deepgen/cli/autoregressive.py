"""Train an autoregressive model (NADE, MADE or PixelCNN) on the binarized 8x8 digits (default) or
MNIST, with early stopping on a validation split, and report its exact test log-likelihood.

Prints a summary table and writes report.json (test_log_likelihood in nats, test_bits_per_dim),
checkpoint.pt, samples.png and loss.png to --out.
"""
import argparse

from ..experiments.autoregressive import MODELS, AutoregressiveConfig
from ..experiments.autoregressive import run as run_experiment
from .common import (
    SIZES_METAVAR,
    add_common_arguments,
    add_data_arguments,
    config_from_args,
    int_list,
    positive_float,
    positive_int,
)

HELP = "train NADE, MADE or PixelCNN and report the exact test log-likelihood"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=MODELS, default="made", help="default made")
    add_data_arguments(parser)
    parser.add_argument("--hidden", type=int_list, default=None, metavar=SIZES_METAVAR,
                        help="nade: hidden units (default 500); made: hidden widths (default 500); "
                             "pixelcnn: channels per masked block, one entry per block (default 32,32,32,32)")
    parser.add_argument("--orderings", type=positive_int, default=1, metavar="K",
                        help="made only: 1 is one fixed mask; K trains over K orderings and masks and "
                             "averages the K at test time (default 1)")
    parser.add_argument("--epochs", type=positive_int, default=100, help="the most epochs (default 100)")
    parser.add_argument("--patience", type=positive_int, default=5,
                        help="stop after this many epochs without a better validation NLL (default 5)")
    parser.add_argument("--batch-size", type=positive_int, default=100, help="default 100")
    parser.add_argument("--lr", type=positive_float, default=1e-3, metavar="LR",
                        help="Adam step size, finite and > 0 (default 1e-3)")
    add_common_arguments(parser, out_default="runs/autoregressive")


def run(args: argparse.Namespace) -> None:
    run_experiment(config_from_args(AutoregressiveConfig, args))

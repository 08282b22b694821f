"""Train a generative stochastic network (a denoising autoencoder trained with walkback, whose
corrupt-and-reconstruct Markov chain is the model) on the 8x8 digits (default) or MNIST, sample
it with many chains at once, and judge their mixing (R-hat, ESS) through pyro.infer.MCMC.

Prints a summary and writes report.json, checkpoint.pt, samples.png, chain.png, losses.png and
progress.png (the same chains over training) to --out.
"""
import argparse

from ..experiments.gsn import NOISES, GSNConfig
from ..experiments.gsn import run as run_experiment
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

HELP = "train a generative stochastic network (denoising autoencoder with walkback) and run its chains"


OUTPUTS = {
    "files": {
        "report.json": "the report (keys below)",
        "checkpoint.pt": "the training checkpoint after the last epoch (--resume continues from it)",
        "samples.png": "states of the generative Markov chain x -> corrupted x -> denoised x",
        "chain.png": "consecutive states of a few chains",
        "losses.png": "the walkback loss on training and test images by epoch",
        "progress.png": "samples from the same chain start at snapshots during training",
        "progress.pt": "the snapshots behind progress.png, so that a resumed run keeps the earlier ones",
        **MARKER_FILE,
    },
    "report": {
        "noise": "the corruption process",
        "noise_level": "its level",
        "walkback": "the walkback steps K of training",
        "train_loss": "the training loss by epoch",
        "test_loss": "the test loss by epoch",
        "mixing": "R-hat and bulk ESS (arviz) of the chains' summary statistics, run through pyro.infer.MCMC",
        "mixing_seconds": "wall-clock seconds of the mixing check",
        "data_mean_intensity": "the mean pixel of the training images",
        "sample_mean_intensity": "the mean pixel of the chain's samples",
        "num_parameters": "the model's parameter count",
        "x_dim": "pixels per image",
        "epochs": "epochs trained",
        "num_train": "training images",
        "num_test": "test images",
        "test_split": "how the test set was chosen",
        "seconds": "wall-clock seconds of the run",
        "train_seconds": "wall-clock seconds of training",
        **RUN_REPORT,
    },
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--walkback", type=positive_int, default=2, metavar="K",
                        help="walkback steps per training point; 1 is a plain denoising autoencoder (default 2)")
    parser.add_argument("--noise", choices=NOISES, default="salt-and-pepper",
                        help="corruption: salt-and-pepper or flip (binarized pixels), gaussian (grey values); "
                             "default salt-and-pepper")
    parser.add_argument("--noise-level", type=positive_float, default=None, metavar="P",
                        help="corruption level: probability for salt-and-pepper/flip, standard deviation for "
                             "gaussian (default 0.4 / 0.2 / 0.3)")
    add_data_arguments(parser)
    parser.add_argument("--epochs", type=positive_int, default=40, help="default 40")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="default 64")
    parser.add_argument("--lr", type=positive_float, default=1e-3, metavar="LR",
                        help="Adam step size, finite and > 0 (default 1e-3)")
    parser.add_argument("--hidden", type=int_list, default=(500,), metavar=SIZES_METAVAR,
                        help="hidden sizes of the reconstruction network (default 500)")
    parser.add_argument("--chain-steps", type=positive_int, default=100,
                        help="transitions of each chain before its sample is taken (default 100)")
    parser.add_argument("--mixing-chains", type=positive_int, default=8,
                        help="chains of the R-hat/ESS diagnostics, at least 2 (default 8)")
    parser.add_argument("--mixing-warmup", type=positive_int, default=100, help="default 100")
    parser.add_argument("--mixing-draws", type=positive_int, default=400, help="default 400")
    add_common_arguments(parser, out_default="runs/gsn")


def run(args: argparse.Namespace) -> None:
    run_experiment(config_from_args(GSNConfig, args))

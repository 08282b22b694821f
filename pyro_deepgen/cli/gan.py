"""Train a GAN on the 8x8 digits (default) or MNIST: the generator is a Pyro model z ~ N(0, I),
x = G(z), trained against a discriminator with the non-saturating, minimax, WGAN-GP or hinge
objective (optionally conditional on the digit label).

Prints a summary and writes report.json, checkpoint.pt, samples.png, losses.png (both players)
and progress.png (the same z over training) to --out.
"""
import argparse

from ..experiments.gan import OBJECTIVES, GANConfig
from ..experiments.gan import run as run_experiment
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

HELP = "train a GAN (non-saturating, minimax, WGAN-GP or hinge; optionally conditional)"


OUTPUTS = {
    "files": {
        "report.json": "the report (keys below)",
        "checkpoint.pt": "the training checkpoint after the last epoch: both players and, with --ema, the "
                         "generator's moving average (--resume continues from it)",
        "samples.png": "draws of the trained generator, or of its moving average with --ema (one column per class "
                       "with --conditional)",
        "losses.png": "the discriminator's and the generator's losses by generator step",
        "progress.png": "the same fixed z decoded at snapshots during training",
        "progress.pt": "the snapshots behind progress.png, so that a resumed run keeps the earlier ones",
        **MARKER_FILE,
    },
    "report": {
        "loss": "the adversarial objective (nonsaturating, minimax, wgan-gp or hinge)",
        "conditional": "whether the generator and the discriminator take the label",
        "spectral_norm": "whether the discriminator's linear layers were spectrally normalized",
        "minibatch_std": "whether the discriminator had the minibatch standard-deviation feature",
        "ema": "decay of the moving average of the generator that is sampled (0: the last iterate)",
        "n_critic": "discriminator steps per generator step",
        "generator_loss": "the generator's loss by generator step",
        "discriminator_loss": "the discriminator's loss by generator step",
        "d_real": "the discriminator's mean output on real images by generator step",
        "d_fake": "the discriminator's mean output on generated images by generator step",
        "generator_steps": "generator steps taken",
        "data_mean_intensity": "the mean pixel of the training images",
        "sample_mean_intensity": "the mean pixel of the generator's samples",
        "num_parameters": "parameter counts of the generator and the discriminator",
        "x_dim": "pixels per image",
        "epochs": "epochs trained",
        "num_train": "training images",
        "test_split": "how the test set was chosen",
        "seconds": "wall-clock seconds of the run",
        "train_seconds": "wall-clock seconds of training",
        **RUN_REPORT,
    },
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--loss", choices=OBJECTIVES, default="nonsaturating", help="default nonsaturating")
    parser.add_argument("--conditional", action="store_true",
                        help="condition generator and discriminator on the digit label")
    parser.add_argument("--n-critic", type=positive_int, default=None, metavar="K",
                        help="discriminator steps per generator step (default 5 for wgan-gp, else 1)")
    parser.add_argument("--gp-weight", type=nonnegative_float, default=10.0, metavar="LAMBDA",
                        help="wgan-gp: gradient-penalty weight (default 10)")
    add_data_arguments(parser)
    parser.add_argument("--epochs", type=positive_int, default=100, help="default 100")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="default 64")
    parser.add_argument("--lr", type=positive_float, default=None, metavar="LR",
                        help="Adam step size of both players, finite and > 0 (default 1e-4 for wgan-gp, else 1e-3)")
    parser.add_argument("--z-dim", type=positive_int, default=32, help="latent dimension (default 32)")
    parser.add_argument("--hidden", type=int_list, default=(256, 256), metavar=SIZES_METAVAR,
                        help="hidden sizes of both networks (default 256,256)")
    parser.add_argument("--spectral-norm", action="store_true",
                        help="spectrally normalize the discriminator's linear layers (default: no)")
    parser.add_argument("--no-minibatch-std", dest="minibatch_std", action="store_false",
                        help="no minibatch standard-deviation feature in the discriminator (default: with it)")
    parser.add_argument("--ema", type=unit_interval(False, True), default=0.0, metavar="DECAY",
                        help="sample a moving average of the generator's parameters with this decay, in [0, 1), "
                             "e.g. 0.999 (default 0: the last iterate)")
    add_common_arguments(parser, out_default="runs/gan")


def run(args: argparse.Namespace) -> None:
    run_experiment(config_from_args(GANConfig, args))

"""Train one member of the autoencoder family (linear/PCA, sparse, contractive, denoising, K-means,
dictionary learning, PSD, LISTA) on the 8x8 digits (default) or MNIST and compare the limits with
scikit-learn.

Prints a summary table and writes report.json (reconstruction_error, sparsity, contraction and,
for the limits, the scikit-learn numbers), filters.png, reconstructions.png, codes.png (2-D codes)
and, for the kinds trained by gradient descent, loss.png and checkpoint.pt to --out.
"""
import argparse

from ..experiments.autoencoder import CORRUPTIONS, KINDS, LOSSES, AutoencoderConfig
from ..experiments.autoencoder import run as run_experiment
from .common import (
    MARKER_FILE,
    RUN_REPORT,
    add_common_arguments,
    add_data_arguments,
    config_from_args,
    nonnegative_float,
    positive_float,
    positive_int,
)

HELP = "train an autoencoder (linear, sparse, contractive, denoising, kmeans, dictionary, psd, lista)"


OUTPUTS = {
    "files": {
        "report.json": "the report (keys below)",
        "filters.png": "decoder columns, cluster centres or dictionary atoms as images",
        "reconstructions.png": "test images and their reconstructions",
        "codes.png": "Only with a 2-D code: the test codes coloured by label",
        "loss.png": "Only for the kinds trained with fit: the training loss by epoch",
        "checkpoint.pt": "Only for the kinds trained with fit: the training checkpoint (--resume continues from it)",
        **MARKER_FILE,
    },
    "report": {
        "kind": "the autoencoder (linear, sparse, contractive, denoising, psd, lista, kmeans or dictionary)",
        "code_dim": "code units, clusters or atoms",
        "reconstruction_error": "mean squared reconstruction error per test image",
        "train_reconstruction_error": "Only for the autoencoder kinds: the same on the training images",
        "sparsity": "fraction of zero code entries",
        "contraction": "Only for the autoencoder kinds: mean Frobenius norm of the encoder's Jacobian",
        "sklearn_reconstruction_error": "Only for --kind linear: scikit-learn PCA's test reconstruction error",
        "sklearn_train_reconstruction_error": "Only for --kind linear: PCA's training reconstruction error",
        "principal_angle_max_deg": "Only for --kind linear: the largest principal angle to PCA's subspace",
        "inertia": "Only for --kind kmeans: the K-means objective on the training images",
        "sklearn_inertia": "Only for --kind kmeans: scikit-learn KMeans(n_init=10)'s inertia",
        "lloyd_steps": "Only for --kind kmeans: Lloyd iterations of the best restart",
        "objective": "Only for --kind dictionary: the sparse-coding objective per image",
        "sklearn_objective": "Only for --kind dictionary: scikit-learn DictionaryLearning's, same lambda and atoms",
        "objective_ratio": "Only for --kind dictionary: objective / sklearn_objective",
        "code_error": "Only for --kind psd and lista: relative error of the fast codes against the optimal ones",
        "layers": "Only for --kind lista: the unrolled layers T",
        "ista_iterations_matched": "Only for --kind lista: ISTA iterations needed to reach code_error (null if "
                                   "not reached)",
        "train_loss": "Only for the kinds trained with fit: the training loss by epoch",
        "epochs": "Only for the kinds trained with fit: epochs trained",
        "num_train": "training images",
        "num_test": "test images",
        "test_split": "how the test set was chosen",
        "seconds": "wall-clock seconds of the run",
        **RUN_REPORT,
    },
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", choices=KINDS, default="linear", help="default linear (the PCA limit)")
    parser.add_argument("--code-dim", type=positive_int, default=None, metavar="K",
                        help="code units, clusters (kmeans) or atoms (default: linear 10, kmeans 10, others 64)")
    parser.add_argument("--lambda", dest="lam", type=nonnegative_float, default=None, metavar="LAMBDA",
                        help="weight of the L1 (sparse, dictionary, psd, lista; default 0.1 / 0.2) or "
                             "contractive penalty (default 0.1)")
    parser.add_argument("--layers", type=positive_int, default=5, metavar="T",
                        help="lista: unrolled layers T (default 5)")
    parser.add_argument("--noise", type=nonnegative_float, default=0.3,
                        help="denoising: masking probability or Gaussian sd (default 0.3)")
    parser.add_argument("--corruption", choices=CORRUPTIONS, default="masking", help="denoising (default masking)")
    parser.add_argument("--loss", choices=LOSSES, default="squared",
                        help="reconstruction loss of sparse, contractive, denoising (default squared)")
    add_data_arguments(parser)
    parser.add_argument("--epochs", type=positive_int, default=None,
                        help="passes over the data (linear: full-batch steps, default 1000; kmeans: the most "
                             "Lloyd steps, default 300; others 50 or 30)")
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help="minibatch size (default 100; linear is full-batch)")
    parser.add_argument("--lr", type=positive_float, default=None, metavar="LR",
                        help="Adam step size (default: linear 3e-2, sparse/contractive/denoising 3e-3, others 1e-3)")
    parser.add_argument("--n-init", type=positive_int, default=10, help="kmeans: k-means++ restarts (default 10)")
    add_common_arguments(parser, out_default="runs/autoencoder")


def run(args: argparse.Namespace) -> None:
    run_experiment(config_from_args(AutoencoderConfig, args))

"""Score the sampler of a finished run folder (vae, rbm, diffusion, autoregressive, gan, gsn)
against the run's held-out test images, offline: the Fréchet distance in the features of a small
classifier trained on the run's training split (cached in the run folder), class coverage, the
kernel MMD with its permutation p-value, a classifier two-sample test and the Parzen-window
log-likelihood (biased; Theis et al. 2016).

Prints a summary and writes report.json and samples.png to --out.
"""
import argparse
from pathlib import Path

from ..experiments.score_samples import AGAINST, ScoreSamplesConfig
from ..experiments.score_samples import run as run_experiment
from .common import MARKER_FILE, add_common_arguments, config_from_args, positive_int

NAME = "score-samples"
HELP = "score the samples of a run folder: Fréchet distance, coverage, MMD, C2ST, Parzen"
OUTPUTS = {
    "files": {
        "report.json": "the report (keys below)",
        "samples.png": "64 of the scored samples",
        **MARKER_FILE,
    },
    "report": {
        "frechet_distance": "Fréchet distance between Gaussians fitted to the classifier features of samples and "
                            "reference images (not FID: the package's own classifier)",
        "class_coverage": "class -> share of the samples the classifier puts in it",
        "coverage_kl_to_uniform": "KL of those shares to the uniform distribution, nats",
        "min_class_share": "the smallest class share",
        "mmd": "unbiased MMD² (Gaussian kernel, median-heuristic bandwidth) in classifier features",
        "mmd_p_value": "permutation p-value of the MMD test (--num-permutations relabellings)",
        "c2st_accuracy": "held-out accuracy of a logistic regression telling samples from images (1/2: alike)",
        "c2st_p_value": "one-sided binomial p-value of that accuracy against 1/2",
        "parzen_log_likelihood": "Parzen-window log-likelihood of the reference images, nats (biased)",
        "parzen_sigma": "the Parzen width chosen on a validation subset of the training images",
        "num_samples": "samples scored",
        "classifier_test_accuracy": "the feature classifier's accuracy on the reference images",
        "command_scored": "the command that wrote the scored run folder",
        "reference_split": "which images the samples were compared with",
        "settings": "the settings of this scoring run",
        "world_size": "the number of processes that ran it (1 without torchrun)",
    },
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", type=Path, required=True, metavar="DIR",
                        help="the folder of a finished pyro-deepgen run with a sampler checkpoint")
    parser.add_argument("--against", choices=AGAINST, default="test",
                        help="compare with the run's test split (default) or its training split")
    parser.add_argument("--data-root", default=None, metavar="DIR",
                        help="the MNIST folder to use instead of the one the run recorded")
    parser.add_argument("--num-samples", type=positive_int, default=1000, metavar="N",
                        help="samples drawn from the run's sampler (default 1000)")
    parser.add_argument("--num-permutations", type=positive_int, default=500, metavar="B",
                        help="permutations of the MMD test (default 500)")
    parser.add_argument("--classifier-epochs", type=positive_int, default=5, metavar="E",
                        help="training epochs of the feature classifier (default 5)")
    add_common_arguments(parser, out_default="runs/score-samples", resume=False)


def run(args: argparse.Namespace) -> None:
    run_experiment(config_from_args(ScoreSamplesConfig, args))

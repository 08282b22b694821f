"""Train a Gaussian diffusion probabilistic model (Sohl-Dickstein et al. 2015) and report its bound.

Writes into --out: ``report.json`` (test bound in nats per data point and bits per dimension,
estimated along one forward trajectory per test point, and as the sum of closed-form KL
terms, with standard errors; seconds, epochs, settings) and, for images (digits, mnist),
``samples.png`` and ``inpainting.png`` (lower half of test images filled in), or, for the
2-D swiss roll, ``trajectory.png`` (the forward trajectory and the reverse samples, as the
paper's Figure 1). ``--sampler ddim`` or ``ode`` draws the figures with DDIM or the
probability-flow ODE (``--sample-steps``); ``ode`` (``--objective vdm``) also puts the ODE
log-likelihood of the test points into report.json.
``--objective ddpm|improved|vdm`` picks the model and its training loss (vdm, the variational
diffusion model with a continuous-time bound and a learned schedule, is the default for mnist).
The bound is reported with one sign convention: nats are log-likelihood lower bounds (higher is
better), bits/dim are positive (lower is better).
Settings left out take per-data defaults sized to finish in about a minute on two CPU cores
(swissroll, digits); mnist takes about 10 minutes on the 5000-image subset (vdm) and
proportionally longer on the full 60000 (use --epochs, --num-train or --device cuda).
"""
import argparse

from .._compat import moved_attributes
from ..experiments.diffusion import MEAN_TYPES, NETS, OBJECTIVES, SCHEDULES, WEIGHTINGS, DiffusionConfig
from ..experiments.diffusion import ODE_MAX_TEST, SAMPLE_STEPS, SAMPLERS
from ..experiments.diffusion import run as run_experiment
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

HELP = "train a diffusion probabilistic model; write samples, inpainting and its test bound"
#: What the command writes to --out: its files, and the keys of report.json.
OUTPUTS = {
    "files": {
        "report.json": "the report (keys below)",
        "checkpoint.pt": "the training checkpoint after the last epoch (--resume continues from it)",
        "trajectory.png": "Only for --data swissroll: the forward trajectory and the reverse samples",
        "samples.png": "Only for image data: draws of the reverse process",
        "inpainting.png": "Only for image data: test images with the lower half filled in from the top",
        **MARKER_FILE,
    },
    "report": {
        "test_bound_nats": "the variational bound on log p(x) per test point, nats (a log-likelihood lower "
                           "bound: higher is better; bits/dim are positive, lower is better)",
        "test_bound_nats_stderr": "its standard error",
        "test_bound_bits_per_dim": "the same bound in bits per dimension",
        "test_bound_bits_per_dim_stderr": "its standard error",
        "objective": "the training objective: ddpm, improved or vdm",
        "test_bound_nats_kl": "Only for ddpm/improved: the bound with every KL term in closed form, nats",
        "test_bound_nats_kl_stderr": "Only for ddpm/improved: its standard error",
        "test_bound_bits_per_dim_kl": "Only for ddpm/improved: the same bound in bits per dimension",
        "bound_terms_mean": "the terms of the bound averaged over the test set: L_0, L_1, ..., L_T (ddpm, "
                            "improved) or {reconstruction, diffusion, prior} in nats (vdm)",
        "gamma_0": "Only for vdm: the learned gamma(0) = -log SNR(0)",
        "gamma_1": "Only for vdm: the learned gamma(1) = -log SNR(1)",
        "histogram_bits_per_dim": "Only for image data: bits/dim of the test set under the per-pixel histogram "
                                  "of the training set (Laplace-smoothed categorical), the baseline",
        "sample_seconds": "Only for image data: wall-clock seconds of drawing the samples of samples.png",
        "ode_log_likelihood_nats": f"Only for --sampler ode: the probability-flow ODE log-likelihood of the first "
                                   f"{ODE_MAX_TEST} test points, nats per point (higher is better): a lower bound on "
                                   "log P(x) of the discrete data by variational dequantization (see ode_note)",
        "ode_log_likelihood_nats_stderr": "Only for --sampler ode: its standard error",
        "ode_bits_per_dim": "Only for --sampler ode: the same in bits per dimension (lower is better)",
        "ode_bits_per_dim_stderr": "Only for --sampler ode: its standard error",
        "ode_num_test": "Only for --sampler ode: test points of the ODE log-likelihood",
        "ode_steps": "Only for --sampler ode: fixed integration steps",
        "ode_method": "Only for --sampler ode: the integrator (rk4)",
        "ode_seconds": "Only for --sampler ode: wall-clock seconds of the ODE log-likelihood",
        "ode_note": "Only for --sampler ode: how the ODE log-likelihood is computed (dequantization, trace estimator)",
        "train_loss": "the training loss by epoch",
        "epochs": "epochs trained",
        "seconds": "wall-clock seconds of training, evaluation and sampling",
        "train_seconds": "wall-clock seconds of training",
        "test_split": "how the test set was chosen (the data set's own split or a seeded hold-out)",
        "num_train": "training points",
        "num_test": "test points",
        **RUN_REPORT,
    },
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser, extra_choices=("swissroll",), default="swissroll",
                       help="swissroll (2-D, default), digits (sklearn 8x8) or mnist (IDX files)")
    parser.add_argument("--steps", type=positive_int, default=None,
                        help="number of diffusion steps T (default: 40 swissroll, 100 images)")
    parser.add_argument("--schedule", choices=SCHEDULES, default=None,
                        help="beta schedule (default: sohl for swissroll, cosine for images)")
    parser.add_argument("--epochs", type=positive_int, default=None,
                        help="training epochs (default: 80 swissroll, 25 digits, 12 mnist with vdm, 10 mnist "
                             "with ddpm/improved)")
    parser.add_argument("--batch-size", type=positive_int, default=None, help="minibatch size")
    parser.add_argument("--lr", type=positive_float, default=None, metavar="LR",
                        help="Adam learning rate, finite and > 0 (default: 2e-3; 1e-3 for mnist with --objective "
                             "ddpm or improved)")
    parser.add_argument("--objective", choices=OBJECTIVES, default=None,
                        help="ddpm (learned variances, hybrid loss, uniform t), improved (the same with "
                             "importance-sampled t) or vdm (variational diffusion: continuous time, learned "
                             "schedule, trained on the bound; images only). Default: vdm for mnist, ddpm otherwise")
    parser.add_argument("--loss", choices=WEIGHTINGS, default=None,
                        help="gradient weighting of DiffusionELBO: elbo (the bound) or ddpm "
                             "(epsilon-prediction + 1e-3 bound, the default)")
    parser.add_argument("--mean-type", choices=MEAN_TYPES, default="v",
                        help="what the network's mean output predicts (default v: well "
                             "conditioned at every step; eps as in DDPM)")
    parser.add_argument("--net", choices=NETS, default=None,
                        help="network: mlp (TimeMLP; default for swissroll) or unet (images; "
                             "default for digits and mnist)")
    parser.add_argument("--hidden", "--hidden-dims", dest="hidden_dims", type=int_list, default=None,
                        metavar=SIZES_METAVAR,
                        help="TimeMLP hidden sizes, comma-separated, at least one (default: "
                             "128,128,128 swissroll, 256,256,256 digits, 512,512,512 mnist)")
    parser.add_argument("--base-channels", type=positive_int, default=None,
                        help="UNet channels at full resolution (default 16)")
    parser.add_argument("--num-train", type=positive_int, default=None,
                        help="use at most this many training points (swissroll: points drawn, "
                             "default 10000)")
    parser.add_argument("--max-test", type=positive_int, default=None,
                        help="evaluate the bound on at most this many test points (default 2000; "
                             "500 for mnist)")
    parser.add_argument("--num-samples", type=positive_int, default=64,
                        help="samples drawn for the figures (default 64)")
    parser.add_argument("--sampler", choices=SAMPLERS, default="ancestral",
                        help="sampler of the figures: ancestral (default), ddim (deterministic, fewer steps; "
                             "images) or ode (probability-flow ODE; --objective vdm only, and report.json gets "
                             "the ODE log-likelihood)")
    parser.add_argument("--sample-steps", type=positive_int, default=None,
                        help=f"steps of --sampler ddim or ode (default {SAMPLE_STEPS['ddim']} for ddim, at most T; "
                             f"{SAMPLE_STEPS['ode']} RK4 steps for ode)")
    add_common_arguments(parser, out_default="runs/diffusion")


def run(args: argparse.Namespace) -> None:
    run_experiment(config_from_args(DiffusionConfig, args))


# moved to pyro_deepgen.experiments.diffusion in 0.2
__getattr__ = moved_attributes(__name__, {"DEFAULTS": "pyro_deepgen.experiments.diffusion"})

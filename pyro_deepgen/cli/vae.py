"""Train a VAE on the embedded 8x8 digits (default) or MNIST and evaluate it.

Prints progress and a summary table (train/test ELBO, test log-likelihood, active units, PSIS
k-hat) and writes report.json, checkpoint.pt, samples.png, reconstructions.png, loss.png and,
when --z-dim is 2, manifold.png to --out.
"""
import argparse
import time

import pyro
import torch

from .. import evaluate
from ..models import VAE
from ..plotting import image_shape, save_image_grid, save_loss_curve, save_manifold
from ..infer.util import log_mean_exp
from ..train import fit
from .common import (
    add_common_arguments,
    add_data_arguments,
    atomic_output_dir,
    int_list,
    load_data,
    positive_float,
    positive_int,
    settings,
    write_json,
)

HELP = "train and evaluate a variational autoencoder"
ELBOS = ("trace", "iwae", "stl", "dreg", "vimco", "hvi")
PSIS_MIN_SAMPLES = 21  # PSIS fits the largest ceil(min(S/5, 3 sqrt(S))) >= 5 weights
GUIDES = ("diagonal", "planar", "radial", "iaf", "nice", "realnvp")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    parser.add_argument("--binarize", choices=("none", "threshold", "stochastic", "dynamic"),
                        default="dynamic", help="binarization of the pixels (default dynamic)")
    parser.add_argument("--z-dim", type=positive_int, default=50, help="latent size (default 50)")
    parser.add_argument("--hidden", type=int_list, default=(200, 200),
                        help="hidden layer sizes (default 200,200)")
    parser.add_argument("--epochs", type=positive_int, default=50, help="default 50")
    parser.add_argument("--batch-size", type=positive_int, default=100, help="default 100")
    parser.add_argument("--lr", type=positive_float, default=1e-3,
                        help="Adam step size (default 1e-3)")
    parser.add_argument("--elbo", choices=ELBOS, default="trace",
                        help="training objective (default trace: Pyro's Trace_ELBO)")
    parser.add_argument("--particles", type=positive_int, default=1,
                        help="particles per data point for the multi-sample objectives (default 1)")
    parser.add_argument("--hvi-steps", type=positive_int, default=4,
                        help="leapfrog steps of --elbo hvi (default 4)")
    parser.add_argument("--guide", choices=GUIDES, default="diagonal",
                        help="q(z|x): the diagonal Gaussian or a normalizing flow on top of it")
    parser.add_argument("--flow-depth", type=positive_int, default=4,
                        help="number of flow layers K for a flow guide (default 4)")
    parser.add_argument("--eval-samples", type=positive_int, default=5000,
                        help="importance samples K of the test log-likelihood (default 5000)")
    add_common_arguments(parser, out_default="runs/vae")


def make_elbo(name: str, particles: int, hvi_steps: int):
    """The training objective named on the command line."""
    from pyro.infer import Trace_ELBO

    if name == "trace":
        # the VAE has one plate, "data": no need to let Pyro guess (and log) it
        return Trace_ELBO(num_particles=particles, vectorize_particles=True, max_plate_nesting=1)
    from .. import infer

    if name in ("iwae", "stl", "dreg"):
        return infer.TraceIWAE_ELBO(num_particles=particles, estimator=name)
    if name == "vimco":
        return infer.TraceVIMCO_ELBO(num_particles=max(2, particles))
    return infer.TraceHVI_ELBO(num_steps=hvi_steps, num_particles=particles)


def make_guide(args, x_dim: int, vae: VAE):
    """The VAE's own diagonal guide or an amortized flow guide."""
    if args.guide == "diagonal":
        return vae.guide, None
    from ..guides import AmortizedFlowGuide

    guide = AmortizedFlowGuide(x_dim, args.z_dim, flow=args.guide, depth=args.flow_depth,
                               hidden_dims=args.hidden)
    return guide, guide


def run(args: argparse.Namespace) -> None:
    binarize = None if args.binarize == "none" else args.binarize
    data = load_data(args, binarize)
    device = args.device
    x_train, x_test = data.x_train.to(device), data.x_test.to(device)
    x_dim = x_train.shape[1]

    pyro.set_rng_seed(args.seed)
    pyro.clear_param_store()
    vae = VAE(x_dim, args.z_dim, args.hidden).to(device)
    guide, guide_module = make_guide(args, x_dim, vae)
    if guide_module is not None:
        guide_module.to(device)
    elbo = make_elbo(args.elbo, args.particles, args.hvi_steps)

    with atomic_output_dir(args.out) as out:
        t0 = time.time()
        history = fit(
            vae.model, guide, x_train, loss=elbo, module=guide_module, lr=args.lr,
            epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
            binarize="dynamic" if binarize == "dynamic" else None,
            checkpoint=out / "checkpoint.pt", progress=args.progress,
        )
        train_seconds = time.time() - t0
        report = evaluate_vae(vae, guide, x_train, x_test, args.eval_samples)
        report.update(
            epochs=history.epochs,
            seconds=time.time() - t0,
            train_seconds=train_seconds,
            train_loss=history.loss,
            test_split=data.test_split,
            num_train=int(x_train.shape[0]),
            num_test=int(x_test.shape[0]),
            settings=settings(args),
        )
        write_json(out / "report.json", report)
        write_figures(vae, x_test, history, out)
        print_summary(report)


@torch.no_grad()
def evaluate_vae(vae: VAE, guide, x_train, x_test, num_samples: int) -> dict:
    from ..diagnostics import psis_khat

    pyro.set_rng_seed(0)
    train_elbo = evaluate.elbo(vae.model, guide, x_train, num_samples=10).mean().item()
    test_elbo = evaluate.elbo(vae.model, guide, x_test, num_samples=10).mean().item()
    log_w = evaluate.log_importance_weights(vae.model, guide, x_test, num_samples=num_samples)
    ll = log_mean_exp(log_w, 0)
    khat = psis_khat(log_w) if num_samples >= PSIS_MIN_SAMPLES else None
    return {
        "train_elbo": train_elbo,
        "test_elbo": test_elbo,
        "test_log_likelihood": ll.mean().item(),
        "eval_samples": num_samples,
        "active_units": evaluate.active_units(vae.model, guide, x_test),
        "khat_median": None if khat is None else khat.median().item(),
        "khat_max": None if khat is None else khat.max().item(),
        "khat_fraction_above_0.7": None if khat is None else (khat > 0.7).float().mean().item(),
    }


def write_figures(vae: VAE, x_test, history, out) -> None:
    shape = image_shape(vae.x_dim)
    save_image_grid(vae.sample(64), out / "samples.png", shape, title="samples E[x|z], z ~ p(z)")
    x = x_test[:32]
    pairs = torch.stack([x, vae.reconstruct(x)], dim=1).reshape(-1, vae.x_dim)
    save_image_grid(pairs, out / "reconstructions.png", shape, ncol=8,
                    title="test images and their reconstructions")
    save_loss_curve(history.loss, out / "loss.png", history.val, ylabel="-ELBO per data point")
    if vae.z_dim == 2:
        p = next(vae.parameters())
        save_manifold(vae.mean, out / "manifold.png", shape=shape, device=p.device, dtype=p.dtype)


def print_summary(report: dict) -> None:
    rows = [
        ("train ELBO", f"{report['train_elbo']:.2f}"),
        ("test ELBO", f"{report['test_elbo']:.2f}"),
        (f"test log p(x) (K={report['eval_samples']})", f"{report['test_log_likelihood']:.2f}"),
        ("active units", f"{report['active_units']}"),
        ("k-hat median / max", "n/a (needs --eval-samples >= 21)" if report["khat_max"] is None
         else f"{report['khat_median']:.2f} / {report['khat_max']:.2f}"),
        ("test split", report["test_split"]),
        ("epochs / seconds", f"{report['epochs']} / {report['seconds']:.1f}"),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))

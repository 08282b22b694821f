"""Train a binary RBM with CD-k or PCD on the 8x8 digits (default) or MNIST and estimate its test
log-likelihood with annealed importance sampling.

The pixels are binarized at 0.5. Every epoch prints the reconstruction error (on up to 1000
images) and the exact pseudo-log-likelihood (on up to 200) of training and test images. After
training, AIS (Salakhutdinov & Murray 2008) estimates log Z from a base-rate model fitted to the
training marginals, giving the test log-likelihood mean(-F(v)) - log Z-hat with its standard error.
Writes to --out: report.json, rbm.pt (the state dict), samples.png (fantasy particles),
weights.png (filters of the first hidden units), chains_summary.csv / chains_summary.txt
(arviz summary with R-hat and ESS of block-Gibbs chains run through pyro.infer.MCMC) and
loss.png.

--ais-betas defaults to 2,000 intermediate distributions (the paper's 14,500, shape kept) so that
the defaults finish in about a minute on two CPU cores; pass --ais-betas 14500 for the paper's.
"""
import argparse
import copy
import statistics
import time
import warnings

import pyro
import torch

from ..infer import (
    BlockGibbs,
    ContrastiveDivergence,
    ais_log_partition,
    default_ais_schedule,
    mean_log_likelihood,
    pseudo_log_likelihood,
    reconstruction_error,
)
from ..models import RBM
from ..plotting import image_shape, save_image_grid, save_loss_curve
from ..train import fit
from .common import add_common_arguments, atomic_output_dir, positive_float, positive_int
from .common import add_data_arguments, load_data, settings, write_json

HELP = "train a restricted Boltzmann machine (CD-k / PCD) and estimate log p(x) by AIS"
MONITOR_SIZE = 1000  # images for the reconstruction error
PLL_SIZE = 200  # images for the exact pseudo-log-likelihood (V flips each)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    parser.add_argument("--hidden", type=positive_int, default=500,
                        help="number of hidden units (default 500)")
    method = parser.add_mutually_exclusive_group()
    method.add_argument("--cd-k", type=positive_int, default=1,
                        help="contrastive divergence with K Gibbs sweeps (default CD-1)")
    method.add_argument("--pcd", action="store_true",
                        help="persistent CD (one sweep per update, one chain per batch element)")
    parser.add_argument("--epochs", type=positive_int, default=20, help="default 20")
    parser.add_argument("--batch-size", type=positive_int, default=100, help="default 100")
    parser.add_argument("--lr", type=positive_float, default=0.05,
                        help="learning rate per example (the mean gradient's step size; the "
                             "optimizer gets lr / batch-size since the loss is a batch sum); "
                             "default 0.05")
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    parser.add_argument("--weight-decay", type=float, default=1e-4,
                        help="L2 cost on the weights (not the biases), default 1e-4")
    parser.add_argument("--sparsity-target", type=float, default=None,
                        help="target mean activation of the hidden units (default: none)")
    parser.add_argument("--sparsity-cost", type=float, default=0.01, help="default 0.01")
    parser.add_argument("--ais-betas", type=positive_int, default=2000,
                        help="AIS intermediate distributions (default 2000; the paper used 14500)")
    parser.add_argument("--ais-runs", type=positive_int, default=100,
                        help="AIS runs (default 100, as in the paper)")
    parser.add_argument("--gibbs-steps", type=positive_int, default=1000,
                        help="block-Gibbs sweeps for the fantasy particles (default 1000)")
    parser.add_argument("--chains", type=positive_int, default=4,
                        help="MCMC chains for the chain summary (default 4)")
    parser.add_argument("--chain-samples", type=positive_int, default=200,
                        help="draws per chain after as many warm-up sweeps (default 200)")
    add_common_arguments(parser, out_default="runs/rbm")


def _check(args: argparse.Namespace) -> None:
    if not 0 <= args.momentum < 1:
        raise ValueError(f"--momentum must be in [0, 1), got {args.momentum}")
    if args.weight_decay < 0:
        raise ValueError(f"--weight-decay must be >= 0, got {args.weight_decay}")
    if args.sparsity_target is not None and not 0 < args.sparsity_target < 1:
        raise ValueError(f"--sparsity-target must be in (0, 1), got {args.sparsity_target}")
    if args.ais_betas < 3:
        raise ValueError(f"--ais-betas must be at least 3, got {args.ais_betas}")
    if args.ais_runs < 2:
        raise ValueError(f"--ais-runs must be at least 2 for an error bar, got {args.ais_runs}")


def make_optimizer(rbm: RBM, lr: float, momentum: float, weight_decay: float, batch_size: int):
    """SGD with momentum for the summed CD loss; L2 decay on the weights only."""

    def build(params):
        return torch.optim.SGD([
            {"params": [rbm.weight], "weight_decay": weight_decay * batch_size},
            {"params": [rbm.visible_bias, rbm.hidden_bias], "weight_decay": 0.0},
        ], lr=lr / batch_size, momentum=momentum)

    return build


def monitors(rbm: RBM, x_train: torch.Tensor, x_test: torch.Tensor) -> dict:
    """Reconstruction error (up to 1000 images) and exact pseudo-log-likelihood (up to 200) per
    image, of the first training and test images."""
    out = {}
    for split, x in (("train", x_train), ("test", x_test)):
        recon = reconstruction_error(rbm, x[:MONITOR_SIZE])
        out[f"{split}_reconstruction_error"] = recon.mean().item()
        pll = pseudo_log_likelihood(rbm, x[:PLL_SIZE])
        out[f"{split}_pseudo_log_likelihood"] = pll.mean().item()
    return out


def chain_summary(rbm: RBM, args: argparse.Namespace):
    """R-hat / ESS of the chain statistics from ``pyro.infer.MCMC`` with :class:`BlockGibbs`."""
    import arviz as az
    from pyro.infer import MCMC

    rbm = copy.deepcopy(rbm).cpu()  # MCMC's worker processes are forked: keep CUDA out of them

    with warnings.catch_warnings():
        # on small machines MCMC runs the chains one after another and says so: expected here
        warnings.filterwarnings("ignore", message="num_chains=.*drawn sequentially")
        mcmc = MCMC(BlockGibbs(rbm), num_samples=args.chain_samples,
                    warmup_steps=args.chain_samples, num_chains=args.chains,
                    save_params=list(BlockGibbs.STATISTICS), disable_progbar=not args.progress)
        mcmc.run()
    return az.summary(az.from_pyro(mcmc), var_names=list(BlockGibbs.STATISTICS))


def run(args: argparse.Namespace) -> None:
    _check(args)
    data = load_data(args, binarize="threshold")
    device = args.device
    x_train, x_test = data.x_train.to(device), data.x_test.to(device)
    num_visible = x_train.shape[1]

    pyro.set_rng_seed(args.seed)
    rbm = RBM(num_visible, args.hidden).to(device)
    rbm.init_visible_bias(x_train)  # Hinton's guide: the log-odds of the marginals
    loss = ContrastiveDivergence(k=1 if args.pcd else args.cd_k, persistent=args.pcd,
                                 sparsity_target=args.sparsity_target,
                                 sparsity_cost=args.sparsity_cost)
    per_epoch = []
    monitor_seconds = [0.0]
    epoch_seconds = []  # training time of each epoch, without the monitors
    epoch_start = [0.0]

    def callback(epoch, history):
        t = time.time()
        epoch_seconds.append(t - epoch_start[0])
        metrics = monitors(rbm, x_train, x_test)
        per_epoch.append(dict(epoch=epoch, loss=history.loss[-1], **metrics))
        print(f"epoch {epoch:3d}  free-energy gap {history.loss[-1]:8.3f}  reconstruction error "
              f"{metrics['train_reconstruction_error']:7.3f} / "
              f"{metrics['test_reconstruction_error']:7.3f}"
              f"  PLL {metrics['train_pseudo_log_likelihood']:8.3f} / "
              f"{metrics['test_pseudo_log_likelihood']:8.3f} (train / test)", flush=True)
        monitor_seconds[0] += time.time() - t
        epoch_start[0] = time.time()

    with atomic_output_dir(args.out) as out:
        t0 = epoch_start[0] = time.time()
        history = fit(rbm, None, x_train, loss=loss, module=rbm, epochs=args.epochs,
                      batch_size=args.batch_size, seed=args.seed, progress=args.progress,
                      optimizer=make_optimizer(rbm, args.lr, args.momentum, args.weight_decay,
                                               args.batch_size),
                      callback=callback)
        train_seconds = time.time() - t0 - monitor_seconds[0]  # without the monitors
        t1 = time.time()
        log_z, stderr = ais_log_partition(rbm, betas=default_ais_schedule(args.ais_betas),
                                          num_runs=args.ais_runs, base_rate=x_train)
        ais_seconds = time.time() - t1
        report = {
            "test_log_likelihood": mean_log_likelihood(rbm, x_test, log_z).item(),
            "train_log_likelihood": mean_log_likelihood(rbm, x_train, log_z).item(),
            "log_z": log_z.item(),
            "log_z_stderr": stderr.item(),
            # the median epoch: the first one also pays one-time costs (torch imports its
            # compiler stack when the first optimizer is built, about 1.5 s on 2 CPU cores)
            "seconds_per_epoch": statistics.median(epoch_seconds),
            "train_seconds": train_seconds,
            "epochs": history.epochs,
            "ais_seconds": ais_seconds,
            "ais_betas": args.ais_betas,
            "ais_runs": args.ais_runs,
            "method": "PCD" if args.pcd else f"CD-{args.cd_k}",
            "per_epoch": per_epoch,
            "test_split": data.test_split,
            "num_train": int(x_train.shape[0]),
            "num_test": int(x_test.shape[0]),
            "settings": settings(args),
        }
        summary = chain_summary(rbm, args)
        summary.to_csv(out / "chains_summary.csv")
        (out / "chains_summary.txt").write_text(summary.to_string() + "\n")
        write_json(out / "report.json", report)
        torch.save(rbm.state_dict(), out / "rbm.pt")
        write_figures(rbm, history, args.gibbs_steps, out)
        print(summary.to_string())
        print(f"{report['method']}: log Z = {report['log_z']:.2f} +- {report['log_z_stderr']:.2f}"
              f" (AIS, {args.ais_betas} betas x {args.ais_runs} runs); test log-likelihood "
              f"{report['test_log_likelihood']:.2f} nats; {report['seconds_per_epoch']:.2f} s "
              "per epoch")


def write_figures(rbm: RBM, history, gibbs_steps: int, out) -> None:
    shape = image_shape(rbm.num_visible)
    save_image_grid(rbm.sample(64, num_steps=gibbs_steps), out / "samples.png", shape,
                    title=f"fantasy particles after {gibbs_steps} Gibbs sweeps")
    with torch.no_grad():
        w = rbm.weight[:100]
        lo, hi = w.min(1, keepdim=True).values, w.max(1, keepdim=True).values
        filters = (w - lo) / (hi - lo).clamp_min(1e-12)
    save_image_grid(filters, out / "weights.png", shape, title="filters (rows of W)")
    save_loss_curve(history.loss, out / "loss.png", ylabel="free-energy gap per image")

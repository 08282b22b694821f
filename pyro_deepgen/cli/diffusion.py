"""Train a Gaussian diffusion probabilistic model (Sohl-Dickstein et al. 2015) and report its bound.

Writes into --out: ``report.json`` (test bound in nats per data point and bits per dimension,
estimated along one forward trajectory per test point, and as the sum of closed-form KL
terms, with standard errors; seconds, epochs, settings) and, for images (digits, mnist),
``samples.png`` and ``inpainting.png`` (lower half of test images filled in), or, for the
2-D swiss roll, ``trajectory.png`` (the forward trajectory and the reverse samples, as the
paper's Figure 1).
Settings left out take per-data defaults sized to finish in about a minute on two CPU cores
(swissroll, digits); mnist takes several minutes on the 5000-image subset and proportionally
longer on the full 60000 (use --epochs, --num-train or --device cuda).
"""
import argparse
import math
import time
from typing import Any, Dict, Tuple

import torch

from ..data import load_train_test
from ..data.toy import make_swiss_roll
from ..infer import DiffusionELBO
from ..models import GaussianDiffusion
from ..models.diffusion import MEAN_TYPES
from ..models.diffusion_schedules import SCHEDULES
from ..nn import TimeMLP, UNet
from ..plotting import _pyplot, save_image_grid
from ..train import fit
from .common import (
    add_common_arguments,
    add_data_arguments,
    check_data_arguments,
    atomic_output_dir,
    int_list,
    positive_float,
    positive_int,
    settings,
    write_json,
)

HELP = "train a diffusion probabilistic model; write samples, inpainting and its test bound"


# per-data defaults for the options left out (the swiss roll is the paper's Figure 1, T=40)
DEFAULTS: Dict[str, Dict[str, Any]] = {
    "swissroll": dict(steps=40, schedule="sohl", epochs=80, batch_size=128, lr=2e-3, net="mlp",
                      loss="ddpm", hidden_dims=(128, 128, 128), base_channels=16, max_test=2000),
    "digits": dict(steps=100, schedule="cosine", epochs=25, batch_size=64, lr=2e-3, net="unet",
                   loss="ddpm", hidden_dims=(256, 256, 256), base_channels=16, max_test=2000),
    "mnist": dict(steps=100, schedule="cosine", epochs=10, batch_size=64, lr=1e-3, net="unet",
                  loss="ddpm", hidden_dims=(512, 512, 512), base_channels=16, max_test=500),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser, extra_choices=("swissroll",), default="swissroll",
                       help="swissroll (2-D, default), digits (sklearn 8x8) or mnist (IDX files)")
    parser.add_argument("--steps", type=positive_int, default=None,
                        help="number of diffusion steps T (default: 40 swissroll, 100 images)")
    parser.add_argument("--schedule", choices=SCHEDULES, default=None,
                        help="beta schedule (default: sohl for swissroll, cosine for images)")
    parser.add_argument("--epochs", type=positive_int, default=None, help="training epochs")
    parser.add_argument("--batch-size", type=positive_int, default=None, help="minibatch size")
    parser.add_argument("--lr", type=positive_float, default=None, help="Adam learning rate")
    parser.add_argument("--loss", choices=("elbo", "ddpm"), default=None,
                        help="gradient weighting of DiffusionELBO: elbo (the bound) or ddpm "
                             "(epsilon-prediction + 1e-3 bound, the default)")
    parser.add_argument("--mean-type", choices=MEAN_TYPES, default="v",
                        help="what the network's mean output predicts (default v: well "
                             "conditioned at every step; eps as in DDPM)")
    parser.add_argument("--net", choices=("mlp", "unet"), default=None,
                        help="network: mlp (TimeMLP; default for swissroll) or unet (images; "
                             "default for digits and mnist)")
    parser.add_argument("--hidden-dims", type=int_list, default=None,
                        help="TimeMLP hidden sizes, e.g. 128,128,128")
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
    add_common_arguments(parser, out_default="results/diffusion")


def _swiss_roll(n: int, seed: int) -> torch.Tensor:
    """The 2-D swiss roll of :func:`pyro_deepgen.data.toy.make_swiss_roll` halved, i.e.
    sklearn's roll / 10: about unit scale, noise standard deviation 0.05."""
    return make_swiss_roll(n, seed=seed) / 2


def _resolve(args: argparse.Namespace) -> None:
    for key, value in DEFAULTS[args.data].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.net == "unet" and args.data == "swissroll":
        raise ValueError("--net unet needs images; use --data digits or mnist")
    check_data_arguments(args)


def _load(args: argparse.Namespace) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, Any]]:
    if args.data == "swissroll":
        n = args.num_train or 10000
        x_train, x_test = _swiss_roll(n, args.seed), _swiss_roll(args.max_test, args.seed + 1)
        split = f"{args.max_test} fresh points (seed {args.seed + 1})"
        return x_train, x_test, {"event_shape": (2,), "data": "continuous", "test_split": split}
    tt = load_train_test(args.data, args.data_root, seed=args.seed)
    x_train, x_test = tt.x_train, tt.x_test
    if args.num_train is not None:
        x_train = x_train[: args.num_train]
    x_test = x_test[: args.max_test]
    side = int(math.isqrt(x_train.shape[1]))
    shape = (1, side, side) if args.net == "unet" else (side * side,)
    info = {"event_shape": shape, "data": "discrete", "image_side": side,
            "num_levels": 17 if args.data == "digits" else 256, "test_split": tt.test_split}
    return x_train.reshape(-1, *shape), x_test.reshape(-1, *shape), info


def _build(args: argparse.Namespace, info: Dict[str, Any]) -> GaussianDiffusion:
    shape = info["event_shape"]
    if args.net == "unet":
        net = UNet(shape[0], base_channels=args.base_channels, channel_mults=(1, 2, 2))
    else:
        net = TimeMLP(shape[0], args.hidden_dims)
    return GaussianDiffusion(net, shape, num_steps=args.steps, schedule=args.schedule,
                             mean_type=args.mean_type, data=info["data"],
                             num_levels=info.get("num_levels", 256))


def _save_trajectory(path, diffusion, x_test, samples_path) -> None:
    plt = _pyplot()
    T = diffusion.num_steps
    steps = (0, T // 2, T)
    fig, axes = plt.subplots(2, 3, figsize=(10, 6.5), sharex=True, sharey=True)
    for ax, t in zip(axes[0], steps):
        xt = x_test if t == 0 else diffusion.q_sample(x_test, t)
        ax.scatter(*xt.cpu().T.numpy(), s=1, alpha=0.5)
        ax.set_title(f"forward q(x_{t}), t = {t}")
    for ax, t in zip(axes[1], steps[::-1]):
        ax.scatter(*samples_path[t].cpu().T.numpy(), s=1, alpha=0.5, color="C1")
        ax.set_title(f"reverse p(x_{t}), t = {t}")
    axes[0, 0].set_xlim(-3, 3)
    axes[0, 0].set_ylim(-3, 3)
    fig.suptitle(f"Swiss roll, T = {T} (Sohl-Dickstein et al. 2015, Fig. 1)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _cosine_decay(epochs: int):
    """Learning rate annealed from lr to lr/10 along a half cosine over the epochs."""
    def schedule(optimizer):
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=epochs, eta_min=optimizer.param_groups[0]["lr"] / 10)
    return schedule


def run(args: argparse.Namespace) -> None:
    _resolve(args)
    torch.manual_seed(args.seed)
    x_train, x_test, info = _load(args)
    x_train, x_test = x_train.to(args.device), x_test.to(args.device)
    diffusion = _build(args, info).to(args.device)
    start = time.time()
    with atomic_output_dir(args.out) as out:
        history = fit(diffusion.model, diffusion.guide, x_train, loss=DiffusionELBO(args.loss),
                      lr=args.lr, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                      clip_norm=1.0, lr_schedule=_cosine_decay(args.epochs),
                      progress=args.progress)
        train_seconds = time.time() - start
        diffusion.eval()
        # the bound two ways: one joint forward trajectory per point (= a Trace_ELBO particle;
        # the headline, usually the smaller variance) and the sum of closed-form KL terms
        bound = diffusion.bound(x_test, estimator="trajectory")
        kl = diffusion.bound(x_test, estimator="kl")
        sqrt_n = math.sqrt(len(x_test))
        report = {
            "test_bound_nats": bound.nats.mean().item(),
            "test_bound_bits_per_dim": bound.bits_per_dim.mean().item(),
            "test_bound_nats_stderr": (bound.nats.std() / sqrt_n).item(),
            "test_bound_nats_kl": kl.nats.mean().item(),
            "test_bound_bits_per_dim_kl": kl.bits_per_dim.mean().item(),
            "test_bound_nats_kl_stderr": (kl.nats.std() / sqrt_n).item(),
            "num_test": len(x_test),
            "num_train": len(x_train),
            "test_split": info["test_split"],
            "bound_terms_mean": kl.terms.mean(0),  # L_0, L_1, ..., L_T
            "train_loss": history.loss,
            "epochs": history.epochs,
            "train_seconds": train_seconds,
            "settings": settings(args),
        }
        if info["data"] == "continuous":
            samples, path = diffusion.sample(max(args.num_samples, 1000), batch_size=1000,
                                             progress=args.progress, trajectory=True)
            _save_trajectory(out / "trajectory.png", diffusion, x_test, path)
        else:
            side = info["image_side"]
            samples = diffusion.sample(args.num_samples, batch_size=256, progress=args.progress)
            save_image_grid(samples.reshape(len(samples), -1), out / "samples.png",
                            title=f"{args.data}: diffusion samples (T={args.steps})")
            shown = x_test[:16]
            mask = torch.zeros(1, side, side, dtype=torch.bool, device=args.device)
            mask[:, : side // 2] = True  # the top half is known
            mask = mask.reshape(1, *info["event_shape"])
            filled = diffusion.inpaint(shown, mask, progress=args.progress)
            rows = torch.cat([shown, torch.where(mask, shown, torch.full_like(shown, 0.5)), filled])
            save_image_grid(rows.reshape(len(rows), -1), out / "inpainting.png", ncol=len(shown),
                            title="rows: test images, known top half, inpainted")
        report["seconds"] = time.time() - start
        write_json(out / "report.json", report)
    print(f"test bound: {report['test_bound_nats']:.2f} nats per point, "
          f"{report['test_bound_bits_per_dim']:.3f} bits/dim; results in {args.out}")

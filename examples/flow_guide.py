"""A VAE whose guide is a diagonal Gaussian followed by K planar (or IAF, NICE, ...) flows.

    python examples/flow_guide.py --flow planar --depth 10 --epochs 30
"""
import argparse

import pyro
import torch
from pyro.infer import Trace_ELBO

from pyro_deepgen.data import load_train_test
from pyro_deepgen.distributions.transforms import FLOWS
from pyro_deepgen.evaluate import elbo, log_likelihood
from pyro_deepgen.guides import flow_vae
from pyro_deepgen.train import fit


def main(args: argparse.Namespace) -> float:
    pyro.set_rng_seed(args.seed)
    data = load_train_test("digits", binarize="dynamic", seed=args.seed)
    x_train, x_test = data.x_train.to(args.device), data.x_test.to(args.device)
    vae, guide = flow_vae(64, args.z_dim, args.flow, args.depth, hidden_dims=(64, 64))
    vae.to(args.device), guide.to(args.device)
    fit(vae.model, guide, x_train, loss=Trace_ELBO(), module=guide, epochs=args.epochs,
        batch_size=100, binarize="dynamic", seed=args.seed, progress=False)
    bound = elbo(vae.model, guide, x_test, num_samples=10).mean().item()
    ll = log_likelihood(vae.model, guide, x_test, num_samples=args.eval_samples).mean().item()
    print(f"{args.flow} K={args.depth}: test ELBO {bound:.2f}, test log p(x) ~= {ll:.2f} nats")
    return ll


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--flow", default="planar", choices=tuple(FLOWS))
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--z-dim", type=int, default=10)
    parser.add_argument("--eval-samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", type=torch.device, default=torch.device("cpu"))
    parser.add_argument("--out", default=None, help="unused; accepted for uniformity")
    main(parser.parse_args())

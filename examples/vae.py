"""Train the package's VAE on the embedded 8x8 digits with Pyro's SVI machinery and evaluate it.

    python examples/vae.py --epochs 20 --device cpu --out runs/example_vae
"""
import argparse
from pathlib import Path

import pyro
import torch

from pyro_deepgen.data import load_train_test
from pyro_deepgen.evaluate import log_likelihood
from pyro_deepgen.models import VAE
from pyro_deepgen.train import fit


def main(args: argparse.Namespace) -> float:
    pyro.set_rng_seed(args.seed)
    data = load_train_test("digits", binarize="dynamic", seed=args.seed)
    x_train, x_test = data.x_train.to(args.device), data.x_test.to(args.device)
    vae = VAE(x_dim=64, z_dim=args.z_dim, hidden_dims=(128, 128)).to(args.device)
    history = fit(vae.model, vae.guide, x_train, loss=pyro.infer.Trace_ELBO(), epochs=args.epochs,
                  batch_size=100, binarize="dynamic", checkpoint=Path(args.out) / "vae.pt")
    ll = log_likelihood(vae.model, vae.guide, x_test, num_samples=args.eval_samples).mean().item()
    print(f"final training loss {history.loss[-1]:.2f} nats; test log p(x) ~= {ll:.2f} nats")
    return ll


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--z-dim", type=int, default=10)
    parser.add_argument("--eval-samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", type=torch.device, default=torch.device("cpu"))
    parser.add_argument("--out", default="runs/example_vae")
    main(parser.parse_args())

"""Train the same VAE with the ELBO, the IWAE bound and its DReG gradient; compare test log p(x).

    python examples/iwae.py --epochs 30 --particles 10
"""
import argparse

import pyro
import torch
from pyro.infer import Trace_ELBO

from pyro_deepgen.data import load_train_test
from pyro_deepgen.evaluate import log_likelihood
from pyro_deepgen.infer import TraceIWAE_ELBO
from pyro_deepgen.models import VAE
from pyro_deepgen.train import fit


def main(args: argparse.Namespace) -> dict:
    data = load_train_test("digits", binarize="dynamic", seed=args.seed)
    x_train, x_test = data.x_train.to(args.device), data.x_test.to(args.device)
    objectives = {
        "ELBO (k=1)": Trace_ELBO(),
        f"IWAE (k={args.particles})": TraceIWAE_ELBO(num_particles=args.particles),
        f"IWAE-DReG (k={args.particles})": TraceIWAE_ELBO(args.particles, estimator="dreg"),
    }
    results = {}
    for name, elbo in objectives.items():
        pyro.clear_param_store()
        pyro.set_rng_seed(args.seed)  # the same initialization for every objective
        vae = VAE(64, args.z_dim, (64, 64)).to(args.device)
        fit(vae.model, vae.guide, x_train, loss=elbo, epochs=args.epochs, batch_size=100,
            binarize="dynamic", seed=args.seed, progress=False)
        ll = log_likelihood(vae.model, vae.guide, x_test, num_samples=args.eval_samples)
        results[name] = ll.mean().item()
        print(f"{name:<20} test log p(x) ~= {results[name]:.2f} nats")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--particles", type=int, default=10)
    parser.add_argument("--z-dim", type=int, default=10)
    parser.add_argument("--eval-samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", type=torch.device, default=torch.device("cpu"))
    parser.add_argument("--out", default=None, help="unused; accepted for uniformity")
    main(parser.parse_args())

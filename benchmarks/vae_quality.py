"""Does the package's VAE, trained through `pyro-deepgen vae`'s code path, reach the test
log-likelihood of a hand-written PyTorch VAE trained the same way?

Both: 784-200-200-z (tanh), Bernoulli likelihood, Adam(lr) with batch 100, dynamic
binarization, the same epochs and the same held-out 10% of ../shared/data/mnist-5k; test
log p(x) by importance sampling with K particles. Prints both and the difference.

    python benchmarks/vae_quality.py [--epochs 50] [--eval-samples 5000] [--quick]
"""
import argparse
import json
import sys
import time
from pathlib import Path

import pyro
import torch

from pyro_deepgen.data import load_train_test
from pyro_deepgen.evaluate import log_likelihood
from pyro_deepgen.models import VAE
from pyro_deepgen.train import fit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vae_step import hand_log_likelihood, hand_log_weights, hand_written_twin  # noqa: E402
from _shared_data import require_mnist_root  # noqa: E402 (benchmarks/ is on sys.path when run)

REPO = Path(__file__).resolve().parent.parent


def train_hand(enc, dec, x, epochs, batch, lr, seed):
    opt = torch.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=lr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        xb_all = torch.bernoulli(x, generator=g)
        for idx in torch.randperm(len(x), generator=g).split(batch):
            loss = -hand_log_weights(enc, dec, xb_all[idx], 1).sum()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)


def main(args):
    # The first torch optimizer of a process imports torch._dynamo (seconds): do it before timing.
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    require_mnist_root(args.data_root)
    data = load_train_test("mnist", args.data_root, binarize="dynamic", seed=0)
    x_train, x_test = data.x_train, data.x_test[: args.test_points]
    pyro.set_rng_seed(args.seed)
    vae = VAE(784, args.z_dim, (200, 200))
    enc, dec = hand_written_twin(vae)  # identical initialization
    t = time.time()
    fit(vae.model, vae.guide, x_train, epochs=args.epochs, batch_size=100, lr=args.lr,
        binarize="dynamic", seed=args.seed, progress=False)
    t_pkg = time.time() - t
    t = time.time()
    train_hand(enc, dec, x_train, args.epochs, 100, args.lr, args.seed)
    t_hand = time.time() - t
    pyro.set_rng_seed(1)
    ll_pkg = log_likelihood(vae.model, vae.guide, x_test, num_samples=args.eval_samples).mean().item()
    ll_hand = hand_log_likelihood(enc, dec, x_test, args.eval_samples, 500).mean().item()
    res = {"epochs": args.epochs, "z_dim": args.z_dim, "eval_samples": args.eval_samples,
           "test_points": int(len(x_test)), "test_split": data.test_split,
           "test_ll_package": ll_pkg, "test_ll_hand": ll_hand, "difference": ll_pkg - ll_hand,
           "train_seconds_package": t_pkg, "train_seconds_hand": t_hand,
           "train_time_ratio": t_pkg / t_hand}
    print(f"test log p(x) (K={args.eval_samples}, {len(x_test)} images): package {ll_pkg:.2f}, "
          f"hand-written {ll_hand:.2f} (difference {ll_pkg - ll_hand:+.2f} nats); "
          f"training time ratio {t_pkg / t_hand:.2f}x")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "data" / "mnist-5k"))
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--z-dim", type=int, default=50)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--eval-samples", type=int, default=5000)
    p.add_argument("--test-points", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    if a.quick:
        a.epochs, a.eval_samples, a.test_points = 1, 50, 50
    main(a)

"""An RBM on binarized digits: CD-k training with the package's loop, block-Gibbs MCMC through
`pyro.infer.MCMC` with arviz diagnostics, and the AIS test log-likelihood.

    python examples/rbm.py --hidden 100 --epochs 30 --cd-k 1
"""
import argparse

import pyro
import torch
from pyro.infer import MCMC
from pyro.infer.mcmc.util import print_summary

from pyro_deepgen.data import load_train_test
from pyro_deepgen.diagnostics import to_inference_data
from pyro_deepgen.energy import RBM, BlockGibbs, ContrastiveDivergence, ais_log_partition
from pyro_deepgen.energy import mean_log_likelihood
from pyro_deepgen.infer import default_ais_schedule
from pyro_deepgen.train import fit


def main(args: argparse.Namespace) -> float:
    pyro.set_rng_seed(args.seed)
    data = load_train_test("digits", binarize="threshold", seed=args.seed)
    x_train, x_test = data.x_train.to(args.device), data.x_test.to(args.device)
    rbm = RBM(64, args.hidden).to(args.device)
    batch = 100  # the CD loss is a batch sum: lr = step size / batch size
    fit(rbm, None, x_train, loss=ContrastiveDivergence(k=args.cd_k), module=rbm,
        optimizer=lambda p: torch.optim.SGD(p, lr=0.05 / batch, momentum=0.9),
        epochs=args.epochs, batch_size=batch, seed=args.seed, progress=False)

    mcmc = MCMC(BlockGibbs(rbm), num_samples=args.draws, warmup_steps=args.draws, num_chains=1,
                disable_progbar=True)
    mcmc.run()
    stats = ("energy", "free_energy", "mean_hidden", "mean_visible")
    samples = mcmc.get_samples(group_by_chain=True)
    print_summary({k: samples[k] for k in stats})  # mean, sd, n_eff, split R-hat
    idata = to_inference_data(mcmc)  # arviz's container, on arviz 0.2x and 1.x (several chains for R-hat)
    print({k: tuple(v.shape) for k, v in idata.posterior.data_vars.items()})

    log_z, stderr = ais_log_partition(rbm, default_ais_schedule(args.ais_betas), num_runs=100)
    ll = mean_log_likelihood(rbm, x_test, log_z).item()
    print(f"AIS log Z = {log_z.item():.2f} +- {stderr.item():.2f}; test log p(v) ~= {ll:.2f} nats")
    return ll


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hidden", type=int, default=100)
    parser.add_argument("--cd-k", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--ais-betas", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", type=torch.device, default=torch.device("cpu"))
    parser.add_argument("--out", default=None, help="unused; accepted for uniformity")
    main(parser.parse_args())

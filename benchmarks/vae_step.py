"""Framework overhead of the package's VAE: SVI step and log-likelihood evaluation.

Compares, in one process and with identical networks (weights copied):

- one training step: ``Trace_ELBO().loss_and_grads`` on ``VAE.model/guide`` + Adam, against a
  hand-written PyTorch VAE step;
- the importance-sampled log-likelihood (K particles): ``pyro_deepgen.evaluate.log_likelihood``
  against a hand-written chunked PyTorch loop and against Pyro's
  ``RenyiELBO(alpha=0).loss`` (``evaluate_loss``), which computes the same bound;

on the embedded digits and on MNIST-sized data (``--data-root``, default ../shared/data/mnist-5k).
Timings alternate between the contenders and report medians. Prints ratios; writes JSON.

    python benchmarks/vae_step.py [--quick] [--out results/vae_step.json]
"""
import argparse
import json
import math
import statistics
import time
from pathlib import Path

import pyro
import torch
from torch.nn import functional as F

from pyro_deepgen.data import load_digits, load_mnist
from pyro_deepgen.evaluate import log_likelihood
from pyro_deepgen.models import VAE
from pyro_deepgen.nn import MLP
from _shared_data import without_mnist_hint  # noqa: E402 (benchmarks/ is on sys.path when run)

REPO = Path(__file__).resolve().parent.parent


def hand_written_twin(vae: VAE):
    """Plain ``nn.Sequential`` copies of the VAE's encoder and decoder (same weights)."""
    enc = MLP(vae.x_dim, vae.hidden_dims, 2 * vae.z_dim)
    dec = MLP(vae.z_dim, vae.hidden_dims[::-1], vae.x_dim)
    enc.load_state_dict(vae.encoder.state_dict())
    dec.load_state_dict(vae.decoder.state_dict())
    return enc.net, dec.net


def hand_log_weights(enc, dec, x, num_particles, min_scale=1e-4):
    loc, raw = enc(x).chunk(2, dim=-1)
    scale = F.softplus(raw) + min_scale
    eps = torch.randn((num_particles,) + loc.shape, device=x.device, dtype=x.dtype)
    z = loc + scale * eps
    logits = dec(z)
    log_px = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)
    log_pz = -0.5 * (z**2).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)
    log_qz = (-0.5 * eps**2 - scale.log()).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)
    return log_px + log_pz - log_qz  # (P, N)


def hand_step(enc, dec, opt, x):
    loss = -hand_log_weights(enc, dec, x, 1).sum()
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.item()


@torch.no_grad()
def hand_log_likelihood(enc, dec, x, num_samples, chunk):
    total = None
    for start in range(0, num_samples, chunk):
        lw = hand_log_weights(enc, dec, x, min(chunk, num_samples - start))
        c = torch.logsumexp(lw, 0)
        total = c if total is None else torch.logaddexp(total, c)
    return total - math.log(num_samples)


def timeit(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench(name, x, hidden, z_dim, batch, steps, eval_points, eval_k, chunk, rounds):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    vae = VAE(x.shape[1], z_dim, hidden)
    elbo = pyro.infer.Trace_ELBO()
    xb = x[:batch]
    elbo.loss_and_grads(vae.model, vae.guide, xb)  # creates the params
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
    enc, dec = hand_written_twin(vae)
    hopt = torch.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=1e-3)

    def ours():
        for _ in range(steps):
            elbo.loss_and_grads(vae.model, vae.guide, xb)
            opt.step()
            opt.zero_grad(set_to_none=True)

    def theirs():
        for _ in range(steps):
            hand_step(enc, dec, hopt, xb)

    xe = x[:eval_points]
    renyi = pyro.infer.RenyiELBO(alpha=0, num_particles=eval_k, vectorize_particles=True)
    ours(), theirs()  # warm up
    step_ours, step_hand, ll_ours, ll_hand, ll_renyi = [], [], [], [], []
    for _ in range(rounds):
        step_ours.append(timeit(ours, 1) / steps)
        step_hand.append(timeit(theirs, 1) / steps)
        ll_ours.append(timeit(lambda: log_likelihood(vae.model, vae.guide, xe, num_samples=eval_k,
                                                     chunk_size=chunk), 1))
        ll_hand.append(timeit(lambda: hand_log_likelihood(enc, dec, xe, eval_k, chunk), 1))
        with torch.no_grad():
            ll_renyi.append(timeit(lambda: renyi.loss(vae.model, vae.guide, xe), 1))
    med = statistics.median
    res = {
        "data": name, "x_dim": x.shape[1], "hidden": hidden, "z_dim": z_dim, "batch": batch,
        "step_seconds_package": med(step_ours), "step_seconds_hand": med(step_hand),
        "step_ratio": med(step_ours) / med(step_hand),
        "eval_points": eval_points, "eval_k": eval_k,
        "loglik_seconds_package": med(ll_ours), "loglik_seconds_hand": med(ll_hand),
        "loglik_seconds_pyro_renyi": med(ll_renyi),
        "loglik_ratio": med(ll_ours) / med(ll_hand),
        "loglik_ratio_pyro_renyi": med(ll_renyi) / med(ll_hand),
    }
    print(f"[{name}] SVI step: package {1e3 * res['step_seconds_package']:.2f} ms, hand-written "
          f"{1e3 * res['step_seconds_hand']:.2f} ms, ratio {res['step_ratio']:.2f}x")
    print(f"[{name}] log p(x), K={eval_k}, {eval_points} points: package {res['loglik_seconds_package']:.2f} s, "
          f"hand-written {res['loglik_seconds_hand']:.2f} s (ratio {res['loglik_ratio']:.2f}x), "
          f"Pyro RenyiELBO {res['loglik_seconds_pyro_renyi']:.2f} s (ratio {res['loglik_ratio_pyro_renyi']:.2f}x)")
    return res


def main(args):
    torch.set_num_threads(args.threads)
    results = []
    x_digits, _ = load_digits(binarize="threshold")
    q = args.quick
    results.append(bench("digits", x_digits, (200, 200), 50, 100, 5 if q else 50,
                         20 if q else 100, 100 if q else 5000, 500, 2 if q else 5))
    root = Path(args.data_root)
    if (root / "train-images-idx3-ubyte.gz").exists() or (root / "train-images-idx3-ubyte").exists():
        x_mnist, _ = load_mnist(root, binarize="threshold")
        results.append(bench("mnist", x_mnist, (200, 200), 50, 100, 5 if q else 30,
                             10 if q else 100, 100 if q else 5000, 250, 2 if q else 5))
    else:
        print(f"skipped the MNIST-sized benchmark (the digits one ran): {without_mnist_hint(root)}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data" / "mnist-5k"))
    parser.add_argument("--quick", action="store_true", help="tiny settings, to check the script runs")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    main(parser.parse_args())

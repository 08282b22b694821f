"""Benchmark of GaussianDiffusion on the 8x8 digits.

1. Speed: seconds per training step of DiffusionELBO, and images sampled per second.
2. The closed-form training loss (one uniformly drawn step, DiffusionELBO) against Trace_ELBO
   over the whole chain (T network calls per particle): seconds per gradient step and the ratio.
3. The test bound of the diffusion model on the digits next to the test log-likelihood of the
   foundation VAE (IWAE estimate, pyro_deepgen.evaluate.log_likelihood) on the same split, both
   in nats per image of the discrete 17-level data: the diffusion uses the discretized decoder;
   the Gaussian VAE is trained on uniformly dequantized images (k + u) / 17 and
   log P(k) >= E_u log p((k + u) / 17) - 64 log 17 (Theis et al. 2016) turns its density into a
   bound on the same discrete log-probability.

    python benchmarks/diffusion.py --quick
    python benchmarks/diffusion.py --out results/bench_diffusion
"""
import argparse
import json
import math
import sys
import time
from pathlib import Path

import pyro
import torch
from pyro.infer import Trace_ELBO

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyro_deepgen.data import load_train_test  # noqa: E402
from pyro_deepgen.evaluate import log_likelihood  # noqa: E402
from pyro_deepgen.infer import DiffusionELBO  # noqa: E402
from pyro_deepgen.models import VAE, GaussianDiffusion  # noqa: E402
from pyro_deepgen.nn import UNet  # noqa: E402
from pyro_deepgen.train import fit  # noqa: E402

LEVELS = 17  # sklearn digits have grey levels 0..16


def _time(fn, repeats):
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def make_diffusion(args):
    """The command line's digits model: a small U-Net, cosine schedule, v-prediction."""
    net = UNet(1, base_channels=args.base_channels, channel_mults=(1, 2, 2))
    return GaussianDiffusion(net, (1, 8, 8), num_steps=args.steps, schedule="cosine",
                             mean_type="v", data="discrete", num_levels=LEVELS).to(args.device)


def images(x):
    return x.reshape(-1, 1, 8, 8)


def speed(args, x_train):
    """Seconds per gradient step: DiffusionELBO vs Trace_ELBO over the chain; sampling rate."""
    d = make_diffusion(args)
    opt = torch.optim.Adam(d.parameters(), lr=1e-3)
    batch = images(x_train[: args.batch_size])

    def step(elbo):
        def run():
            opt.zero_grad()
            elbo.loss_and_grads(d.model, d.guide, batch)
            opt.step()
        return run

    closed = _time(step(DiffusionELBO("ddpm")), args.repeats)
    chain = _time(step(Trace_ELBO()), max(1, args.repeats // 10))
    n = args.sample_batch
    sample_seconds = _time(lambda: d.sample(n, progress=False), 1)
    return {
        "steps_T": args.steps,
        "batch_size": args.batch_size,
        "seconds_per_step_closed_form": closed,
        "seconds_per_step_trace_elbo": chain,
        "speedup_closed_form_vs_trace_elbo": chain / closed,
        "images_sampled_per_second": n / sample_seconds,
    }


def diffusion_bound(args, data):
    d = make_diffusion(args)
    history = fit(d.model, d.guide, images(data.x_train), loss=DiffusionELBO("ddpm"), lr=2e-3,
                  epochs=args.epochs, batch_size=64, clip_norm=1.0, seed=args.seed,
                  progress=not args.quiet)
    bound = d.bound(images(data.x_test), estimator="trajectory")
    kl = d.bound(images(data.x_test), estimator="kl")
    return {
        "diffusion_test_bound_nats": bound.nats.mean().item(),
        "diffusion_test_bits_per_dim": bound.bits_per_dim.mean().item(),
        "diffusion_test_bound_nats_kl_estimator": kl.nats.mean().item(),
        "diffusion_train_seconds": history.seconds,
    }


def vae_log_likelihood(args, data):
    g = torch.Generator(device="cpu").manual_seed(args.seed)

    def dequantize(x):
        u = torch.rand(x.shape, generator=g).to(x.device)
        return (x * (LEVELS - 1) + u) / LEVELS

    vae = VAE(64, args.vae_z_dim, hidden_dims=(200, 200), likelihood="gaussian").to(args.device)
    x_train = dequantize(data.x_train)
    history = fit(vae.model, vae.guide, x_train, lr=1e-3, epochs=args.vae_epochs, batch_size=64,
                  seed=args.seed, clip_norm=10.0, progress=not args.quiet)
    density = log_likelihood(vae.model, vae.guide, dequantize(data.x_test),
                             num_samples=args.iwae_samples)
    discrete = density - 64 * math.log(LEVELS)
    return {
        "vae_test_log_likelihood_nats": discrete.mean().item(),
        "vae_test_bits_per_dim": (-discrete.mean() / (64 * math.log(2))).item(),
        "vae_train_seconds": history.seconds,
    }


def main(args):
    torch.set_num_threads(max(1, torch.get_num_threads()))
    pyro.set_rng_seed(args.seed)
    data = load_train_test("digits", seed=args.seed)
    data = type(data)(data.x_train.to(args.device), data.y_train, data.x_test.to(args.device),
                      data.y_test, data.test_split, data.name)
    results = {"device": str(args.device), "quick": args.quick, "test_split": data.test_split,
               "num_test": len(data.x_test)}
    results.update(speed(args, data.x_train))
    r = results
    print(f"[speed] T={args.steps}: closed-form loss {r['seconds_per_step_closed_form'] * 1e3:.1f} "
          f"ms/step, Trace_ELBO over the chain {results['seconds_per_step_trace_elbo'] * 1e3:.1f} "
          f"ms/step, ratio {results['speedup_closed_form_vs_trace_elbo']:.1f}x; "
          f"{results['images_sampled_per_second']:.1f} images/s sampled")
    pyro.clear_param_store()
    results.update(diffusion_bound(args, data))
    pyro.clear_param_store()
    results.update(vae_log_likelihood(args, data))
    results["bound_minus_vae_nats"] = (
        results["diffusion_test_bound_nats"] - results["vae_test_log_likelihood_nats"]
    )
    print(f"[digits test, nats per image of 17-level data] diffusion bound "
          f"{r['diffusion_test_bound_nats']:.2f} ({r['diffusion_test_bits_per_dim']:.3f} "
          f"bits/dim), VAE IWAE-{args.iwae_samples} {results['vae_test_log_likelihood_nats']:.2f} "
          f"({results['vae_test_bits_per_dim']:.3f} bits/dim); difference "
          f"{results['bound_minus_vae_nats']:+.2f} nats")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "diffusion.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke run")
    p.add_argument("--data-root", type=Path,
                   default=Path(__file__).resolve().parent.parent / "../shared/data/mnist-5k",
                   help="MNIST folder (unused: the digits benchmark needs no files)")
    p.add_argument("--steps", type=int, default=100, help="diffusion steps T (default 100)")
    p.add_argument("--epochs", type=int, default=25, help="diffusion training epochs")
    p.add_argument("--base-channels", type=int, default=16, help="U-Net width")
    p.add_argument("--vae-epochs", type=int, default=100, help="VAE training epochs")
    p.add_argument("--vae-z-dim", type=int, default=16)
    p.add_argument("--iwae-samples", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=64, help="batch of the speed test")
    p.add_argument("--sample-batch", type=int, default=256, help="images sampled in the speed test")
    p.add_argument("--repeats", type=int, default=50, help="timed steps of the closed-form loss")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", type=torch.device, default=torch.device("cpu"))
    p.add_argument("--out", type=Path, default=None, help="folder for diffusion.json")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.epochs, args.vae_epochs, args.iwae_samples = 20, 1, 1, 10
        args.repeats, args.sample_batch, args.base_channels = 5, 16, 8
    return args


if __name__ == "__main__":
    main(parse_args())

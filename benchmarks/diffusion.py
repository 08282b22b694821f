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
4. Sampling time against steps (``--sampling-only`` runs just this): ancestral sampling (T steps)
   and DDIM (S steps) of the GaussianDiffusion, DDIM and the probability-flow ODE (RK4, 4 network
   calls a step) of a VariationalDiffusion with the same U-Net, each against a hand-written
   PyTorch loop doing the same arithmetic in the same process (untrained networks: the time
   does not depend on the weights); the ratio is ours / hand-written.

5. Quality at equal wall-clock budgets (``--quality``, MNIST IDX files in ``--data-root``): the
   ``ddpm``, ``improved`` and ``vdm`` objectives of ``pyro-deepgen diffusion --data mnist`` (their
   default networks, learning rates and batch size), the VDM without its histogram base denoiser,
   and a RealNVP :class:`~pyro_deepgen.distributions.FlowDensity` on the 784 pixels (uniformly
   dequantized), each trained for ``--budget`` seconds on the seeded 90/10 split of mnist-5k and
   scored on the 500 held-out images in bits/dim (+- s.e.) against the per-pixel 256-way histogram
   of the same training images; with ``--ode-test N`` also the VDM's probability-flow ODE bound on
   the first N held-out images. The budget is met by epochs: the first epoch is timed, the run
   plans ``round(budget / first epoch seconds)`` epochs (at least 1) and anneals the learning
   rate from lr to lr/10 along a half cosine over them (the experiment's schedule).

    python benchmarks/diffusion.py --quick
    python benchmarks/diffusion.py --sampling-only
    python benchmarks/diffusion.py --quality --budget 150 --out results/bench_diffusion_quality
    python benchmarks/diffusion.py --quality --quick   # a smoke run, under a minute
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
from pyro_deepgen.models.diffusion_samplers import ddim_sample, ddim_timesteps, ode_sample  # noqa: E402
from pyro_deepgen.nn import UNet  # noqa: E402
from pyro_deepgen.train import fit  # noqa: E402

LEVELS = 17  # sklearn digits have grey levels 0..16
#: the models of ``--quality``
QUALITY_MODELS = ("ddpm", "improved", "vdm", "vdm-no-base", "flow")


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


def _hand_ancestral(d, n):
    """The ancestral chain of a v-predicting, learned-range GaussianDiffusion with clipping, by hand."""
    c = {k: v for k, v in d.coefficients().items()}
    y = torch.randn(n, *d.event_shape, device=c["betas"].device)
    for t in range(d.num_steps, 0, -1):
        steps = torch.full((n,), t, dtype=torch.long, device=y.device)
        v, var = d.net(y, steps)
        x0 = (c["sqrt_alpha_bar"][t] * y - c["sqrt_one_minus_alpha_bar"][t] * v).clamp(-1, 1)
        mean = c["coef_x0"][t] * x0 + c["coef_xt"][t] * y
        frac = (var + 1) / 2
        log_var = frac * c["log_betas"][t] + (1 - frac) * c["posterior_log_variance_clipped"][t]
        y = mean + torch.exp(0.5 * log_var) * torch.randn_like(y) if t > 1 else mean
    return ((y.clamp(-1, 1) + 1) / 2 * (d.num_levels - 1)).round() / (d.num_levels - 1)


def _hand_ddim(d, n, num_steps):
    """Deterministic DDIM of a v-predicting GaussianDiffusion with clipping, by hand."""
    ab = d.coefficients()["alpha_bar"]
    taus = ddim_timesteps(d.num_steps, num_steps).tolist()
    y = torch.randn(n, *d.event_shape, device=ab.device)
    for t, s in zip(taus[::-1], (taus[-2::-1] + [0])):
        v, _ = d.net(y, torch.full((n,), t, dtype=torch.long, device=y.device))
        x0 = (ab[t].sqrt() * y - (1 - ab[t]).sqrt() * v).clamp(-1, 1)
        eps = (y - ab[t].sqrt() * x0) / (1 - ab[t]).sqrt()
        y = ab[s].sqrt() * x0 + (1 - ab[s]).sqrt() * eps
    return ((y.clamp(-1, 1) + 1) / 2 * (d.num_levels - 1)).round() / (d.num_levels - 1)


def _hand_vdm_ddim(m, n, num_steps):
    """Deterministic DDIM of a VariationalDiffusion on t_i = i/S, gamma of the grid in one call."""
    grid = torch.linspace(1, 0, num_steps + 1)
    with torch.no_grad():
        g = m.gamma(grid)
    a, sig = torch.sigmoid(-g).sqrt(), torch.sigmoid(g).sqrt()
    z = torch.randn(n, *m.data_shape, device=m.grid.device)
    for i in range(num_steps):
        eps = m.predict_eps(z, torch.full((n,), grid[i].item()))
        z = a[i + 1] * (z - sig[i] * eps) / a[i] + sig[i + 1] * eps
    return m.decode(z)


def _hand_vdm_ode(m, n, num_steps):
    """RK4 on the probability-flow ODE of a VariationalDiffusion, gamma and gamma' of all stage
    times in one autograd call."""
    h = -1.0 / num_steps
    times = torch.tensor([1 + i * h + c * h for i in range(num_steps) for c in (0, 0.5, 0.5, 1)]).clamp(0, 1)
    with torch.enable_grad():
        tt = times.clone().requires_grad_(True)
        g = m.gamma(tt)
        (dg,) = torch.autograd.grad(g.sum(), tt)
    g = g.detach()
    s2 = torch.sigmoid(g)
    z = torch.randn(n, *m.data_shape, device=m.grid.device)

    def f(u, j):
        eps = m.predict_eps(u, times[j].expand(n))
        return 0.5 * dg[j] * (s2[j].sqrt() * eps - s2[j] * u)

    for i in range(num_steps):
        j = 4 * i
        k1 = f(z, j)
        k2 = f(z + h / 2 * k1, j + 1)
        k3 = f(z + h / 2 * k2, j + 2)
        k4 = f(z + h * k3, j + 3)
        z = z + h * (k1 + 2 * k2 + 2 * k3 + k4) / 6
    return m.decode(z)


def sampling_speed(args):
    """Seconds to draw ``args.sample_batch`` images against steps, ours vs a hand-written loop."""
    from pyro_deepgen.models.vdm import VariationalDiffusion

    torch.manual_seed(args.seed)
    d = make_diffusion(args).eval()
    torch.nn.init.normal_(d.net.conv_out.weight, std=0.01)  # non-zero predictions
    channels = VariationalDiffusion.network_input_size(1)
    vnet = UNet(channels, base_channels=args.base_channels, channel_mults=(1, 2, 2), out_channels=1)
    vdm = VariationalDiffusion(vnet, (1, 8, 8), num_levels=LEVELS).to(args.device).eval()
    n = args.sample_batch
    rows = []

    def timed(name, steps, calls, ours, hand):
        with torch.no_grad():
            ours_s, hand_s = _time(ours, 1), _time(hand, 1)
        rows.append({"sampler": name, "steps": steps, "network_calls": calls, "seconds": ours_s,
                     "seconds_hand_written": hand_s, "ratio": ours_s / hand_s})
        print(f"[sampling, {n} images] {name:>14} steps={steps:4d} calls={calls:4d}: {ours_s:7.3f} s, "
              f"hand-written {hand_s:7.3f} s, ratio {ours_s / hand_s:.2f}")

    T = d.num_steps
    timed("ancestral", T, T, lambda: d.sample(n, progress=False), lambda: _hand_ancestral(d, n))
    for S in args.ddim_steps:
        if S <= T:
            timed("ddim", S, S, lambda: ddim_sample(d, n, S), lambda: _hand_ddim(d, n, S))
    for S in args.ddim_steps:
        timed("vdm ddim", S, S, lambda: ddim_sample(vdm, n, S), lambda: _hand_vdm_ddim(vdm, n, S))
    for S in args.ode_steps:
        timed("vdm ode (rk4)", S, 4 * S, lambda: ode_sample(vdm, n, S), lambda: _hand_vdm_ode(vdm, n, S))
    return {"sampling": rows}


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


class _BudgetSpent(Exception):
    """Raised by the time-budget callback to end :func:`fit` after the planned epochs."""


def _budget_fit(model, guide, x, budget, lr, **kwargs):
    """:func:`fit` for about ``budget`` seconds: plans ``round(budget / first epoch)`` epochs
    after the first one and anneals lr to lr/10 along a half cosine over the planned epochs.
    Returns ``(epochs, seconds)``."""
    plan = {"epochs": None, "done": 0, "seconds": 0.0}

    def factor(epoch):
        n = plan["epochs"]
        if n is None or n <= 1:
            return 1.0
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(epoch, n) / n))

    def callback(epoch, history):
        plan["done"], plan["seconds"] = epoch, history.seconds
        if plan["epochs"] is None:
            plan["epochs"] = max(1, round(budget / max(history.seconds, 1e-9)))
        if epoch >= plan["epochs"]:
            raise _BudgetSpent

    try:
        fit(model, guide, x, lr=lr, epochs=10 ** 6, clip_norm=1.0, callback=callback, progress=False,
            lr_schedule=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, factor), **kwargs)
    except _BudgetSpent:
        pass
    return plan["done"], plan["seconds"]


def _row(name, nats, dims, epochs, seconds, eval_seconds, **extra):
    bits = -nats / (dims * math.log(2))
    n = len(nats)
    row = {"model": name, "bits_per_dim": bits.mean().item(), "bits_per_dim_stderr": (bits.std() / math.sqrt(n)).item(),
           "nats": nats.mean().item(), "num_test": n, "epochs": epochs, "train_seconds": seconds,
           "eval_seconds": eval_seconds, **extra}
    print(f"[quality] {name:>18}: {row['bits_per_dim']:.3f} +- {row['bits_per_dim_stderr']:.3f} bits/dim "
          f"({epochs} epochs, {seconds:.0f} s training, {eval_seconds:.0f} s evaluation)", flush=True)
    return row


def quality(args):
    """Bits/dim of the diffusion objectives, the VDM without base denoiser and a RealNVP flow on
    mnist-5k's held-out images, each trained for ``args.budget`` seconds."""
    from pyro_deepgen.distributions import FlowDensity
    from pyro_deepgen.experiments import diffusion as exp
    from pyro_deepgen.models.diffusion_samplers import ode_variational_bound
    from pyro_deepgen.models.vdm import VariationalDiffusion

    rows = []
    base = dict(data="mnist", data_root=str(args.data_root), seed=args.seed, progress=False)
    if args.quick:
        base.update(num_train=256, max_test=64, base_channels=4)
    dims = 784
    for name in args.models:
        pyro.clear_param_store()
        torch.manual_seed(args.seed)
        objective = "vdm" if name.startswith("vdm") else ("ddpm" if name == "flow" else name)
        config = exp.DiffusionConfig(objective=objective, out=Path("unused"), **base).resolved()
        x_train, x_test, info = exp.load(config)
        if name == "flow":
            hidden = (64,) if args.quick else tuple(args.flow_hidden)
            d = FlowDensity(dims, "realnvp", depth=args.flow_depth, hidden_dims=hidden, levels=256)
            try:
                epochs, seconds = _budget_fit(d.model, d.guide, x_train.reshape(len(x_train), -1), args.budget,
                                              args.flow_lr, loss=Trace_ELBO(), batch_size=64, seed=args.seed)
            except (ValueError, FloatingPointError) as e:  # a diverged flow (NaN) is a result, not a crash
                print(f"[quality] {name:>18}: training diverged: {str(e).splitlines()[0][:200]}", flush=True)
                rows.append({"model": name, "diverged": str(e).splitlines()[0][:500], "lr": args.flow_lr})
                continue
            start = time.time()
            with torch.no_grad():
                nats = d.log_likelihood(x_test.reshape(len(x_test), -1), num_samples=args.flow_eval_samples)
            rows.append(_row(name, nats, dims, epochs, seconds, time.time() - start,
                             settings=f"RealNVP depth {args.flow_depth}, hidden {list(hidden)}, lr {args.flow_lr}"))
            continue
        if name == "vdm-no-base":
            d = exp.build_vdm(config, info)
            shape = info["event_shape"]
            d = VariationalDiffusion(d.net, shape, num_levels=256, base_logits=None)
        else:
            d = exp.build(config, info, x_train)
        loss = DiffusionELBO("elbo" if objective == "vdm" else config.loss)
        epochs, seconds = _budget_fit(d.model, d.guide, x_train, args.budget, config.lr, loss=loss,
                                      batch_size=config.batch_size, seed=args.seed)
        d.eval()
        torch.manual_seed(args.seed)
        start = time.time()
        with torch.no_grad():
            if objective == "vdm":
                bound = d.bound(x_test, num_samples=exp.VDM_BOUND_SAMPLES, batch_size=250)
            else:
                bound = d.bound(x_test, estimator="trajectory")
        extra = {"lr": config.lr, "batch_size": config.batch_size, "base_channels": config.base_channels}
        if objective == "vdm" and args.ode_test > 0:
            ode_start = time.time()
            ode = ode_variational_bound(d, x_test[: args.ode_test], args.ode_test_steps, num_probes=1,
                                        method=exp.ODE_METHOD, batch_size=100, progress=False)
            ode_bits = -ode / (dims * math.log(2))
            same = bound.bits_per_dim[: args.ode_test]
            extra.update(ode_bits_per_dim=ode_bits.mean().item(),
                         ode_bits_per_dim_stderr=(ode_bits.std() / math.sqrt(len(ode))).item(),
                         ode_num_test=len(ode), ode_steps=args.ode_test_steps,
                         bound_bits_per_dim_same_images=same.mean().item(), ode_seconds=time.time() - ode_start)
            print(f"[quality] {name:>18}: ODE bound {extra['ode_bits_per_dim']:.3f} +- "
                  f"{extra['ode_bits_per_dim_stderr']:.3f} bits/dim on the first {len(ode)} test images "
                  f"(diffusion bound {extra['bound_bits_per_dim_same_images']:.3f} on them; "
                  f"{args.ode_test_steps} RK4 steps, {extra['ode_seconds']:.0f} s)", flush=True)
        rows.append(_row(name, bound.nats.detach(), dims, epochs, seconds, time.time() - start, **extra))
    hist = exp.histogram_bits_per_dim(x_train.cpu(), x_test.cpu(), 256)
    print(f"[quality] {'histogram':>18}: {hist:.3f} bits/dim (per-pixel 256-way, add-one smoothing, same "
          f"{len(x_train)} training images)")
    for r in rows:
        if "bits_per_dim" in r:
            r["ratio_to_histogram"] = r["bits_per_dim"] / hist
    return {"quality": rows, "histogram_bits_per_dim": hist, "budget_seconds": args.budget,
            "num_train": len(x_train), "num_test": len(x_test)}


def main(args):
    torch.set_num_threads(max(1, torch.get_num_threads()))
    pyro.set_rng_seed(args.seed)
    if args.quality:
        results = {"device": str(args.device), "quick": args.quick, "torch_threads": torch.get_num_threads()}
        results.update(quality(args))
        _write(args, results)
        return results
    data = load_train_test("digits", seed=args.seed)
    data = type(data)(data.x_train.to(args.device), data.y_train, data.x_test.to(args.device),
                      data.y_test, data.test_split, data.name)
    results = {"device": str(args.device), "quick": args.quick, "test_split": data.test_split,
               "num_test": len(data.x_test)}
    results.update(sampling_speed(args))
    if args.sampling_only:
        _write(args, results)
        return results
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
    _write(args, results)
    return results


def _write(args, results):
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "diffusion.json").write_text(json.dumps(results, indent=2) + "\n")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke run")
    p.add_argument("--data-root", type=Path,
                   default=Path(__file__).resolve().parent.parent.parent / "shared/data/mnist-5k",
                   help="MNIST IDX folder (for --quality; the other sections use the digits)")
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
    p.add_argument("--sampling-only", action="store_true", help="only the sampling-time table (section 4)")
    p.add_argument("--ddim-steps", type=int, nargs="+", default=[10, 25, 50, 100], help="DDIM steps timed")
    p.add_argument("--ode-steps", type=int, nargs="+", default=[5, 10, 25], help="RK4 steps of the ODE timed")
    p.add_argument("--quality", action="store_true",
                   help="only the equal-budget quality comparison on mnist-5k (section 5)")
    p.add_argument("--budget", type=float, default=150.0, help="training seconds per model of --quality")
    p.add_argument("--models", nargs="+", default=list(QUALITY_MODELS), choices=QUALITY_MODELS,
                   help="models of --quality")
    p.add_argument("--flow-depth", type=int, default=8, help="RealNVP coupling layers of --quality")
    p.add_argument("--flow-hidden", type=int, nargs="+", default=[512], help="RealNVP hidden sizes")
    p.add_argument("--flow-lr", type=float, default=1e-3)
    p.add_argument("--flow-eval-samples", type=int, default=4, help="dequantization draws per test image")
    p.add_argument("--ode-test", type=int, default=100, help="held-out images of the VDM's ODE bound (0: none)")
    p.add_argument("--ode-test-steps", type=int, default=20, help="RK4 steps of the ODE bound")
    args = p.parse_args(argv)
    if args.quality and args.quick:
        args.budget, args.ode_test, args.ode_test_steps, args.flow_depth = 3.0, 8, 4, 2
        return args
    if args.quick:
        args.steps, args.epochs, args.vae_epochs, args.iwae_samples = 20, 1, 1, 10
        args.repeats, args.sample_batch, args.base_channels = 5, 16, 8
        args.ddim_steps, args.ode_steps = [5, 20], [3]
    return args


if __name__ == "__main__":
    main(parse_args())

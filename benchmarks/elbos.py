"""Benchmark of the package's ELBO estimators on a VAE and MNIST (../shared/data/mnist-5k).

Sections (``--sections``, all by default):

1. ``timing``: time per training step (loss_and_grads + Adam) of ``TraceIWAE_ELBO`` with
   k = 1, 5, 50 (and DReG at k = 50) against Pyro's ``RenyiELBO(alpha=0,
   vectorize_particles=True)`` and a hand-written PyTorch IWAE step with identical networks
   (weights copied). Contenders alternate; medians of CPU time per step are reported with the
   ratio to hand-written.
2. ``loglik``: test log p(x) (IWAE estimate with K = 5000 importance samples,
   ``pyro_deepgen.evaluate.log_likelihood``) after the same number of epochs with
   ``pyro_deepgen.train.fit``: VAE (k = 1), IWAE k = 5, IWAE k = 50, IWAE-DReG k = 50.
3. ``global``: a VAE with a global latent (a 784-dim decoder bias ``b`` outside the data plate)
   trained with the nested bound (``TraceIWAE_ELBO(nested=True)``) and with Pyro's
   ``RenyiELBO(alpha=0)`` (one log-mean-exp over the whole minibatch, pyro issue #3104) for the
   same budget; reported: both bounds on a test batch, and the plug-in test log p(x | b = E_q[b]).
4. ``hvi``: elbo-b's section ``benchmarks/hvi_section.py`` (HVI with T = 1, 4, 8 vs the ELBO).
5. ``snr``: signal-to-noise ratio of the encoder's (inference network) and the decoder's gradient
   for IWAE and DReG at k = 1, 5, 50, 500 (``pyro_deepgen.infer.gradient_variance``).

    python benchmarks/elbos.py [--quick] [--out results/elbos.json]

Timings on a shared, busy CPU are noisy: compare ratios measured in the same run only.
"""
import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import RenyiELBO

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from pyro_deepgen.data import load_train_test  # noqa: E402
from pyro_deepgen.evaluate import log_likelihood  # noqa: E402
from pyro_deepgen.infer import TraceIWAE_ELBO, gradient_variance  # noqa: E402
from pyro_deepgen.models import VAE  # noqa: E402
from pyro_deepgen.models.vae import data_plate  # noqa: E402
from pyro_deepgen.train import fit  # noqa: E402
from vae_step import hand_log_weights, hand_written_twin  # noqa: E402
from _shared_data import default_mnist_root, require_mnist_root  # noqa: E402 (benchmarks/ is on sys.path when run)

try:
    import hvi_section
except ImportError:  # elbo-b's section not present
    hvi_section = None

SECTIONS = ("timing", "loglik", "global", "hvi", "snr")


def default_data_root() -> str:
    """``../shared/data/mnist-5k`` (see ``_shared_data.default_mnist_root``)."""
    return str(default_mnist_root())


# -- 1. time per step -----------------------------------------------------------------------
def cpu_timeit(fn, repeats: int) -> float:
    """CPU seconds of this process per call (with one thread, less disturbed than wall time by
    other jobs on a shared machine)."""
    start = time.process_time()
    for _ in range(repeats):
        fn()
    return (time.process_time() - start) / repeats


def hand_iwae_step(enc, dec, opt, x, k):
    lw = hand_log_weights(enc, dec, x, k)
    loss = -(torch.logsumexp(lw, 0) - math.log(k)).sum()
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.item()


def section_timing(x: torch.Tensor, cfg: Dict[str, Any]) -> List[Dict[str, Any]]:
    rows = []
    xb = x[: cfg["batch_size"]]
    for k, estimator in [(k, "iwae") for k in cfg["timing_k"]] + [(max(cfg["timing_k"]), "dreg")]:
        pyro.clear_param_store()
        pyro.set_rng_seed(cfg["seed"])
        vae = VAE(x.shape[1], cfg["z_dim"], cfg["hidden"])
        ours = TraceIWAE_ELBO(k, estimator)
        renyi = RenyiELBO(alpha=0, num_particles=k, vectorize_particles=True)
        ours.loss_and_grads(vae.model, vae.guide, xb)  # creates the params, guesses plates once
        vae.zero_grad(set_to_none=True)
        opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
        enc, dec = hand_written_twin(vae)
        hopt = torch.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=1e-3)

        def pyro_step(elbo):
            def step():
                elbo.loss_and_grads(vae.model, vae.guide, xb)
                opt.step()
                opt.zero_grad(set_to_none=True)

            return step

        contenders = {
            "package": pyro_step(ours),
            "pyro_renyi": pyro_step(renyi),
            "hand": lambda: hand_iwae_step(enc, dec, hopt, xb, k),
        }
        if estimator == "dreg":
            del contenders["pyro_renyi"]  # Pyro has no DReG (pyro issue #2605)
        for fn in contenders.values():
            fn()  # warm up
        times = {name: [] for name in contenders}
        for _ in range(cfg["timing_rounds"]):
            for name, fn in contenders.items():
                times[name].append(cpu_timeit(fn, cfg["timing_steps"]))
        med = {name: statistics.median(t) for name, t in times.items()}
        row = {"k": k, "estimator": estimator, "batch": len(xb)}
        for name, t in med.items():
            row[f"ms_{name}"] = 1e3 * t
            row[f"ratio_{name}"] = t / med["hand"]
        rows.append(row)
    net = f"{x.shape[1]}-{cfg['hidden']}-{cfg['z_dim']}"
    print(f"\n[timing] CPU ms per step (batch {len(xb)}, VAE {net}, "
          f"median of {cfg['timing_rounds']} rounds of {cfg['timing_steps']} steps);"
          " ratio = time / hand-written PyTorch IWAE step")
    print(f"{'k':>4} {'estimator':>9} | {'package':>8} {'ratio':>6} | "
          f"{'Renyi':>8} {'ratio':>6} | {'hand':>8}")
    for r in rows:
        renyi_ms = r.get("ms_pyro_renyi", math.nan)
        renyi_ratio = r.get("ratio_pyro_renyi", math.nan)
        print(f"{r['k']:>4} {r['estimator']:>9} | {r['ms_package']:>8.2f} "
              f"{r['ratio_package']:>6.2f} | {renyi_ms:>8.2f} {renyi_ratio:>6.2f} | "
              f"{r['ms_hand']:>8.2f}")
    return rows


# -- 2. test log p(x) after equal budgets ---------------------------------------------------
def _train(model, guide, x, loss, cfg, **kw):
    start = time.perf_counter()
    history = fit(model, guide, x, loss=loss, epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                  lr=cfg["lr"], seed=cfg["seed"], binarize="dynamic", progress=cfg["progress"],
                  **kw)
    return history, time.perf_counter() - start


def section_loglik(x_train, x_test, cfg) -> List[Dict[str, Any]]:
    runs = [("VAE", 1, "iwae")] + [(f"IWAE k={k}", k, "iwae") for k in cfg["loglik_k"]]
    runs.append((f"DReG k={max(cfg['loglik_k'])}", max(cfg["loglik_k"]), "dreg"))
    rows, per_image = [], []
    for name, k, estimator in runs:
        pyro.clear_param_store()
        pyro.set_rng_seed(cfg["seed"])
        vae = VAE(x_train.shape[1], cfg["z_dim"], cfg["hidden"])
        history, seconds = _train(vae.model, vae.guide, x_train, TraceIWAE_ELBO(k, estimator), cfg)
        pyro.set_rng_seed(cfg["seed"])
        ll = log_likelihood(vae.model, vae.guide, x_test, num_samples=cfg["ll_samples"])
        per_image.append(ll)
        diff = ll - per_image[0]  # paired with the VAE on the same test images
        rows.append({"name": name, "k": k, "estimator": estimator, "epochs": cfg["epochs"],
                     "vs_vae": diff.mean().item(),
                     "vs_vae_sem": (diff.std() / math.sqrt(len(diff))).item() if k > 1 else 0.0,
                     "train_seconds": seconds, "final_train_loss": history.loss[-1],
                     "test_log_px": ll.mean().item(),
                     "test_log_px_sem": (ll.std() / math.sqrt(len(ll))).item()})
    print(f"\n[loglik] test log p(x) per image (K={cfg['ll_samples']}, {len(x_test)} test images), "
          f"{cfg['epochs']} epochs on {len(x_train)} images")
    print(f"{'run':>12} | {'train -bound':>12} {'test log p(x)':>14} {'vs VAE (paired)':>16} "
          f"{'s':>6}")
    for r in rows:
        print(f"{r['name']:>12} | {r['final_train_loss']:>12.2f} {r['test_log_px']:>9.2f} "
              f"±{r['test_log_px_sem']:.2f} {r['vs_vae']:>9.2f} ±{r['vs_vae_sem']:.2f} "
              f"{r['train_seconds']:>6.0f}")
    return rows


# -- 3. a global latent: nested bound vs Pyro's lumped Renyi bound --------------------------
class GlobalBiasVAE(VAE):
    r"""VAE whose decoder logits get a global latent bias :math:`b\sim\mathcal N(0, I)` shared by
    every image (outside the data plate); the guide has a mean-field Gaussian :math:`q(b)`."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.b_loc = torch.nn.Parameter(torch.zeros(self.x_dim))
        self.b_raw_scale = torch.nn.Parameter(torch.full((self.x_dim,), -3.0))

    def model(self, x, num_data=None):
        self._check(x)
        zero = x.new_zeros(self.x_dim)
        b = pyro.sample("b", dist.Normal(zero, 1.0 + zero).to_event(1))
        self.plug_in_model(x, num_data, b)

    def plug_in_model(self, x, num_data=None, b=None):
        """p(x, z | b) with ``b`` given (default: the guide's mean of b)."""
        b = self.b_loc if b is None else b
        with data_plate(x, num_data):
            z0 = x.new_zeros(x.shape[0], self.z_dim)
            z = pyro.sample("z", dist.Normal(z0, 1.0 + z0).to_event(1))
            logits = self.decoder(z) + b
            pyro.sample("x", dist.Bernoulli(logits=logits, validate_args=False).to_event(1), obs=x)

    def guide(self, x, num_data=None):
        self._check(x)
        scale = torch.nn.functional.softplus(self.b_raw_scale) + self.min_scale
        pyro.sample("b", dist.Normal(self.b_loc, scale).to_event(1))
        super().guide(x, num_data)


@torch.no_grad()
def _mean_bound(elbo, model, guide, x, draws) -> float:
    return -sum(elbo.loss(model, guide, x) for _ in range(draws)) / draws / len(x)


def section_global(x_train, x_test, cfg) -> List[Dict[str, Any]]:
    k, j = cfg["global_k"], cfg["global_j"]
    trainers = {
        f"nested K={k} J={j}": TraceIWAE_ELBO(k, nested=True, num_local_particles=j),
        f"Pyro Renyi K={k * j}": RenyiELBO(alpha=0, num_particles=k * j, vectorize_particles=True),
    }
    xb = x_test[: cfg["batch_size"]]
    rows = []
    for name, elbo in trainers.items():
        pyro.clear_param_store()
        pyro.set_rng_seed(cfg["seed"])
        vae = GlobalBiasVAE(x_train.shape[1], cfg["z_dim"], cfg["hidden"])
        history, seconds = _train(vae.model, vae.guide, x_train, elbo, cfg, pass_num_data=True)
        pyro.set_rng_seed(cfg["seed"])
        nested = _mean_bound(TraceIWAE_ELBO(k, nested=True, num_local_particles=j),
                             vae.model, vae.guide, xb, cfg["global_draws"])
        lumped = _mean_bound(TraceIWAE_ELBO(k * j), vae.model, vae.guide, xb, cfg["global_draws"])
        with torch.no_grad():
            ll = log_likelihood(vae.plug_in_model, super(GlobalBiasVAE, vae).guide, x_test,
                                num_samples=cfg["ll_samples"])
        rows.append({"name": name, "train_seconds": seconds, "final_train_loss": history.loss[-1],
                     "test_batch_nested_bound": nested, "test_batch_lumped_bound": lumped,
                     "test_log_px_plug_in": ll.mean().item()})
    print(f"\n[global] VAE + global 784-dim decoder bias b; bounds per image on a test batch of "
          f"{len(xb)} (nested K={k} J={j}, lumped K={k * j}), plug-in test log p(x | b=E_q[b])")
    print(f"{'trained with':>20} | {'nested bound':>12} {'lumped bound':>12} {'log p(x|b)':>10} "
          f"{'s':>6}")
    for r in rows:
        print(f"{r['name']:>20} | {r['test_batch_nested_bound']:>12.2f} "
              f"{r['test_batch_lumped_bound']:>12.2f} "
              f"{r['test_log_px_plug_in']:>10.2f} {r['train_seconds']:>6.0f}")
    return rows


# -- 5. gradient SNR ------------------------------------------------------------------------
def section_snr(x_train, cfg) -> List[Dict[str, Any]]:
    pyro.clear_param_store()
    pyro.set_rng_seed(cfg["seed"])
    vae = VAE(x_train.shape[1], cfg["z_dim"], cfg["hidden"])
    cfg_short = dict(cfg, epochs=cfg["snr_pretrain_epochs"])
    _train(vae.model, vae.guide, x_train, TraceIWAE_ELBO(1), cfg_short)
    x = torch.bernoulli(x_train[: cfg["snr_points"]], generator=torch.Generator().manual_seed(0))
    params = {f"encoder.{n}": p for n, p in vae.encoder.named_parameters()}
    params.update({f"decoder.{n}": p for n, p in vae.decoder.named_parameters()})
    rows = []
    for estimator in ("iwae", "dreg"):
        for k in cfg["snr_k"]:
            pyro.set_rng_seed(cfg["seed"])
            stats = gradient_variance(TraceIWAE_ELBO(k, estimator), vae.model, vae.guide, x,
                                      num_draws=cfg["snr_draws"], params=params)
            enc = [s.snr_mean for n, s in stats.items() if n.startswith("encoder")]
            dec = [s.snr_mean for n, s in stats.items() if n.startswith("decoder")]
            rows.append({"estimator": estimator, "k": k, "snr_encoder": statistics.mean(enc),
                         "snr_decoder": statistics.mean(dec)})
    print(f"\n[snr] mean per-element gradient SNR |E g| / std g ({cfg['snr_draws']} draws, "
          f"{len(x)} images, VAE after {cfg['snr_pretrain_epochs']} epoch(s))")
    print(f"{'k':>5} | {'IWAE enc':>9} {'DReG enc':>9} | {'IWAE dec':>9} {'DReG dec':>9}")
    by = {(r["estimator"], r["k"]): r for r in rows}
    for k in cfg["snr_k"]:
        i, d = by["iwae", k], by["dreg", k]
        print(f"{k:>5} | {i['snr_encoder']:>9.3f} {d['snr_encoder']:>9.3f} | "
              f"{i['snr_decoder']:>9.3f} {d['snr_decoder']:>9.3f}")
    return rows


# -- driver ---------------------------------------------------------------------------------
def config(args) -> Dict[str, Any]:
    q = args.quick
    return {
        "quick": q, "seed": args.seed, "progress": args.progress, "z_dim": 50, "hidden": (200, 200),
        "batch_size": 100, "lr": 1e-3,
        "timing_k": (1, 5, 50), "timing_rounds": 3 if q else 7, "timing_steps": 2 if q else 10,
        "epochs": args.epochs or (1 if q else 20),
        "num_train": args.num_train or (400 if q else None),
        "num_test": args.num_test or (100 if q else 500),
        "ll_samples": args.ll_samples or (100 if q else 5000),
        "loglik_k": (5, 50),
        "global_k": 5, "global_j": 10, "global_draws": 2 if q else 10,
        "snr_k": (1, 5, 50, 500), "snr_draws": 10 if q else 100, "snr_points": 10,
        "snr_pretrain_epochs": 1 if q else 5,
    }


def main(args) -> Dict[str, Any]:
    cfg = config(args)
    sections = args.sections
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    require_mnist_root(args.data_root)
    data = load_train_test("mnist", root=args.data_root, binarize="dynamic", seed=args.seed)
    x_train = data.x_train[: cfg["num_train"]]
    x_test = data.x_test[: cfg["num_test"]]
    x_timing = torch.bernoulli(data.x_train[:1000], generator=torch.Generator().manual_seed(0))
    results: Dict[str, Any] = {"config": dict(cfg), "test_split": data.test_split}
    if "timing" in sections:
        results["timing"] = section_timing(x_timing, cfg)
    if "loglik" in sections:
        results["loglik"] = section_loglik(x_train, x_test, cfg)
    if "global" in sections:
        results["global"] = section_global(x_train, x_test, cfg)
    if "hvi" in sections:
        if hvi_section is None:
            print("\n[hvi] benchmarks/hvi_section.py not found; section skipped")
        else:
            results["hvi"] = hvi_section.run(args)
    if "snr" in sections:
        results["snr"] = section_snr(x_train, cfg)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2, default=str))
    return results


def parse_args(argv: Optional[List[str]] = None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny settings, to check it runs")
    parser.add_argument("--data-root", default=default_data_root(),
                        help="folder of the MNIST IDX files")
    parser.add_argument("--sections", type=lambda s: tuple(s.split(",")), default=SECTIONS,
                        help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (20; 1 quick)")
    parser.add_argument("--num-train", type=int, default=None,
                        help="training images (all; 400 quick)")
    parser.add_argument("--num-test", type=int, default=None, help="test images (500; 100 quick)")
    parser.add_argument("--ll-samples", type=int, default=None,
                        help="importance samples of the test log p(x) (5000; 100 quick)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    parser.add_argument("--out", default=None, help="write the results as JSON here (a file)")
    if hvi_section is not None:
        hvi_section.add_arguments(parser)
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())

"""VAE on MNIST: the diagonal Gaussian guide against amortized flow guides (Rezende & Mohamed
2015, table 2; Kingma et al. 2016).

The same VAE model (784-200-200-z, Bernoulli likelihood, dynamic binarization) is trained with
each guide under an equal budget (the same epochs, minibatches, optimizer and seed, through
``pyro_deepgen.train.fit``): the VAE's own diagonal guide (the baseline), and
``AmortizedFlowGuide`` with planar K=10, planar K=40 and IAF. For each it reports the held-out
log p(x) (IWAE estimate with k importance samples, ``pyro_deepgen.evaluate.log_likelihood``),
the ELBO on the same images, and the training time per step relative to the diagonal guide.

The paper (full MNIST, long training) reports -log p(x): diagonal 89.9, planar K=10 87.5,
K=80 85.1, NICE K=80 87.2; IAF about 79 (ResNet VAE). Expected here: the same ordering, with
much smaller gaps on 4,500 training images and a short budget.

    python benchmarks/flow_vae.py --quick            # smoke run (seconds)
    python benchmarks/flow_vae.py --epochs 50        # fuller run, k=5000
"""
import argparse
import time
from pathlib import Path

import pyro
import torch
from pyro.infer import Trace_ELBO

from pyro_deepgen import evaluate
from pyro_deepgen.data import load_train_test
from pyro_deepgen.experiments import write_json
from pyro_deepgen.guides import AmortizedFlowGuide
from pyro_deepgen.models import VAE
from pyro_deepgen.train import fit
from _shared_data import default_mnist_root, require_mnist_root  # noqa: E402 (benchmarks/ is on sys.path when run)


def default_root() -> Path:
    """``../shared/data/mnist-5k`` (see ``_shared_data.default_mnist_root``)."""
    return default_mnist_root()


#: (label, flow, depth); depth 0 is the VAE's own diagonal guide, the baseline.
GUIDES = [("diagonal", None, 0), ("planar K=10", "planar", 10), ("planar K=40", "planar", 40),
          ("iaf K=2", "iaf", 2)]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", type=Path, default=default_root(),
                   help="folder with the MNIST IDX files (default ../shared/data/mnist-5k)")
    p.add_argument("--quick", action="store_true", help="tiny smoke run")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--z-dim", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--k", type=int, default=5000, help="importance samples for log p(x)")
    p.add_argument("--num-test", type=int, default=500, help="held-out images evaluated")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("results/flow_vae"))
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.k, args.num_test = 1, 20, 100
    return args


def run_one(label, flow, depth, x_train, x_test, args):
    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)
    vae = VAE(x_train.shape[1], args.z_dim).to(args.device)
    if depth == 0:
        guide = vae.guide
    else:
        guide = AmortizedFlowGuide(x_train.shape[1], args.z_dim, flow=flow, depth=depth)
        guide = guide.to(args.device)
    history = fit(vae.model, guide, x_train, loss=Trace_ELBO(), lr=args.lr, epochs=args.epochs,
                  batch_size=args.batch_size, seed=args.seed, binarize="dynamic",
                  module=None if depth == 0 else guide, progress=not args.quick)
    start = time.perf_counter()
    with torch.no_grad():
        log_px = evaluate.log_likelihood(vae.model, guide, x_test, num_samples=args.k)
        bound = evaluate.elbo(vae.model, guide, x_test, num_samples=1)
    return {
        "guide": label, "flow": flow or "diagonal", "depth": depth,
        "test_log_px": float(log_px.mean()), "test_elbo": float(bound.mean()),
        "train_loss_last_epoch": history.loss[-1], "steps": history.steps,
        "seconds_per_step": history.seconds / max(history.steps, 1),
        "eval_seconds": time.perf_counter() - start,
    }


def main(args=None):
    args = parse_args(args)
    require_mnist_root(args.data_root)
    data = load_train_test("mnist", root=str(args.data_root), binarize="dynamic", seed=args.seed)
    x_train, x_test = data.x_train.to(args.device), data.x_test[: args.num_test].to(args.device)
    if args.quick:
        x_train = x_train[:500]
    print(f"MNIST: {len(x_train)} training images, {len(x_test)} test images, z_dim={args.z_dim},"
          f" {args.epochs} epochs, log p(x) with k={args.k}")
    # Warm-up (one-time imports and allocations), so that the first timed guide is not penalized.
    warm = argparse.Namespace(**{**vars(args), "epochs": 1, "k": 2, "quick": True})
    run_one(*GUIDES[0], x_train[:200], x_test[:2], warm)
    rows = [run_one(*g, x_train, x_test, args) for g in GUIDES]
    base = rows[0]
    for r in rows:
        r["time_per_step_ratio"] = r["seconds_per_step"] / base["seconds_per_step"]
        r["log_px_gain_nats"] = r["test_log_px"] - base["test_log_px"]
    print(f"{'guide':<14}{'log p(x)':>11}{'ELBO':>11}{'gain':>8}{'s/step':>9}{'ratio':>8}")
    for r in rows:
        print(f"{r['guide']:<14}{r['test_log_px']:>11.2f}{r['test_elbo']:>11.2f}"
              f"{r['log_px_gain_nats']:>8.2f}{r['seconds_per_step']:>9.4f}"
              f"{r['time_per_step_ratio']:>8.2f}")
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "flow_vae.json", {"settings": vars(args), "results": rows})
    print(f"wrote {args.out / 'flow_vae.json'}")
    return rows


if __name__ == "__main__":
    main()

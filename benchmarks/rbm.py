"""Binary RBMs on binarized MNIST-5k: training speed against scikit-learn, AIS test log-likelihood
of CD-1, CD-3, CD-k and PCD, samples, and (from ``benchmarks/rbm_deep.py``) DBN, DBM and wake-sleep.

1. **Speed.** Time per epoch of ``ContrastiveDivergence`` (CD-1, CD-3, CD-k, PCD) trained through
   ``pyro_deepgen.train.fit`` against ``sklearn.neural_network.BernoulliRBM`` (PCD-1) with the
   same settings (500 hidden units, batch 100, learning rate 0.05, plain SGD), in this process.
   Whole fits of ``--speed-epochs`` epochs alternate between the contenders for ``--rounds``
   rounds (with a short pause before each, so the other library's idle threads stop spinning)
   and the medians of seconds per epoch are compared.
   scikit-learn computes in the dtype of its input: float64 for images scaled from uint8 (its
   usual use) and float32 when given float32; both ratios are printed. The package runs in
   float32, with its compiled CPU kernels (``pyro_deepgen.energy._kernels.native``) where they build. Two
   hand-written PyTorch CD-1 loops are timed too: with dense products and ``torch.rand`` draws
   (what one writes by hand), and with the package's kernels (the framework overhead of ``fit``
   + ``ContrastiveDivergence`` is the ratio to this one). scikit-learn does PCD-1, so the
   like-for-like ratios are CD-1's and PCD's; CD-k does k times the Gibbs sweeps.
2. **Quality.** Each model (and scikit-learn's, whose weights are copied into an ``RBM``) is
   trained for ``--epochs`` epochs; AIS (``ais_log_partition``, the paper's 14,500 temperatures
   and 100 runs unless ``--ais-betas``/``--ais-runs``) gives log Z and the test log-likelihood
   mean(-F(v)) - log Z. Expected (Salakhutdinov & Murray 2008): CD-25 > CD-3 > CD-1.
3. ``samples.png``: fantasy particles of every model (rows).
4. DBN / DBM bounds and wake-sleep vs reweighted wake-sleep, if ``benchmarks/rbm_deep.py`` exists
   (``--skip-deep`` to leave them out).

    python benchmarks/rbm.py [--quick] [--out results/rbm] [--data-root DIR]
"""
import argparse
import importlib.util
import json
import statistics
import time
from pathlib import Path

import numpy as np
import pyro
import torch

from pyro_deepgen.data import load_train_test
from pyro_deepgen.energy import RBM, ContrastiveDivergence, ais_log_partition, mean_log_likelihood
from pyro_deepgen.energy._kernels import native
from pyro_deepgen.energy._kernels.sparse_matmul import sparse_rows_matmul, sparse_rows_matmul_t
from pyro_deepgen.energy.rbm import bernoulli_sample_16bit
from pyro_deepgen.infer import default_ais_schedule
from pyro_deepgen.plotting import save_image_grid
from pyro_deepgen.train import fit
from _shared_data import default_mnist_root, require_mnist_root  # noqa: E402 (benchmarks/ is on sys.path when run)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA_ROOT = default_mnist_root()


def train_ours(x, hidden, loss, epochs, lr, batch_size, seed, init=None):
    """An RBM trained by ``fit`` with plain SGD (as scikit-learn); returns (rbm, epoch seconds).

    The visible biases start at the log-odds of the data marginals (Hinton's guide)."""
    pyro.set_rng_seed(seed)
    rbm = RBM(x.shape[1], hidden)
    if init is not None:
        rbm.load_state_dict(init.state_dict())
    else:
        rbm.init_visible_bias(x)
    times = []
    stamp = [time.perf_counter()]

    def callback(epoch, history):
        now = time.perf_counter()
        times.append(now - stamp[0])
        stamp[0] = now

    fit(rbm, None, x, loss=loss, module=rbm, epochs=epochs, batch_size=batch_size, seed=seed,
        optimizer=lambda params: torch.optim.SGD(params, lr=lr / batch_size), progress=False,
        callback=callback)
    return rbm, times


def sklearn_rbm(hidden, lr, batch_size, epochs, seed):
    from sklearn.neural_network import BernoulliRBM

    return BernoulliRBM(n_components=hidden, learning_rate=lr, batch_size=batch_size,
                        n_iter=epochs, random_state=seed)


def from_sklearn(model) -> RBM:
    """scikit-learn's weights in an ``RBM`` (same energy: -b'v - c'h - h'Wv)."""
    rbm = RBM(model.components_.shape[1], model.components_.shape[0])
    with torch.no_grad():
        rbm.weight.copy_(torch.as_tensor(model.components_, dtype=torch.float32))
        rbm.visible_bias.copy_(torch.as_tensor(model.intercept_visible_, dtype=torch.float32))
        rbm.hidden_bias.copy_(torch.as_tensor(model.intercept_hidden_, dtype=torch.float32))
    return rbm


def handwritten_cd1(x, hidden, lr, batch_size, epochs, seed, kernels=False):
    """CD-1 in plain PyTorch, no training loop and no checks: the baseline for framework overhead.

    ``kernels=False``: dense float32 products and ``torch.rand`` draws (what one writes by hand).
    ``kernels=True``: the same loop with the package's CPU kernels (sparse products of the
    binary states, 16-bit Bernoulli draws), so that ``ContrastiveDivergence(k=1)`` + ``fit``
    over it is the cost of the framework alone. Both do the update of
    ``ContrastiveDivergence(k=1)`` with plain SGD."""
    g = torch.Generator().manual_seed(seed)
    Wt = torch.randn(x.shape[1], hidden, generator=g) * 0.01  # W^T, (V, H)
    b, c = torch.zeros(x.shape[1]), torch.zeros(hidden)
    if kernels:
        def hidden_input(v):
            return sparse_rows_matmul(v, Wt, bias=c)
        draw, weight_product = bernoulli_sample_16bit, sparse_rows_matmul_t
    else:
        def hidden_input(v):
            return torch.addmm(c, v, Wt)

        def draw(p):
            return (torch.rand_like(p) < p).to(p.dtype)

        def weight_product(states, probs):
            return states.t() @ probs
    for _ in range(epochs):
        for v in x[torch.randperm(len(x), generator=g)].split(batch_size):
            p_pos = torch.sigmoid(hidden_input(v))
            v_neg = draw(torch.sigmoid(torch.addmm(b, draw(p_pos), Wt.t())))
            p_neg = torch.sigmoid(hidden_input(v_neg))
            Wt.add_(weight_product(torch.cat([v, v_neg]), torch.cat([p_pos, -p_neg])),
                    alpha=lr / len(v))
            b.add_(v.sum(0) - v_neg.sum(0), alpha=lr / len(v))
            c.add_(p_pos.sum(0) - p_neg.sum(0), alpha=lr / len(v))
    return Wt.t()


def _settle() -> None:
    """Let the other library's idle BLAS/OpenMP worker threads stop spinning before a timing
    (two thread pools busy-waiting on 2 cores slow whichever runs next)."""
    time.sleep(0.5)


def speed(x, methods, args):
    """Median seconds per epoch over alternating rounds; scikit-learn in float64 and float32.

    Each contender is timed over a whole ``fit`` of ``--speed-epochs`` epochs (set-up included,
    divided by the epochs), after a pause that lets the other library's threads go idle. The
    order of the contenders rotates from round to round."""
    x64, x32 = x.double().numpy(), x.numpy()
    epochs = args.speed_epochs
    baselines = ["sklearn_float64", "sklearn_float32", "handwritten_CD-1",
                 "handwritten_CD-1_kernels"]
    times = {name: [] for name in [*baselines, *methods]}
    for name, make_loss in methods.items():  # warm-up: first-call costs are not per epoch
        train_ours(x[:2 * args.batch_size], args.hidden, make_loss(), 1, args.lr,
                   args.batch_size, args.seed)
    sklearn_rbm(args.hidden, args.lr, args.batch_size, 1, args.seed).fit(x64[:2 * args.batch_size])

    def contender(name, r):
        """A callable that trains ``name`` once, with round ``r``'s seed (built untimed)."""
        seed = args.seed + r
        if name.startswith("sklearn"):
            model = sklearn_rbm(args.hidden, args.lr, args.batch_size, epochs, seed)
            xs = x64 if name == "sklearn_float64" else x32
            return lambda: model.fit(xs)
        if name.startswith("handwritten"):
            return lambda: handwritten_cd1(x, args.hidden, args.lr, args.batch_size, epochs, seed,
                                           kernels=name.endswith("kernels"))
        return lambda: train_ours(x, args.hidden, methods[name](), epochs, args.lr,
                                  args.batch_size, seed)

    names = list(times)
    for r in range(args.rounds):
        # the order rotates every round, so that no contender always follows the same one
        for name in names[r % len(names):] + names[:r % len(names)]:
            run = contender(name, r)
            _settle()
            t = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - t) / epochs)
    med = {name: statistics.median(t) for name, t in times.items()}
    res = {"seconds_per_epoch": med, "rounds": args.rounds, "epochs_per_timing": epochs,
           "seconds_per_epoch_every_round": times}
    for name in [*baselines[2:], *methods]:
        res[f"{name}_speedup_vs_sklearn_float64"] = med["sklearn_float64"] / med[name]
        res[f"{name}_speedup_vs_sklearn_float32"] = med["sklearn_float32"] / med[name]
    res["CD-1_over_handwritten"] = med["CD-1"] / med["handwritten_CD-1"]
    res["CD-1_over_handwritten_kernels"] = med["CD-1"] / med["handwritten_CD-1_kernels"]
    res["cpu_kernels"] = native.library() is not None
    res["cpu_kernels_unavailable_reason"] = native.unavailable_reason()
    print(f"[speed] seconds per epoch ({len(x)} images, {args.hidden} hidden, batch "
          f"{args.batch_size}, torch threads {torch.get_num_threads()}; fits of {epochs} epochs, "
          f"medians of {args.rounds} alternating rounds):")
    print(f"  scikit-learn BernoulliRBM (PCD-1): float64 {med['sklearn_float64']:.3f} s, "
          f"float32 {med['sklearn_float32']:.3f} s")
    print(f"  hand-written PyTorch CD-1 (dense): {med['handwritten_CD-1']:.3f} s  -> "
          f"{res['handwritten_CD-1_speedup_vs_sklearn_float64']:.2f}x faster than scikit-learn "
          f"float64")
    print(f"  hand-written CD-1 with the package's CPU kernels: "
          f"{med['handwritten_CD-1_kernels']:.3f} s  -> "
          f"{res['handwritten_CD-1_kernels_speedup_vs_sklearn_float64']:.2f}x")
    print(f"  pyro_deepgen CD-1 / hand-written CD-1: dense {res['CD-1_over_handwritten']:.2f}, "
          f"with the kernels {res['CD-1_over_handwritten_kernels']:.2f} (framework overhead); "
          f"CPU kernels {'on' if res['cpu_kernels'] else 'off: ' + str(res['cpu_kernels_unavailable_reason'])}")
    for name in methods:
        print(f"  pyro_deepgen {name:6s}: {med[name]:.3f} s  -> "
              f"{res[f'{name}_speedup_vs_sklearn_float64']:.2f}x faster than scikit-learn "
              f"float64, {res[f'{name}_speedup_vs_sklearn_float32']:.2f}x than float32")
    return res


def quality(x_train, x_test, methods, args):
    betas = default_ais_schedule(args.ais_betas)
    res, samples = {}, []
    trained = {}
    for name, make_loss in methods.items():
        rbm, epoch_times = train_ours(x_train, args.hidden, make_loss(), args.epochs, args.lr,
                                      args.batch_size, args.seed)
        trained[name] = (rbm, sum(epoch_times))
    model = sklearn_rbm(args.hidden, args.lr, args.batch_size, args.epochs, args.seed)
    t = time.perf_counter()
    model.fit(x_train.double().numpy())
    trained["sklearn_PCD"] = (from_sklearn(model), time.perf_counter() - t)
    for name, (rbm, train_seconds) in trained.items():
        t = time.perf_counter()
        pyro.set_rng_seed(args.seed)
        log_z, se = ais_log_partition(rbm, betas, args.ais_runs, base_rate=x_train)
        ais_seconds = time.perf_counter() - t
        res[name] = {
            "test_log_likelihood": mean_log_likelihood(rbm, x_test, log_z).item(),
            "train_log_likelihood": mean_log_likelihood(rbm, x_train, log_z).item(),
            "log_z": log_z.item(), "log_z_stderr": se.item(),
            "train_seconds": train_seconds, "ais_seconds": ais_seconds,
        }
        samples.append(rbm.sample(16, num_steps=args.gibbs_steps))
        print(f"[quality] {name:12s}: test log-likelihood {res[name]['test_log_likelihood']:8.2f}"
              f" nats (log Z {log_z.item():.2f} +- {se.item():.2f}; AIS {len(betas) - 1} betas x "
              f"{args.ais_runs} runs, {ais_seconds:.0f} s; trained {train_seconds:.0f} s)")
    cd1, cd3, cdk = res.get("CD-1"), res.get("CD-3"), res.get(f"CD-{args.cd_k}")
    if cd1 and cd3 and cdk:
        ordered = (cdk["test_log_likelihood"] > cd3["test_log_likelihood"]
                   > cd1["test_log_likelihood"])
        res["ordering_cdk_gt_cd3_gt_cd1"] = bool(ordered)
        print(f"[quality] CD-{args.cd_k} > CD-3 > CD-1: {ordered} (expected True)")
    if cd1 and cdk:
        res[f"CD-{args.cd_k}_minus_CD-1"] = cdk["test_log_likelihood"] - cd1["test_log_likelihood"]
        print(f"[quality] CD-{args.cd_k} - CD-1 = {res[f'CD-{args.cd_k}_minus_CD-1']:+.2f} nats "
              "(expected > 0)")
    res["ais_betas"], res["ais_runs"], res["epochs"] = len(betas) - 1, args.ais_runs, args.epochs
    if args.out:
        path = Path(args.out) / "samples.png"
        save_image_grid(torch.cat(samples), path, ncol=16,
                        title="rows: " + ", ".join(trained) + f" ({args.gibbs_steps} sweeps)")
        res["samples"] = str(path)
    return res


def deep(x_train, x_test, args):
    path = HERE / "rbm_deep.py"
    if args.skip_deep or not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("rbm_deep", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {"dbn_dbm": module.run_dbn_dbm(x_train, x_test, args),
            "wake_sleep": module.run_wake_sleep(x_train, x_test, args)}


def main(args):
    if args.quick:
        args.hidden, args.epochs, args.rounds, args.speed_epochs = min(args.hidden, 100), 1, 1, 1
        args.ais_betas, args.ais_runs, args.gibbs_steps = 200, 10, 20
        args.cd_k = min(args.cd_k, 5)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    require_mnist_root(args.data_root)
    data = load_train_test("mnist", args.data_root, binarize="threshold", seed=args.seed)
    x_train, x_test = data.x_train, data.x_test
    if args.quick:
        x_train, x_test = x_train[:1000], x_test[:200]
    print(f"MNIST-5k binarized at 0.5: {len(x_train)} train, {len(x_test)} test "
          f"({data.test_split}); torch threads {torch.get_num_threads()}")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
    methods = {
        "CD-1": lambda: ContrastiveDivergence(k=1),
        "CD-3": lambda: ContrastiveDivergence(k=3),
        f"CD-{args.cd_k}": lambda: ContrastiveDivergence(k=args.cd_k),
        "PCD": lambda: ContrastiveDivergence(k=1, persistent=True),
    }
    results = {"data": "mnist-5k", "test_split": data.test_split, "quick": bool(args.quick),
               "hidden": args.hidden, "batch_size": args.batch_size, "lr": args.lr,
               "num_train": len(x_train), "num_test": len(x_test)}
    if "speed" in args.sections:
        results["speed"] = speed(x_train, methods, args)
    if "quality" in args.sections:
        results["quality"] = quality(x_train, x_test, methods, args)
    if "deep" in args.sections:
        results["deep"] = deep(x_train, x_test, args)
    if args.out:
        (Path(args.out) / "rbm.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", default=str(DATA_ROOT))
    parser.add_argument("--quick", action="store_true",
                        help="tiny settings, to check the script runs")
    parser.add_argument("--out", default=None, help="folder for rbm.json and the sample figures")
    parser.add_argument("--hidden", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=100,
                        help="training epochs of every model (default 100: CD-25 > CD-3 > CD-1 then; "
                             "at 40 epochs CD-3 and CD-25 are within a few nats, in either order)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.05,
                        help="learning rate per example (scikit-learn's learning_rate)")
    parser.add_argument("--cd-k", type=int, default=25, help="the k of CD-k (default 25)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds")
    parser.add_argument("--speed-epochs", type=int, default=3,
                        help="epochs per timed fit (set-up cost divided by them)")
    parser.add_argument("--sections", nargs="+", default=["speed", "quality", "deep"],
                        choices=["speed", "quality", "deep"], help="what to run (default: all)")
    parser.add_argument("--ais-betas", type=int, default=None,
                        help="AIS temperatures (default: the paper's 14,500)")
    parser.add_argument("--ais-runs", type=int, default=100)
    parser.add_argument("--gibbs-steps", type=int, default=1000, help="sweeps for the samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--skip-deep", action="store_true",
                        help="leave out the DBN/DBM and wake-sleep sections")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    main(parser.parse_args())

"""Autoregressive models on binarized MNIST-5k (pixels at 0.5, a seeded 10% of the training images
held out for early stopping): exact test log-likelihoods of NADE, MADE with one mask, MADE with
8 orderings in an ensemble and a small PixelCNN, trained with the same budget, plus two timings.

1. **Quality.** Each contender is one ``pyro-deepgen autoregressive`` run
   (:func:`pyro_deepgen.experiments.autoregressive.run`) with the same ``--epochs``, batch size,
   learning rate and patience. The test set is the t10k files where ``--data-root`` has them,
   else a seeded 10% hold-out. Targets (issue 17): NADE and the one-mask MADE at -100 nats or
   better, the ensemble better than its single mask, PixelCNN at -95 or better. For the VAE
   (IWAE, k = 1000) and the RBM (AIS) on the same data see ``benchmarks/vae_quality.py`` and
   ``benchmarks/rbm.py``; as quoted in issue 17 (1000 t10k images): independent pixels -201.4,
   the package's VAE -138.3, a hand-written one-mask MADE -100.05.
2. **Speed.** ``NADE.log_prob`` (the vectorized O(DH) recurrence) against a hand-written loop
   over the dimensions with the same parameters (the ratio should be <= 1.1), and samples per
   second of each trained model.

    python benchmarks/autoregressive.py [--quick] [--out results/autoregressive] [--data-root DIR]
"""
import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from pyro_deepgen.distributions import NADE
from pyro_deepgen.experiments.autoregressive import AutoregressiveConfig, build_model, run
from pyro_deepgen.experiments.autoregressive import DEFAULT_EPOCHS as EPOCHS
from pyro_deepgen.experiments.autoregressive import DEFAULT_PATIENCE as PATIENCE
from _shared_data import default_mnist_root, require_mnist_root  # noqa: E402 (benchmarks/ is on sys.path when run)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA_ROOT = default_mnist_root()
CONTENDERS = {
    "nade": dict(model="nade", hidden=(500,)),
    "made-1": dict(model="made", hidden=(500,), orderings=1),
    "made-8": dict(model="made", hidden=(500,), orderings=8),
    "pixelcnn": dict(model="pixelcnn", hidden=(32, 32, 32, 32)),
}


def nade_loop_log_prob(nade: NADE, x: torch.Tensor) -> torch.Tensor:
    """The hand-written NADE: one conditional at a time, the same parameters."""
    a = nade.c.expand(x.shape[0], -1)
    total = torch.zeros(x.shape[0])
    for d in range(nade.dim):
        logit = torch.sigmoid(a) @ nade.V[d] + nade.b[d]
        total -= torch.nn.functional.binary_cross_entropy_with_logits(logit, x[:, d], reduction="none")
        a = a + x[:, d:d + 1] * nade.W[d]
    return total


def median_seconds(f, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@torch.no_grad()
def speed(x: torch.Tensor, repeats: int) -> dict:
    nade = NADE(x.shape[1], 500)
    assert torch.allclose(nade().log_prob(x), nade_loop_log_prob(nade, x), atol=1e-3)
    ours = median_seconds(lambda: nade().log_prob(x), repeats)
    loop = median_seconds(lambda: nade_loop_log_prob(nade, x), repeats)
    return {"nade_log_prob_seconds": ours, "loop_log_prob_seconds": loop, "ratio": ours / loop}


def main(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.speed_only:
        torch.manual_seed(args.seed)
        x = (torch.rand(100, 784) < 0.3).float()
        results = {"speed": speed(x, 3 if args.quick else 20), "threads": torch.get_num_threads()}
        print(json.dumps(results, indent=2))
        (out / "speed.json").write_text(json.dumps(results, indent=2) + "\n")
        return results
    if args.data == "mnist":
        require_mnist_root(args.data_root)
    epochs = 2 if args.quick else args.epochs
    names = args.models.split(",")
    unknown = sorted(set(names) - set(CONTENDERS))
    if unknown:
        raise SystemExit(f"--models: unknown {unknown}; choose from {sorted(CONTENDERS)}")
    results = {"data": args.data, "quick": bool(args.quick), "epochs": epochs, "patience": args.patience,
               "threads": torch.get_num_threads(), "models": {}}
    for name in names:
        options = CONTENDERS[name]
        config = AutoregressiveConfig(data=args.data, data_root=str(args.data_root) if args.data == "mnist" else None,
                                      epochs=epochs, patience=args.patience, batch_size=100, lr=args.lr,
                                      seed=args.seed, out=out / name, overwrite=True, progress=False, **options)
        report = run(config)
        model = build_model(config, 784 if args.data == "mnist" else 64)
        t0 = time.perf_counter()
        with torch.no_grad():
            model.eval()
            model().sample((16,))
        report["samples_per_second"] = 16 / (time.perf_counter() - t0)
        keys = ("test_log_likelihood", "test_bits_per_dim", "val_log_likelihood", "train_log_likelihood",
                "epochs", "best_epoch", "stopped_early", "train_seconds", "test_log_likelihood_per_mask",
                "num_parameters", "num_train", "num_val", "num_test", "test_split", "samples_per_second")
        results["models"][name] = {k: report[k] for k in keys}
        (out / f"results-{args.models.replace(',', '+')}.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs per model: a smoke run")
    parser.add_argument("--data", choices=("mnist", "digits"), default="mnist")
    parser.add_argument("--data-root", type=Path, default=DATA_ROOT)
    parser.add_argument("--models", default=",".join(CONTENDERS), help="comma-separated subset of "
                        + ", ".join(CONTENDERS) + " (default all); results go to results-<models>.json")
    parser.add_argument("--speed-only", action="store_true",
                        help="only time NADE.log_prob against the hand-written loop (speed.json)")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--patience", type=int, default=PATIENCE)
    parser.add_argument("--lr", type=float, default=None, help="default: each model's command default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results/autoregressive")
    main(parser.parse_args())

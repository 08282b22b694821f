"""Semi-supervised MNIST: M2, M1+M2 and supervised baselines on the same class-balanced labels.

Data: ../shared/data/mnist-5k (5000 training images). The test set is the t10k files when the
folder has them (the first --test-size images), else a seeded 10% hold-out of the 5000 (500
images, the rule of pyro_deepgen.data.load_train_test). For each label count and each of
--draws draws: logistic regression and an RBF SVM on raw pixels (supervised only), and M2 and
M1+M2 through pyro_deepgen.experiments.ssvae.run. Prints the error table (mean ± std, %) and
the time per epoch.

    .venv/bin/python benchmarks/ssvae.py                         # 100/600/1000/3000 labels, 5 draws
    .venv/bin/python benchmarks/ssvae.py --labels 100 --draws 1 --epochs 5   # a quick look

Every network setting defaults to the command's MNIST values per model
(pyro_deepgen.experiments.ssvae.DEFAULTS).
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from _shared_data import default_mnist_root, require_mnist_root
from pyro_deepgen.data import load_train_test
from pyro_deepgen.experiments.ssvae import SSVAEConfig, balanced_labels, run


def baselines(data, labels, draws, seed):
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    out = {"logistic regression": [], "RBF SVM": []}
    x, y = data.x_train.numpy(), data.y_train
    for d in range(draws):
        idx = balanced_labels(y, labels, seed + d).numpy()
        for name, clf in (("logistic regression", LogisticRegression(max_iter=2000)),
                          ("RBF SVM", SVC(kernel="rbf", gamma="scale"))):
            clf.fit(x[idx], y.numpy()[idx])
            out[name].append(100.0 * float((clf.predict(data.x_test.numpy()) != data.y_test.numpy()).mean()))
    return out


def main(args):
    require_mnist_root(args.data_root)
    data = load_train_test("mnist", str(args.data_root), seed=args.seed)
    print(f"train {len(data.x_train)} images, test {len(data.x_test)} ({data.test_split})")
    rows = []
    for labels in args.labels:
        row = baselines(data, labels, args.draws, args.seed)
        for model in args.models:
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.time()
                report = run(SSVAEConfig(model=model, labels=labels, label_draws=args.draws, data="mnist",
                                         data_root=str(args.data_root), z_dim=args.z_dim,
                                         hidden=tuple(args.hidden) if args.hidden else None,
                                         epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                                         alpha=None if args.alpha_per_label is None else args.alpha_per_label * labels,
                                         out=Path(tmp) / "run", progress=False))
                row[model] = report["per_draw"]
                used = report["settings"]
                print(f"  {model} at {labels} labels ({used['epochs']} epochs, lr {used['lr']}): "
                      f"{time.time() - t0:.0f} s, "
                      + (f"{report['m2_seconds_per_epoch']:.2f} s per M2 epoch" if report["m2_seconds_per_epoch"]
                         else "")
                      + (f", {report['m1_seconds_per_epoch']:.2f} s per M1 epoch" if report["m1_seconds_per_epoch"]
                         else "") + ", per draw " + ", ".join(f"{e:.1f}" for e in report["per_draw"]))
        rows.append((labels, row))
    names = list(rows[0][1])
    print("\n| labels | " + " | ".join(names) + " |\n|---" * 1 + "|---" * len(names) + "|")
    for labels, row in rows:
        cells = [f"{np.mean(v):.1f} ± {np.std(v, ddof=1) if len(v) > 1 else 0.0:.1f}" for v in row.values()]
        print(f"| {labels} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=default_mnist_root())
    parser.add_argument("--labels", type=int, nargs="+", default=[100, 600, 1000, 3000])
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=["m2", "m1m2"], choices=["m1", "m2", "m1m2"])
    parser.add_argument("--epochs", type=int, default=None,
                        help="M2's epochs; default: the command's per-model MNIST value (DEFAULTS)")
    parser.add_argument("--z-dim", type=int, default=None, help="M2's z; default: the command's")
    parser.add_argument("--hidden", type=int, nargs="+", default=None, help="M2's hidden sizes; default: the command's")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=None,
                        help="M2's step size; default: the command's per-model MNIST value")
    parser.add_argument("--alpha-per-label", type=float, default=None,
                        help="alpha / labels; default: the command's per-model MNIST value")
    parser.add_argument("--seed", type=int, default=0)
    main(parser.parse_args())

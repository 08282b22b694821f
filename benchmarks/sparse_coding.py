"""LISTA against ISTA and FISTA on the 8x8 digits: code error and objective against depth.

A dictionary of ``--atoms`` (128) atoms is learned (``learn_dictionary`` of
``pyro_deepgen.experiments.autoencoder_sparse``: block coordinate descent, 50 alternations) on a
seeded training split of the 1797 digits (1400 images); the other 397 are the test split, used
only for measuring. With that dictionary fixed and lambda = ``--lam`` (0.2; the objective is the mean over images of
0.5 ||x - z D||^2 + lambda ||z||_1), the optimal codes Z* come from FISTA (at most 3000
iterations, relative change 1e-7). Then:

1. ISTA and FISTA from Z_0 = 0 on the test split: the code error ||Z_k - Z*||_F / ||Z*||_F and
   the objective after each iteration k;
2. LISTA with T = 1, 2, 5, 10 layers (initialized to T ISTA iterations, trained with Adam through
   ``fit`` to regress Z* on the training split): its test code error and objective, and the ISTA
   (and FISTA) iterations that reach the same code error.

Target (issue 16): LISTA with T = 5 reaches the code error that ISTA needs >= 100 iterations
for, and its error is below that of T = 1. The figure (``--figure``, default
``docs/_static/sparse_coding.png``) shows both curves with the LISTA points.

    python benchmarks/sparse_coding.py [--quick] [--epochs 200] [--out results/sparse_coding]
"""
import argparse
import json
import time
from pathlib import Path

import torch

from pyro_deepgen.data import load_digits
from pyro_deepgen.experiments.autoencoder_sparse import learn_dictionary, optimal_codes, train_lista
from pyro_deepgen.infer import fista, ista
from pyro_deepgen.infer.sparse_coding import ista_iterations_to_reach, relative_code_error, sparse_coding_objective

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def curve(solver, x, dictionary, lam, z_star, iterations):
    """Code error and objective after each of ``iterations`` iterations of ``solver`` from zero."""
    errors, objectives = [], []

    def record(k, z):
        errors.append(relative_code_error(z, z_star))
        objectives.append(float(sparse_coding_objective(x, z, dictionary, lam)))

    solver(x, dictionary, lam, max_iter=iterations, tol=0.0, callback=record)
    return errors, objectives


def first_reaching(errors, target):
    """The first iteration (1-based) whose error is <= ``target``, else ``None``."""
    return next((k + 1 for k, e in enumerate(errors) if e <= target), None)


def figure(path, results, ista_curve, fista_curve, optimum):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = range(1, len(ista_curve[0]) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, which, label in ((axes[0], 0, r"code error $\|Z - Z^*\|_F / \|Z^*\|_F$"),
                             (axes[1], 1, r"objective $-$ optimum")):
        shift = 0.0 if which == 0 else optimum
        ax.plot(ks, [v - shift for v in ista_curve[which]], label="ISTA")
        ax.plot(ks, [v - shift for v in fista_curve[which]], label="FISTA")
        layers = [r["layers"] for r in results]
        key = "code_error" if which == 0 else "objective"
        ax.plot(layers, [r[key] - shift for r in results], "o-", color="C3", label="LISTA (T layers)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("iterations / layers")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    fig.suptitle("Sparse codes of the 8x8 digits (test split), 128 atoms, lambda = 0.2")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    x, _ = load_digits()
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(args.seed))
    train_x, test_x = x[perm[:1400]], x[perm[1400:]]
    epochs = 5 if args.quick else args.epochs
    t0 = time.perf_counter()
    model = learn_dictionary(train_x, args.atoms, args.lam, 5 if args.quick else 50, args.seed)
    dictionary = model.dictionary
    z_train, z_test = optimal_codes(train_x, dictionary, args.lam), optimal_codes(test_x, dictionary, args.lam)
    optimum = float(sparse_coding_objective(test_x, z_test, dictionary, args.lam))
    print(f"dictionary: {args.atoms} atoms, lambda={args.lam}, train objective {model.history[-1]:.4f} "
          f"({len(model.history)} alternations, {time.perf_counter() - t0:.1f} s); test optimum {optimum:.4f}, "
          f"sparsity of Z* {float((z_test == 0).float().mean()):.3f}")
    iterations = 50 if args.quick else args.iterations
    ista_curve = curve(ista, test_x, dictionary, args.lam, z_test, iterations)
    fista_curve = curve(fista, test_x, dictionary, args.lam, z_test, iterations)
    results = []
    for layers in args.layers:
        t0 = time.perf_counter()
        lista, history = train_lista(dictionary, args.lam, layers, train_x, z_train, epochs, args.lr, 100, args.seed)
        with torch.no_grad():
            error = relative_code_error(lista(test_x), z_test)
            train_error = relative_code_error(lista(train_x), z_train)
            objective = float(lista.objective(test_x))
        row = {"layers": layers, "code_error": error, "train_code_error": train_error, "objective": objective,
               "ista_code_error": ista_curve[0][layers - 1] if layers <= iterations else None,
               "ista_iterations_matched": ista_iterations_to_reach(test_x, dictionary, args.lam, z_test, error),
               "fista_iterations_matched": first_reaching(fista_curve[0], error),
               "seconds": time.perf_counter() - t0}
        results.append(row)
    print(f"\nLISTA (trained {epochs} epochs, Adam lr={args.lr}) against ISTA/FISTA on the test split "
          f"({len(test_x)} images):")
    print(f"{'T':>3} {'code err':>9} {'train err':>9} {'ISTA@T err':>10} {'objective':>9} {'ISTA its':>8} "
          f"{'FISTA its':>9}")
    for r in results:
        print(f"{r['layers']:>3} {r['code_error']:>9.4f} {r['train_code_error']:>9.4f} "
              f"{r['ista_code_error'] or float('nan'):>10.4f} {r['objective']:>9.4f} "
              f"{str(r['ista_iterations_matched']):>8} {str(r['fista_iterations_matched']):>9}")
    print(f"\n{'k':>5} {'ISTA err':>9} {'FISTA err':>9} {'ISTA obj':>9} {'FISTA obj':>9}")
    for k in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000):
        if k <= iterations:
            print(f"{k:>5} {ista_curve[0][k - 1]:>9.4f} {fista_curve[0][k - 1]:>9.4f} {ista_curve[1][k - 1]:>9.4f} "
                  f"{fista_curve[1][k - 1]:>9.4f}")
    by_t = {r["layers"]: r for r in results}
    summary = {"lam": args.lam, "atoms": args.atoms, "epochs": epochs, "optimum": optimum, "lista": results,
               "ista": {"code_error": ista_curve[0], "objective": ista_curve[1]},
               "fista": {"code_error": fista_curve[0], "objective": fista_curve[1]}}
    if 5 in by_t and 1 in by_t:
        matched = by_t[5]["ista_iterations_matched"]
        ok = matched is not None and matched >= 100 and by_t[5]["code_error"] < by_t[1]["code_error"]
        summary["target_met"] = ok
        print(f"\ntarget (T=5 matches >= 100 ISTA iterations and beats T=1): {'met' if ok else 'NOT met'} "
              f"(T=5 matches {matched} ISTA iterations; ratio {matched / 5 if matched else float('nan'):.0f}x)")
    if not args.quick:
        figure(Path(args.figure), results, ista_curve, fista_curve, optimum)
        print(f"wrote {args.figure}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 epochs, 5 alternations, 50 iterations: a smoke run")
    parser.add_argument("--atoms", type=int, default=128)
    parser.add_argument("--lam", type=float, default=0.2)
    parser.add_argument("--layers", type=int, nargs="+", default=[1, 2, 5, 10])
    parser.add_argument("--epochs", type=int, default=200, help="LISTA training epochs")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--iterations", type=int, default=1000, help="ISTA/FISTA iterations on the curves")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", default=str(REPO / "docs" / "_static" / "sparse_coding.png"))
    parser.add_argument("--out", default="results/sparse_coding")
    main(parser.parse_args())

"""Benchmark section: Hamiltonian variational inference (T = 1, 4, 8) against the plain ELBO.

A VAE is first trained with :class:`~pyro.infer.Trace_ELBO` on mnist-5k (dynamic binarization).
From that same starting point, for every T:

* **fixed**: the model and guide are frozen and only the HVI parameters (step sizes, momentum
  scale, reverse model) are trained; the test HVI bound is set against the test ELBO of the
  *same* guide (the bound must beat it);
* **joint**: model, guide and HVI parameters are trained further with ``TraceHVI_ELBO(T)``
  for the same budget as the baseline, which continues with the plain ELBO (``T = 0``); we
  report the test ELBO, the test HVI bound and the test log p(x) (IWAE estimate with the guide
  as proposal, ``evaluate.log_likelihood``).

Run alone (``python benchmarks/hvi_section.py --quick``) or through ``benchmarks/elbos.py``,
which calls :func:`run`. All numbers are nats per test image.
"""
import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

import pyro
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyro_deepgen import evaluate  # noqa: E402
from pyro_deepgen.data import load_train_test  # noqa: E402
from pyro_deepgen.infer import TraceHVI_ELBO  # noqa: E402
from pyro_deepgen.models import VAE  # noqa: E402
from pyro_deepgen.train import fit  # noqa: E402
from _shared_data import default_mnist_root, require_mnist_root  # noqa: E402 (benchmarks/ is on sys.path when run)


def _default_data_root() -> str:
    """``../shared/data/mnist-5k`` (see ``_shared_data.default_mnist_root``)."""
    return str(default_mnist_root())


DEFAULT_DATA_ROOT = _default_data_root()
# (name, default, quick value): every setting can be given as an attribute of ``args``
# (prefixed ``hvi_`` where shared with other sections, e.g. ``args.hvi_epochs``)
SETTINGS = (
    ("hvi_steps", (1, 4, 8), (1, 2)),
    ("hvi_pretrain_epochs", 10, 1),
    ("hvi_epochs", 3, 1),
    ("hvi_z_dim", 20, 5),
    ("hvi_num_train", None, 300),
    ("hvi_num_test", 500, 50),
    ("hvi_ll_samples", 1000, 20),
    ("hvi_eval_particles", 10, 2),
    ("hvi_batch_size", 100, 50),
    ("hvi_lr", 1e-3, 1e-3),
    ("hvi_param_lr", 3e-2, 5e-2),
    ("hvi_step_size", 0.05, 0.05),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The section's options (all prefixed ``--hvi-``)."""
    parser.add_argument("--hvi-steps", type=lambda s: tuple(int(v) for v in s.split(",")),
                        help="leapfrog steps T to compare, e.g. 1,4,8 (default)")
    parser.add_argument("--hvi-pretrain-epochs", type=int, help="Trace_ELBO epochs first (10)")
    parser.add_argument("--hvi-epochs", type=int, help="epochs of each HVI/ELBO run (3)")
    parser.add_argument("--hvi-z-dim", type=int, help="latent dimension (20)")
    parser.add_argument("--hvi-num-train", type=int, help="training images (all)")
    parser.add_argument("--hvi-num-test", type=int, help="test images (500)")
    parser.add_argument("--hvi-ll-samples", type=int, help="importance samples for log p(x) (1000)")
    parser.add_argument("--hvi-eval-particles", type=int, help="particles of the test bounds (10)")
    parser.add_argument("--hvi-batch-size", type=int, help="minibatch size (100)")
    parser.add_argument("--hvi-lr", type=float, help="Adam learning rate (1e-3)")
    parser.add_argument("--hvi-param-lr", type=float,
                        help="Adam learning rate of the HVI parameters (3e-2)")
    parser.add_argument("--hvi-step-size", type=float, help="initial leapfrog step size (0.05)")


def _config(args: Any) -> Dict[str, Any]:
    quick = bool(getattr(args, "quick", False))
    cfg = {}
    for name, default, quick_value in SETTINGS:
        value = getattr(args, name, None)
        cfg[name] = value if value is not None else (quick_value if quick else default)
    cfg["quick"] = quick
    cfg["seed"] = int(getattr(args, "seed", 0))
    cfg["data_root"] = str(getattr(args, "data_root", None) or DEFAULT_DATA_ROOT)
    cfg["device"] = str(getattr(args, "device", None) or "cpu")
    cfg["progress"] = bool(getattr(args, "progress", False))
    return cfg


def _optimizer(cfg: Dict[str, Any], prefix: str):
    """Adam with the HVI parameters (param-store names ``prefix.*``) in their own group."""

    def make(params):
        store = pyro.get_param_store()
        hvi_ids = {id(p) for n, p in store.named_parameters() if n.startswith(prefix + ".")}
        groups = [
            {"params": [p for p in params if id(p) not in hvi_ids]},
            {"params": [p for p in params if id(p) in hvi_ids], "lr": cfg["hvi_param_lr"]},
        ]
        return torch.optim.Adam([g for g in groups if g["params"]], lr=cfg["hvi_lr"])

    return make


def _fit(model, guide, x, loss, cfg, epochs: int) -> float:
    start = time.perf_counter()
    prefix = getattr(loss, "name", "")
    fit(model, guide, x, loss=loss, epochs=epochs, batch_size=cfg["hvi_batch_size"],
        optimizer=_optimizer(cfg, prefix), seed=cfg["seed"], binarize="dynamic",
        pass_num_data=True, progress=cfg["progress"])
    return time.perf_counter() - start


def _bound(hvi: TraceHVI_ELBO, model, guide, x: torch.Tensor) -> float:
    """The test HVI bound per image (``hvi.num_particles`` particles per image)."""
    return -hvi.loss(model, guide, x) / len(x)


def _evaluate(vae: VAE, x: torch.Tensor, cfg, hvi: TraceHVI_ELBO = None) -> Dict[str, float]:
    torch.manual_seed(cfg["seed"] + 1)
    out = {
        "test_elbo": evaluate.elbo(vae.model, vae.guide, x, num_samples=cfg["hvi_eval_particles"])
        .mean()
        .item(),
        "test_log_px": evaluate.log_likelihood(
            vae.model, vae.guide, x, num_samples=cfg["hvi_ll_samples"]
        )
        .mean()
        .item(),
    }
    if hvi is not None:
        out["test_hvi_bound"] = _bound(hvi, vae.model, vae.guide, x)
    return out


def run(args: Any) -> Dict[str, Any]:
    """Run the section; returns ``{"config": ..., "rows": [...]}`` (one row per T, T=0 is the
    plain ELBO) and prints a table."""
    cfg = _config(args)
    device = torch.device(cfg["device"])
    pyro.set_rng_seed(cfg["seed"])
    require_mnist_root(cfg["data_root"])
    data = load_train_test("mnist", root=cfg["data_root"], binarize="dynamic", seed=cfg["seed"])
    x_train = data.x_train[: cfg["hvi_num_train"]].to(device)
    x_test = data.x_test[: cfg["hvi_num_test"]].to(device)

    pyro.clear_param_store()
    vae = VAE(x_train.shape[1], cfg["hvi_z_dim"]).to(device)
    pretrain_s = _fit(vae.model, vae.guide, x_train, Trace_ELBO(), cfg, cfg["hvi_pretrain_epochs"])
    start_state = copy.deepcopy(vae.state_dict())

    rows: List[Dict[str, Any]] = []
    for T in (0,) + tuple(cfg["hvi_steps"]):
        row: Dict[str, Any] = {"num_steps": T}
        pyro.clear_param_store()
        vae.load_state_dict(start_state)
        name = f"hvi{T}"
        eval_hvi = None
        if T > 0:
            hvi = TraceHVI_ELBO(T, step_size=cfg["hvi_step_size"], name=name)
            eval_hvi = TraceHVI_ELBO(T, step_size=cfg["hvi_step_size"], name=name,
                                     num_particles=cfg["hvi_eval_particles"])
            # fixed model and guide: only the HVI parameters learn. Hiding the VAE's param sites
            # from fit()'s parameter capture keeps them out of the optimizer.
            frozen = [poutine.block(fn, hide_types=["param"]) for fn in (vae.model, vae.guide)]
            row["fixed_train_s"] = _fit(*frozen, x_train, hvi, cfg, cfg["hvi_epochs"])
            for _, p in pyro.get_param_store().named_parameters():
                p.grad = None  # drop the gradients the frozen parameters accumulated
            vae.zero_grad(set_to_none=True)
            row["fixed"] = _evaluate(vae, x_test, cfg, eval_hvi)
            row["fixed"]["bound_minus_elbo"] = (
                row["fixed"]["test_hvi_bound"] - row["fixed"]["test_elbo"]
            )
            loss = hvi
        else:
            loss = Trace_ELBO()
        row["joint_train_s"] = _fit(vae.model, vae.guide, x_train, loss, cfg, cfg["hvi_epochs"])
        row["joint"] = _evaluate(vae, x_test, cfg, eval_hvi)
        rows.append(row)

    base = rows[0]["joint"]
    print(f"\nHVI vs ELBO on {len(x_train)} MNIST training images, {len(x_test)} test images "
          f"(nats per image; pretraining {pretrain_s:.0f}s)")
    print(f"{'T':>3} | {'fixed: ELBO':>11} {'HVI bound':>10} {'gain':>6} | "
          f"{'joint: ELBO':>11} {'HVI bound':>10} {'log p(x)':>9} {'vs T=0':>7} {'s/epoch':>8}")
    for row in rows:
        fixed = row.get("fixed", {})
        joint = row["joint"]
        print(
            f"{row['num_steps']:>3} | {fixed.get('test_elbo', float('nan')):>11.2f} "
            f"{fixed.get('test_hvi_bound', float('nan')):>10.2f} "
            f"{fixed.get('bound_minus_elbo', float('nan')):>6.2f} | {joint['test_elbo']:>11.2f} "
            f"{joint.get('test_hvi_bound', float('nan')):>10.2f} {joint['test_log_px']:>9.2f} "
            f"{joint['test_log_px'] - base['test_log_px']:>7.2f} "
            f"{row['joint_train_s'] / cfg['hvi_epochs']:>8.1f}"
        )
    return {"config": cfg, "pretrain_s": pretrain_s, "test_split": data.test_split, "rows": rows}


def main(argv: Sequence[str] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    parser.add_argument("--data-root", default=DEFAULT_DATA_ROOT,
                        help="folder of the MNIST IDX files")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, help="write the results as JSON here (a file)")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    add_arguments(parser)
    args = parser.parse_args(argv)
    result = run(args)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()

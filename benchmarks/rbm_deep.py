"""Deep energy-based and Helmholtz models on binarized MNIST-5k.

- ``run_dbn_dbm``: a DBN (greedy CD-1 stack) and a DBM (doubled-weight pretraining, then
  mean-field PCD) of the same shape; test variational lower bounds on log p(v) with AIS for the
  partition functions, and importance-sampled estimates of log p(v) (``importance_log_prob``,
  K = 1000: tighter, still lower bounds in expectation), against the exact-up-to-AIS test
  log-likelihood of the DBN's first RBM on its own (the baseline, same process). The DBN should
  exceed the RBM (Hinton et al. 2006; Salakhutdinov & Murray 2008), and so should the DBM.
  On the first ``raise_images`` held-out images each model also gets its conservative side
  (RAISE, Burda et al. 2015: ``raise_log_prob`` for the RBM and the DBM, ``dbn_raise_log_prob``
  for the DBN), next to its optimistic side on the same images, so that every ranking can be
  read from both sides.
- ``run_wake_sleep``: a sigmoid belief net with a recognition network trained with wake-sleep
  and with reweighted wake-sleep (K=5) for the same epochs; importance-sampled test log p(x)
  (``pyro_deepgen.evaluate.log_likelihood``). RWS should win (Bornschein & Bengio 2015).

Both are importable (``benchmarks/rbm.py`` calls them with its own ``args``; missing settings
fall back to the defaults below) and runnable alone:

    python benchmarks/rbm_deep.py [--quick] [--out results/rbm_deep] [--data-root DIR]
"""
import argparse
import json
import time
from pathlib import Path

import pyro
import torch

from pyro_deepgen.data import load_train_test
from pyro_deepgen.evaluate import log_likelihood
from pyro_deepgen.energy import (
    DBM,
    DBN,
    MeanFieldPCD,
    ais_log_partition,
    dbm_posterior_ais_log_prob,
    dbn_raise_log_prob,
    pretrain_dbm,
    pretrain_dbn,
    raise_log_prob,
)
from pyro_deepgen.infer import ReweightedWakeSleep, WakeSleep, default_ais_schedule
from pyro_deepgen.models import HelmholtzMachine
from pyro_deepgen.train import fit
from _shared_data import default_mnist_root, require_mnist_root  # noqa: E402 (benchmarks/ is on sys.path when run)

REPO = Path(__file__).resolve().parent.parent
DATA_ROOT = default_mnist_root()

#: name -> (full setting, --quick setting); ``args`` attributes of the same name override them.
DEFAULTS = {
    "deep_hidden": ((500, 500), (50, 50)),
    "deep_epochs": (40, 1),
    "deep_lr": (0.05, 0.05),
    "dbm_epochs": (40, 1),
    "dbm_lr": (0.005, 0.005),
    # "linear": the fine-tuning rate falls linearly to 0 over the epochs (Salakhutdinov & Hinton
    # 2009 start at 0.005 and decay); "constant": the previous default (with lr 0.003)
    "dbm_lr_schedule": ("linear", "linear"),
    "ais_betas": (14500, 200),  # the paper's schedule; the DBM's log Z is 2 nats low at 5000
    "ais_runs": (100, 10),
    "bound_samples": (100, 5),
    "is_samples": (1000, 20),  # importance samples of the DBN / DBM log p(v) estimates
    # per-image AIS of the DBM's log p~(v) (mean-field q -> posterior over h2) on the first N
    # held-out images, next to importance sampling on the same images (0: skip)
    "dbm_ais_images": (0, 10),
    "dbm_ais_betas": (1000, 50),
    "dbm_ais_runs": (20, 5),
    # both sides on the first N held-out images: RAISE (conservative) with this ladder, R
    # reverse chains per image (RBM, DBM) or K upward samples x 1 reverse chain (DBN)
    "raise_images": (100, 10),
    "raise_betas": (1000, 20),
    "raise_runs": (10, 2),
    "dbn_raise_samples": (100, 5),
    "ws_hidden": (200, 20),
    "ws_epochs": (20, 1),
    "ws_lr": (1e-3, 1e-3),
    "ws_particles": (5, 5),
    "eval_samples": (1000, 20),
    "batch_size": (100, 100),
    "seed": (0, 0),
}


def setting(args, name):
    """``args.<name>`` when given (not None), else the full or ``--quick`` default."""
    value = getattr(args, name, None)
    if value is not None:
        return value
    full, quick = DEFAULTS[name]
    return quick if getattr(args, "quick", False) else full


def _betas(args, device):
    n = setting(args, "ais_betas")
    return default_ais_schedule(None if n is None else int(n), device=device)


def _save_samples(args, name, images):
    out = getattr(args, "out", None)
    if not out:
        return None
    from pyro_deepgen.plotting import save_image_grid

    path = Path(out) / f"{name}_samples.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image_grid(images, path, title=name)
    return str(path)


def _save_model(args, name, model):
    """``torch.save`` the trained ``model`` to ``<args.save_models>/<name>.pt`` when asked."""
    folder = getattr(args, "save_models", None)
    if not folder:
        return None
    path = Path(folder) / f"{name}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model, path)
    return str(path)


def run_dbn_dbm(x_train: torch.Tensor, x_test: torch.Tensor, args) -> dict:
    """Train a DBN and a DBM on binary ``x_train``; test bounds on log p(v) (nats per image)."""
    hidden = tuple(int(h) for h in setting(args, "deep_hidden"))
    epochs, lr = setting(args, "deep_epochs"), setting(args, "deep_lr")
    batch = setting(args, "batch_size")
    runs, seed = setting(args, "ais_runs"), setting(args, "seed")
    betas = _betas(args, x_train.device)
    fit_kwargs = dict(epochs=epochs, lr=lr, batch_size=batch, seed=seed, progress=False)
    optimizer = torch.optim.SGD  # plain CD steps, as in the papers
    pyro.set_rng_seed(seed)

    # DBN: greedy stack of RBMs
    t0 = time.time()
    dbn = DBN((x_train.shape[1],) + hidden).to(x_train)
    pretrain_dbn(dbn, x_train, optimizer=optimizer, **dict(fit_kwargs, lr=lr / batch))
    dbn_seconds = time.time() - t0
    _save_model(args, "dbn", dbn)
    t0 = time.time()
    bottom = dbn.rbms[0]
    log_z_rbm, se_rbm = ais_log_partition(bottom, betas, runs, base_rate=x_train)
    rbm_ll = bottom.log_prob(x_test, log_z_rbm).mean().item()
    top_data = dbn.upward(x_train, sample=False)[-1]
    log_z_top, se_top = ais_log_partition(dbn.top, betas, runs, base_rate=top_data)
    dbn_bound = dbn.lower_bound(x_test, log_z_top, num_samples=setting(args, "bound_samples"))
    dbn_is = dbn.importance_log_prob(x_test, log_z_top, num_samples=setting(args, "is_samples"))
    dbn_eval_seconds = time.time() - t0

    # DBM: doubled-weight pretraining, then mean-field PCD
    t0 = time.time()
    dbm = DBM(x_train.shape[1], hidden[0], hidden[-1]).to(x_train)
    pretrain_dbm(dbm, x_train, optimizer=optimizer, **dict(fit_kwargs, lr=lr / batch))
    pretrain_seconds = time.time() - t0
    t0 = time.time()
    dbm_epochs = setting(args, "dbm_epochs")
    schedule = setting(args, "dbm_lr_schedule")
    if schedule not in ("linear", "constant"):
        raise ValueError(f"dbm_lr_schedule must be 'linear' or 'constant', got {schedule!r}")
    lr_schedule = None if schedule == "constant" else (
        lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0 - e / dbm_epochs))
    fit(dbm, None, x_train, loss=MeanFieldPCD(), optimizer=optimizer, lr_schedule=lr_schedule,
        **dict(fit_kwargs, epochs=dbm_epochs, lr=setting(args, "dbm_lr") / batch))
    finetune_seconds = time.time() - t0
    _save_model(args, "dbm", dbm)
    t0 = time.time()
    log_z_dbm, se_dbm = dbm.ais_log_partition(betas, runs, base_rate=x_train)
    dbm_bound = dbm.lower_bound(x_test, log_z_dbm)
    dbm_is = dbm.importance_log_prob(x_test, log_z_dbm, num_samples=setting(args, "is_samples"))
    dbm_eval_seconds = time.time() - t0
    ais_images = int(setting(args, "dbm_ais_images"))
    if ais_images:
        t0 = time.time()
        dbm_ais, _ = dbm_posterior_ais_log_prob(
            dbm, x_test[:ais_images], int(setting(args, "dbm_ais_betas")),
            int(setting(args, "dbm_ais_runs")), log_z=log_z_dbm)
        per_image = {
            "images": ais_images, "betas": int(setting(args, "dbm_ais_betas")),
            "runs": int(setting(args, "dbm_ais_runs")),
            "posterior_ais_log_prob": dbm_ais.mean().item(),
            "importance_log_prob": dbm_is[:ais_images].mean().item(),
            "seconds": time.time() - t0,
        }
        print(f"[dbm] per-image term on {ais_images} held-out images: AIS q -> p(h2|v) "
              f"{per_image['posterior_ais_log_prob']:.2f}, importance sampling "
              f"{per_image['importance_log_prob']:.2f}")

    res = {
        "hidden": list(hidden), "epochs": epochs, "dbm_epochs": dbm_epochs,
        "dbm_lr": setting(args, "dbm_lr"), "dbm_lr_schedule": schedule,
        "ais_betas": len(betas) - 1, "ais_runs": runs,
        "rbm_test_log_likelihood": rbm_ll, "rbm_log_z": log_z_rbm.item(),
        "rbm_log_z_stderr": se_rbm.item(),
        "dbn_test_lower_bound": dbn_bound.mean().item(), "dbn_top_log_z": log_z_top.item(),
        "is_samples": setting(args, "is_samples"),
        "dbn_test_importance_log_prob": dbn_is.mean().item(),
        "dbm_test_importance_log_prob": dbm_is.mean().item(),
        "dbn_top_log_z_stderr": se_top.item(), "dbn_train_seconds": dbn_seconds,
        "dbn_eval_seconds": dbn_eval_seconds,
        "dbm_test_lower_bound": dbm_bound.mean().item(), "dbm_log_z": log_z_dbm.item(),
        "dbm_log_z_stderr": se_dbm.item(), "dbm_pretrain_seconds": pretrain_seconds,
        "dbm_finetune_seconds": finetune_seconds, "dbm_eval_seconds": dbm_eval_seconds,
    }
    if ais_images:
        res["dbm_per_image_check"] = per_image
    raise_images = int(setting(args, "raise_images"))
    if raise_images:
        res["sandwich"] = _sandwich(args, x_train, x_test[:raise_images], bottom, dbn, dbm,
                                    {"rbm": bottom.log_prob(x_test, log_z_rbm), "dbn": dbn_is,
                                     "dbm": dbm_is}, top_data)
    gibbs = 200 if getattr(args, "quick", False) else 1000
    res["dbn_samples"] = _save_samples(args, "dbn", dbn.sample(64, num_steps=gibbs))
    res["dbm_samples"] = _save_samples(args, "dbm", dbm.sample(64, num_steps=gibbs))
    print(f"[dbn/dbm] {x_train.shape[1]}-{'-'.join(map(str, hidden))}: RBM test log p(v) "
          f"{rbm_ll:.2f}; DBN bound {res['dbn_test_lower_bound']:.2f} "
          f"(minus RBM: {res['dbn_test_lower_bound'] - rbm_ll:+.2f}); DBM bound "
          f"{res['dbm_test_lower_bound']:.2f} (log Z {log_z_dbm.item():.2f} "
          f"+- {se_dbm.item():.2f}); importance-sampled log p(v) (K="
          f"{res['is_samples']}): DBN {res['dbn_test_importance_log_prob']:.2f}, DBM "
          f"{res['dbm_test_importance_log_prob']:.2f}")
    return res


def _sandwich(args, x_train, x, rbm, dbn, dbm, optimistic, top_data) -> dict:
    """Both sides of each model's log-likelihood on the images ``x`` (nats per image): the
    conservative RAISE side and the optimistic one (``optimistic[name]``: the per-image estimates
    with the forward-AIS log Z, on the first ``len(x)`` of them), with the gap, RAISE's standard
    error and its seconds."""
    betas = default_ais_schedule(int(setting(args, "raise_betas")), device=x.device)
    runs = int(setting(args, "raise_runs"))
    out = {"images": len(x), "betas": len(betas) - 1, "runs": runs,
           "dbn_samples": int(setting(args, "dbn_raise_samples"))}
    for name in ("rbm", "dbn", "dbm"):
        t0 = time.time()
        if name == "dbn":
            low, se = dbn_raise_log_prob(dbn, x, betas, num_samples=out["dbn_samples"], base_rate=top_data)
        else:
            low, se = raise_log_prob(rbm if name == "rbm" else dbm, x, betas, runs, base_rate=x_train)
        high = optimistic[name][:len(x)].mean().item()
        out[name] = {"raise": low.mean().item(), "raise_stderr": (se.pow(2).sum().sqrt() / len(x)).item(),
                     "optimistic": high, "gap": high - low.mean().item(), "seconds": time.time() - t0}
        print(f"[sandwich] {name.upper()} on {len(x)} held-out images: RAISE {out[name]['raise']:.2f} "
              f"+- {out[name]['raise_stderr']:.2f} (conservative), {high:.2f} (optimistic), "
              f"gap {out[name]['gap']:.2f} ({out[name]['seconds']:.0f} s)")
    return out


def run_wake_sleep(x_train: torch.Tensor, x_test: torch.Tensor, args) -> dict:
    """Wake-sleep against reweighted wake-sleep on a one-layer sigmoid belief net."""
    hidden, epochs = int(setting(args, "ws_hidden")), setting(args, "ws_epochs")
    lr, batch, seed = setting(args, "ws_lr"), setting(args, "batch_size"), setting(args, "seed")
    k, eval_k = setting(args, "ws_particles"), setting(args, "eval_samples")
    res = {"hidden": hidden, "epochs": epochs, "num_particles": k, "eval_samples": eval_k}
    losses = (("wake_sleep", WakeSleep()), ("reweighted_wake_sleep", ReweightedWakeSleep(k)))
    for name, loss in losses:
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        hm = HelmholtzMachine(x_train.shape[1], (hidden,)).to(x_train)
        t0 = time.time()
        history = fit(hm.model, hm.guide, x_train, loss=loss, lr=lr, epochs=epochs,
                      batch_size=batch, seed=seed, pass_num_data=True, progress=False)
        seconds = time.time() - t0
        ll = log_likelihood(hm.model, hm.guide, x_test, num_samples=eval_k,
                            chunk_size=min(eval_k, 100))
        res[name] = {"test_log_likelihood": ll.mean().item(), "train_seconds": seconds,
                     "final_train_loss": history.loss[-1]}
        res[f"{name}_samples"] = _save_samples(args, name, hm.sample(64))
    ws, rws = res["wake_sleep"], res["reweighted_wake_sleep"]
    gap = rws["test_log_likelihood"] - ws["test_log_likelihood"]
    res["rws_minus_ws"] = gap
    print(f"[wake-sleep] {x_train.shape[1]}-{hidden} SBN, {epochs} epochs: test log p(x) WS "
          f"{res['wake_sleep']['test_log_likelihood']:.2f}, RWS(K={k}) "
          f"{res['reweighted_wake_sleep']['test_log_likelihood']:.2f} (RWS - WS: {gap:+.2f} nats)")
    return res


PARTS = ("dbn_dbm", "wake_sleep")


def load_data(args):
    require_mnist_root(args.data_root)
    data = load_train_test("mnist", args.data_root, binarize="threshold", seed=args.seed or 0)
    return data.x_train, data.x_test, data.test_split


def main(args):
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    x_train, x_test, rule = load_data(args)
    if args.quick:
        x_train, x_test = x_train[:500], x_test[:100]
    print(f"MNIST-5k binarized at 0.5: {len(x_train)} train, {len(x_test)} test ({rule})")
    results = {"data": "mnist-5k", "test_split": rule, "quick": bool(args.quick)}
    parts = getattr(args, "parts", None) or PARTS
    if "dbn_dbm" in parts:
        results["dbn_dbm"] = run_dbn_dbm(x_train, x_test, args)
    if "wake_sleep" in parts:
        results["wake_sleep"] = run_wake_sleep(x_train, x_test, args)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "rbm_deep.json").write_text(json.dumps(results, indent=2))
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", default=str(DATA_ROOT))
    parser.add_argument("--quick", action="store_true",
                        help="tiny settings, to check the script runs")
    parser.add_argument("--out", default=None, help="folder for rbm_deep.json and sample figures")
    parser.add_argument("--save-models", dest="save_models", default=None,
                        help="folder to torch.save the trained DBN and DBM into (dbn.pt, dbm.pt), "
                             "to re-score them without retraining")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=None,
                        help="which comparisons to run (default: both)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--deep-epochs", dest="deep_epochs", type=int, default=None)
    parser.add_argument("--dbm-epochs", dest="dbm_epochs", type=int, default=None)
    parser.add_argument("--dbm-lr", dest="dbm_lr", type=float, default=None,
                        help="MeanFieldPCD learning rate per example (default 0.005)")
    parser.add_argument("--dbm-lr-schedule", dest="dbm_lr_schedule", default=None,
                        choices=("linear", "constant"),
                        help="fine-tuning rate: falls linearly to 0 (default) or stays constant")
    parser.add_argument("--dbm-ais-images", dest="dbm_ais_images", type=int, default=None,
                        help="check the DBM's importance-sampled per-image term by AIS on this "
                             "many held-out images (default 0; --quick 10)")
    parser.add_argument("--raise-images", dest="raise_images", type=int, default=None,
                        help="score both sides (RAISE and the optimistic estimate) on this many "
                             "held-out images (default 100; 0: skip)")
    parser.add_argument("--raise-betas", dest="raise_betas", type=int, default=None,
                        help="RAISE's temperatures (default 1000)")
    parser.add_argument("--ws-epochs", dest="ws_epochs", type=int, default=None)
    parser.add_argument("--ais-betas", dest="ais_betas", type=int, default=None)
    parser.add_argument("--ais-runs", dest="ais_runs", type=int, default=None)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    main(parser.parse_args())

r"""Train a generative stochastic network (a denoising autoencoder with walkback) on the digits or
MNIST, sample it with many chains at once, and judge the chains' mixing through
:class:`pyro.infer.MCMC` and arviz.

With the binary corruptions (``salt-and-pepper``, ``flip``) the pixels are binarized at 0.5 and
the reconstruction is Bernoulli; with ``gaussian`` they stay grey values and the reconstruction
is Gaussian. Training is :func:`~pyro_deepgen.train.fit` on
:meth:`~pyro_deepgen.models.GSN.walkback_loss` (Adam), with checkpoints and resume. Then
``mixing_chains`` chains run through :class:`~pyro_deepgen.models.gsn.GSNKernel` in
:class:`pyro.infer.MCMC` (``mixing_warmup`` + ``mixing_draws`` steps from random starts); the
report gives split :math:`\hat R` and bulk ESS (arviz, one chain per GSN chain) of two summary
statistics: the mean intensity of the reconstruction and its projection on the data's first
principal component. The walkback loss on the test set is reported too.

:func:`run` writes ``report.json``, ``checkpoint.pt``, ``samples.png`` (the last reconstruction
means of 64 chains), ``chain.png`` (consecutive states of a few chains), ``losses.png`` (the
training and test walkback loss; a GSN has one player), ``progress.png`` (chains from the same
start with the same noise at a few epochs over training) and ``progress.pt``. :func:`load_sampler`
rebuilds the trained GSN from a run folder.
"""
import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import pyro
import torch
from pyro.infer import MCMC

from ..diagnostics import ess, rhat
from ..models.gsn import DEFAULT_NOISE_LEVEL, GSN, NOISES, GSNKernel
from ..plotting import image_shape, save_image_grid, save_loss_curve
from ..train import fit, load_checkpoint
from .common import (
    read_run_report,
    ResumableConfig,
    check_choice,
    check_common,
    check_data,
    check_int_tuple,
    check_positive_float,
    check_positive_int,
    fit_run_arguments,
    load_data,
    prepare_output,
    resume_report,
    settings,
    write_report,
    wrote_line,
)

COMMAND = "gsn"
NUM_SNAPSHOTS = 6
PROGRESS_FILE = "progress.pt"


@dataclasses.dataclass
class GSNConfig(ResumableConfig):
    """The settings of :func:`run`, one per option of ``pyro-deepgen gsn`` (same defaults).

    :param walkback: :math:`K`, walkback steps per training point (1: a plain denoising AE).
    :param noise: ``salt-and-pepper``, ``flip`` or ``gaussian``.
    :param noise_level: the corruption level; ``None``: 0.4 / 0.2 / 0.3 (in that order).
    :param data: ``digits`` or ``mnist``; ``data_root``, ``download`` as elsewhere.
    :param epochs: passes over the training images.
    :param batch_size: minibatch size.
    :param lr: Adam step size.
    :param hidden: hidden sizes of the reconstruction network.
    :param chain_steps: transitions of each chain before its sample is taken.
    :param mixing_chains: chains of the mixing diagnostics.
    :param mixing_warmup: warm-up transitions of the mixing diagnostics.
    :param mixing_draws: kept transitions of the mixing diagnostics.
    """

    walkback: int = 2
    noise: str = "salt-and-pepper"
    noise_level: Optional[float] = None
    data: str = "digits"
    data_root: Optional[str] = None
    download: bool = False
    epochs: int = 40
    batch_size: int = 64
    lr: float = 1e-3
    hidden: Tuple[int, ...] = (500,)
    chain_steps: int = 100
    mixing_chains: int = 8
    mixing_warmup: int = 100
    mixing_draws: int = 400
    out: Union[str, Path] = Path("runs/gsn")

    def __post_init__(self) -> None:
        check_positive_int(self, "walkback", "epochs", "batch_size", "chain_steps", "mixing_chains",
                           "mixing_warmup", "mixing_draws")
        check_choice(self, "noise", NOISES)
        if self.noise_level is not None:
            check_positive_float(self, "noise_level")
            if self.noise != "gaussian" and self.noise_level >= 1:
                raise ValueError(f"noise_level (--noise-level) must be a probability in (0, 1) for --noise "
                                 f"{self.noise}, got {self.noise_level!r}")
        if self.mixing_chains < 2:
            raise ValueError(f"mixing_chains (--mixing-chains) must be at least 2 (R-hat compares chains), "
                             f"got {self.mixing_chains}")
        check_positive_float(self, "lr")
        check_int_tuple(self, "hidden")
        check_data(self)
        check_common(self)


def build(config_settings: Dict[str, Any], x_dim: int) -> GSN:
    """The GSN of a run's settings (a :class:`GSNConfig` as plain data)."""
    return GSN(x_dim, tuple(config_settings["hidden"]), noise=config_settings["noise"],
               noise_level=config_settings["noise_level"], walkback=config_settings["walkback"])


def _snapshot_epochs(epochs: int) -> List[int]:
    return sorted({max(1, round(epochs * (i + 1) / NUM_SNAPSHOTS)) for i in range(NUM_SNAPSHOTS)})


@torch.no_grad()
def _test_loss(gsn: GSN, x: torch.Tensor, seed: int) -> float:
    """The walkback loss per test image, with a seeded generator-free draw (global state saved)."""
    state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        return float(gsn.walkback_loss(x)) / x.shape[0]
    finally:
        torch.set_rng_state(state)


def mixing(gsn: GSN, x_train: torch.Tensor, chains: int, warmup: int, draws: int) -> Dict[str, Any]:
    """Run ``chains`` GSN chains through :class:`pyro.infer.MCMC` and :class:`GSNKernel`; return the
    split R-hat and bulk ESS of the mean intensity and of the projection on the data's first
    principal component (one arviz chain per GSN chain)."""
    centre = x_train.mean(0)
    _, _, v = torch.linalg.svd(x_train - centre, full_matrices=False)
    direction = v[0]

    def statistics(x, mean):
        return {"mean_intensity": mean.mean(-1), "pc1": (mean - centre) @ direction}

    kernel = GSNKernel(gsn, num_chains=chains, statistics=statistics)
    mcmc = MCMC(kernel, num_samples=draws, warmup_steps=warmup, disable_progbar=True)
    mcmc.run()
    by_chain = GSNKernel.by_chain(mcmc.get_samples())
    r, e = rhat(by_chain), ess(by_chain)
    return {"r_hat": {k: float(v) for k, v in r.items()}, "ess_bulk": {k: float(v) for k, v in e.items()},
            "chains": chains, "warmup": warmup, "draws": draws}


def run(config: GSNConfig) -> Dict[str, Any]:
    """Train, sample, diagnose (see the module doc), write the files to ``config.out``, print the
    summary and return the report (the contents of ``report.json``)."""
    folder = prepare_output(config.out, COMMAND, overwrite=config.overwrite, resume=config.resume)
    binary = config.noise != "gaussian"
    data = load_data(config, "threshold" if binary else None)
    device = config.device
    x_train, x_test = data.x_train.to(device), data.x_test.to(device)
    dim = x_train.shape[1]
    run_settings = settings(config, COMMAND)

    pyro.set_rng_seed(config.seed)
    pyro.clear_param_store()
    gsn = build(run_settings, dim).to(device)
    g_fixed = torch.Generator(device=device)
    x0_fixed = gsn.initial_state(10, torch.Generator(device=device).manual_seed(config.seed + 1))
    snapshot_epochs = _snapshot_epochs(config.epochs)
    progress_path = folder.path / PROGRESS_FILE
    snapshots: Dict[int, torch.Tensor] = {}
    if config.resume and progress_path.is_file():
        snapshots = {int(k): v for k, v in torch.load(progress_path, map_location="cpu", weights_only=True).items()}

    def callback(epoch: int, history) -> None:
        if epoch in snapshot_epochs or epoch == config.epochs:
            g_fixed.manual_seed(config.seed + 2)  # the same noise at every snapshot
            snapshots[epoch] = gsn.chain(10, config.chain_steps, x0=x0_fixed, generator=g_fixed)[1].cpu()
            torch.save({str(k): v for k, v in snapshots.items()}, progress_path)
            folder.record(PROGRESS_FILE)

    t0 = time.time()
    history = fit(
        gsn.loss, None, x_train, loss=gsn.loss, module=gsn, lr=config.lr, epochs=config.epochs,
        batch_size=config.batch_size, seed=config.seed, progress=config.progress, callback=callback,
        val_data=x_test, eval_fn=lambda m, g, x: _test_loss(gsn, x, config.seed), restore_best=False,
        **fit_run_arguments(config, COMMAND, folder),
    )
    train_seconds = time.time() - t0
    gsn.eval()
    pyro.set_rng_seed(config.seed)
    samples = gsn.sample(64, config.chain_steps)
    chain_means = gsn.chain(4, 40, every=4)  # (10, 4, D): every 4th step of 4 chains
    t1 = time.time()
    mix = mixing(gsn, x_train, config.mixing_chains, config.mixing_warmup, config.mixing_draws)
    report = {
        "walkback": config.walkback,
        "noise": config.noise,
        "noise_level": gsn.noise_level,
        "x_dim": dim,
        "train_loss": history.loss,
        "test_loss": [v for _, v in history.val],
        "sample_mean_intensity": float(samples.mean()),
        "data_mean_intensity": float(x_train.mean()),
        "mixing": mix,
        "mixing_seconds": time.time() - t1,
        "num_parameters": sum(p.numel() for p in gsn.parameters()),
        "epochs": history.epochs,
        "seconds": time.time() - t0,
        "train_seconds": train_seconds,
        "test_split": data.test_split,
        "num_train": int(x_train.shape[0]),
        "num_test": int(x_test.shape[0]),
        "settings": run_settings,
        **resume_report(history),
    }
    with folder.results() as out:
        write_report(out, report)
        shape = image_shape(dim)
        save_image_grid(samples, out / "samples.png", shape,
                        title=f"GSN samples (walkback {config.walkback}, {config.noise})",
                        caption=f"64 chains, reconstruction mean after {config.chain_steps} steps")
        save_image_grid(chain_means.transpose(0, 1).reshape(-1, dim), out / "chain.png", shape, ncol=10,
                        title="four chains over time", caption="every 4th step, left to right",
                        row_labels=[f"chain {i + 1}" for i in range(4)])
        save_loss_curve(history.loss, out / "losses.png", history.val, ylabel="walkback loss per image (nats)",
                        title="GSN walkback loss (validation: test split)")
        epochs_shown = sorted(snapshots)
        if epochs_shown:
            save_image_grid(torch.cat([snapshots[e] for e in epochs_shown]), out / "progress.png", shape, ncol=10,
                            title="the same chains over training", row_labels=[f"epoch {e}" for e in epochs_shown],
                            caption=f"10 fixed starts and noise, mean after {config.chain_steps} steps")
    print_summary(report)
    print(wrote_line(config.out, folder.files))
    return report


def load_sampler(run_dir: Union[str, Path], device: Union[str, torch.device] = "cpu",
                 steps: Optional[int] = None) -> Callable[[int], torch.Tensor]:
    """The trained GSN of a finished run folder as ``sample(n) -> (n, D)`` grey values in [0, 1]:
    ``n`` chains from random starts, the reconstruction mean after ``steps`` transitions (default:
    the run's ``chain_steps``)."""
    report = read_run_report(run_dir, COMMAND)
    gsn = build(report["settings"], report["x_dim"])
    gsn.load_state_dict(load_checkpoint(Path(run_dir) / "checkpoint.pt", map_location=device)["modules"][0])
    gsn.to(device).eval()
    n_steps = steps or report["settings"]["chain_steps"]

    def sample(n: int) -> torch.Tensor:
        return gsn.sample(n, n_steps)

    return sample


def print_summary(report: Dict[str, Any]) -> None:
    mix = report["mixing"]
    rows = [
        ("walkback / noise", f"{report['walkback']} / {report['noise']} {report['noise_level']:g}"),
        ("walkback loss train / test", f"{report['train_loss'][-1]:.3f} / {report['test_loss'][-1]:.3f}"),
        ("mean intensity samples / data", f"{report['sample_mean_intensity']:.3f} / "
                                          f"{report['data_mean_intensity']:.3f}"),
        ("R-hat (mean, pc1)", " / ".join(f"{mix['r_hat'][k]:.3f}" for k in ("mean_intensity", "pc1"))),
        ("ESS bulk (mean, pc1)", " / ".join(f"{mix['ess_bulk'][k]:.0f}" for k in ("mean_intensity", "pc1"))
         + f" of {mix['chains'] * mix['draws']}"),
        ("epochs / seconds", f"{report['epochs']} / {report['seconds']:.1f}"),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))


__all__ = ["GSNConfig", "run", "load_sampler", "build", "mixing", "DEFAULT_NOISE_LEVEL", "NOISES"]

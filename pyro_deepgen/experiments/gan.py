r"""Train a GAN (optionally conditional) on the digits or MNIST with one of four objectives.

The generator is the Pyro model :class:`~pyro_deepgen.models.Generator` (:math:`z\sim\mathcal
N(0, I)`, ``pyro.deterministic("x", G(z))``), the discriminator a
:class:`~pyro_deepgen.models.Discriminator`; :class:`~pyro_deepgen.infer.AdversarialLoss` takes
``n_critic`` discriminator steps per generator step inside :func:`~pyro_deepgen.train.fit`, which
steps the generator, checkpoints both players every epoch and resumes them. Pixels are grey values
in [0, 1] (the generator ends in a sigmoid). Both players use Adam with step ``lr`` (default
1e-3; 1e-4 for WGAN-GP) and betas (0.5, 0.999), or (0.0, 0.9) for WGAN-GP (Gulrajani et al.
2017). By default the discriminator has the minibatch standard-deviation feature (Karras et al.
2018; ``minibatch_std``). On mnist-5k (100 epochs, seed 0, 1000 samples) it took the
non-saturating GAN from 5 digit classes at 5 % or more to all 10 and its Fréchet distance from
111 to 9; spectral normalization of the discriminator (``spectral_norm``, Miyato et al. 2018, off
by default) alone gave 8 classes and 61, and with the feature 9 classes and 58 (it slows the
discriminator at this step size). With ``ema`` > 0 the samples, the progress grid and
:func:`load_sampler` use an exponential moving average of the generator's parameters with that
decay (Yazıcı et al. 2019) instead of the last iterate: 0.999 brought the Fréchet distance on
mnist-5k from 9 to 7 but on the digits, whose 2600 steps are few for a window of about 1000,
from 16 to 41 (blurred samples), so it is off by default (docs/implicit.rst).

:func:`run` writes ``report.json``, ``checkpoint.pt``, ``samples.png`` (64 draws; conditional:
one class per row), ``losses.png`` (both players per epoch), ``progress.png`` (the same fixed
:math:`z` decoded at a few epochs over training) and ``progress.pt`` (those snapshots, kept for
a resumed run). :func:`load_sampler` rebuilds the trained generator from a run folder. The GAN has
no likelihood: score its samples with ``pyro-deepgen score-samples``.
"""
import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import pyro
import torch

from ..infer.adversarial import OBJECTIVES, AdversarialLoss
from ..models.gan import Discriminator, Generator
from ..plotting import image_shape, save_image_grid, save_player_losses
from ..train import fit, load_checkpoint
from .common import (
    read_run_report,
    ResumableConfig,
    check_choice,
    check_common,
    check_data,
    check_int_tuple,
    check_nonnegative_float,
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

COMMAND = "gan"
NUM_CLASSES = 10
#: snapshots of the fixed-z grid kept over training (``progress.png``)
NUM_SNAPSHOTS = 6
PROGRESS_FILE = "progress.pt"


@dataclasses.dataclass
class GANConfig(ResumableConfig):
    """The settings of :func:`run`, one per option of ``pyro-deepgen gan`` (same defaults).

    :param loss: ``nonsaturating``, ``minimax``, ``wgan-gp`` or ``hinge`` (see
        :mod:`pyro_deepgen.infer.adversarial`).
    :param conditional: condition both players on the digit label.
    :param n_critic: discriminator steps per generator step; ``None``: 5 for ``wgan-gp``, else 1.
    :param gp_weight: WGAN-GP's penalty weight :math:`\\lambda`.
    :param data: ``digits`` (embedded 8x8) or ``mnist``; ``data_root``, ``download`` as elsewhere.
    :param epochs: passes over the training images.
    :param batch_size: real images per generator step (split over the ``n_critic`` critic steps).
    :param lr: Adam step size of both players; ``None``: 1e-4 for ``wgan-gp`` (Gulrajani et al.),
        else 1e-3 (2e-4 collapsed to a few modes on the digits with the 256-unit MLPs).
    :param z_dim: latent dimension.
    :param hidden: hidden sizes of both networks.
    :param spectral_norm: spectral normalization of the discriminator's linear layers.
    :param minibatch_std: the discriminator's minibatch standard-deviation feature.
    :param ema: decay of the moving average of the generator that is sampled, in [0, 1), e.g.
        0.999; 0 (default): sample the last iterate.
    """

    loss: str = "nonsaturating"
    conditional: bool = False
    n_critic: Optional[int] = None
    gp_weight: float = 10.0
    data: str = "digits"
    data_root: Optional[str] = None
    download: bool = False
    epochs: int = 100
    batch_size: int = 64
    lr: Optional[float] = None
    z_dim: int = 32
    hidden: Tuple[int, ...] = (256, 256)
    spectral_norm: bool = False
    minibatch_std: bool = True
    ema: float = 0.0
    out: Union[str, Path] = Path("runs/gan")

    def __post_init__(self) -> None:
        check_choice(self, "loss", OBJECTIVES)
        if not isinstance(self.conditional, bool):
            raise ValueError(f"conditional (--conditional) must be True or False, got {self.conditional!r}")
        if self.n_critic is not None:
            check_positive_int(self, "n_critic")
        check_nonnegative_float(self, "gp_weight", "ema")
        if not self.ema < 1:
            raise ValueError(f"ema (--ema) must be a number in [0, 1), got {self.ema!r}")
        for name, flag in (("spectral_norm", "--spectral-norm"), ("minibatch_std", "--no-minibatch-std")):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} ({flag}) must be True or False, got {getattr(self, name)!r}")
        check_positive_int(self, "epochs", "batch_size", "z_dim")
        if self.lr is not None:
            check_positive_float(self, "lr")
        check_int_tuple(self, "hidden")
        check_data(self)
        check_common(self)

    @property
    def step_size(self) -> float:
        return self.lr if self.lr is not None else (1e-4 if self.loss == "wgan-gp" else 1e-3)

    @property
    def critic_steps(self) -> int:
        return self.n_critic if self.n_critic is not None else (5 if self.loss == "wgan-gp" else 1)

    @property
    def betas(self) -> Tuple[float, float]:
        return (0.0, 0.9) if self.loss == "wgan-gp" else (0.5, 0.999)


def build(config_settings: Dict[str, Any], x_dim: int) -> Tuple[Generator, Discriminator]:
    """The generator and discriminator of a run's settings (a :class:`GANConfig` as plain data)."""
    classes = NUM_CLASSES if config_settings["conditional"] else None
    hidden = tuple(config_settings["hidden"])
    return (Generator(x_dim, config_settings["z_dim"], hidden, num_classes=classes),
            Discriminator(x_dim, hidden, num_classes=classes,
                          spectral_norm=config_settings.get("spectral_norm", False),  # False: runs before the options
                          minibatch_std=config_settings.get("minibatch_std", False)))


def _fixed_inputs(config: GANConfig, device) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The fixed latent codes (and labels) of the progress grid: 10 codes, one per class if
    conditional; drawn from a generator seeded with ``seed``, not the global random state."""
    g = torch.Generator().manual_seed(config.seed + 1)
    z = torch.randn(10, config.z_dim, generator=g).to(device)
    y = torch.arange(10, device=device) if config.conditional else None
    return z, y


def _snapshot_epochs(epochs: int) -> List[int]:
    return sorted({max(1, round(epochs * (i + 1) / NUM_SNAPSHOTS)) for i in range(NUM_SNAPSHOTS)})


def run(config: GANConfig) -> Dict[str, Any]:
    """Train (see the module doc), write the files to ``config.out``, print the summary and return
    the report (the contents of ``report.json``)."""
    folder = prepare_output(config.out, COMMAND, overwrite=config.overwrite, resume=config.resume)
    data = load_data(config)
    device = config.device
    x_train = data.x_train.to(device)
    y_train = data.y_train.to(device)
    dim = x_train.shape[1]
    run_settings = settings(config, COMMAND)

    pyro.set_rng_seed(config.seed)
    pyro.clear_param_store()
    generator, discriminator = build(run_settings, dim)
    generator.to(device)
    discriminator.to(device)
    loss = AdversarialLoss(discriminator, config.loss, n_critic=config.critic_steps, gp_weight=config.gp_weight,
                           lr=config.step_size, betas=config.betas, average=generator if config.ema > 0 else None,
                           average_decay=config.ema)
    sampler = loss.average if loss.average is not None else generator
    z_fixed, y_fixed = _fixed_inputs(config, device)
    snapshot_epochs = _snapshot_epochs(config.epochs)
    progress_path = folder.path / PROGRESS_FILE
    snapshots: Dict[int, torch.Tensor] = {}
    if config.resume and progress_path.is_file():
        snapshots = {int(k): v for k, v in torch.load(progress_path, map_location="cpu", weights_only=True).items()}

    def callback(epoch: int, history) -> None:
        if epoch in snapshot_epochs or epoch == config.epochs:
            with torch.no_grad():
                snapshots[epoch] = sampler.decode(z_fixed, y_fixed).cpu()
            torch.save({str(k): v for k, v in snapshots.items()}, progress_path)
            folder.record(PROGRESS_FILE)

    train_data = (x_train, y_train) if config.conditional else x_train
    t0 = time.time()
    history = fit(
        generator.model, None, train_data, loss=loss,
        optimizer=pyro.optim.Adam({"lr": config.step_size, "betas": config.betas}), lr=config.step_size,
        epochs=config.epochs, batch_size=config.batch_size, seed=config.seed, progress=config.progress,
        callback=callback, **fit_run_arguments(config, COMMAND, folder),
    )
    train_seconds = time.time() - t0
    steps_per_epoch = -(-x_train.shape[0] // config.batch_size)
    per_epoch = {k: _epoch_means(v, steps_per_epoch) for k, v in loss.history.items()}
    pyro.set_rng_seed(config.seed)
    samples, labels = _draw(sampler, 64 if not config.conditional else 80, config.conditional)
    report = {
        "loss": config.loss,
        "conditional": config.conditional,
        "spectral_norm": config.spectral_norm,
        "minibatch_std": config.minibatch_std,
        "ema": config.ema,
        "n_critic": config.critic_steps,
        "x_dim": dim,
        "generator_loss": per_epoch["generator"],
        "discriminator_loss": per_epoch["discriminator"],
        "d_real": per_epoch["d_real"],
        "d_fake": per_epoch["d_fake"],
        "generator_steps": loss.steps,
        "sample_mean_intensity": float(samples.mean()),
        "data_mean_intensity": float(x_train.mean()),
        "num_parameters": {"generator": sum(p.numel() for p in generator.parameters()),
                           "discriminator": sum(p.numel() for p in discriminator.parameters())},
        "epochs": history.epochs,
        "seconds": time.time() - t0,
        "train_seconds": train_seconds,
        "test_split": data.test_split,
        "num_train": int(x_train.shape[0]),
        "settings": run_settings,
        **resume_report(history),
    }
    with folder.results() as out:
        write_report(out, report)
        shape = image_shape(dim)
        save_image_grid(samples, out / "samples.png", shape, ncol=10 if config.conditional else 8,
                        title=f"GAN ({config.loss}) samples x = G(z)",
                        caption="one class per column" if config.conditional else "64 draws z ~ N(0, I)",
                        column_labels=[str(c) for c in range(10)] if config.conditional else None)
        save_player_losses(per_epoch, out / "losses.png", config.loss)
        epochs_shown = sorted(snapshots)
        if epochs_shown:
            save_image_grid(torch.cat([snapshots[e] for e in epochs_shown]), out / "progress.png", shape, ncol=10,
                            title="the same z over training", row_labels=[f"epoch {e}" for e in epochs_shown],
                            caption="10 fixed latent codes" + (", class c in column c" if config.conditional else ""))
    print_summary(report)
    print(wrote_line(config.out, folder.files))
    return report


def _epoch_means(values: List[float], steps_per_epoch: int) -> List[float]:
    return [sum(values[i:i + steps_per_epoch]) / len(values[i:i + steps_per_epoch])
            for i in range(0, len(values), steps_per_epoch)]


@torch.no_grad()
def _draw(generator: Generator, n: int, conditional: bool) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    ref = next(generator.parameters())
    y = (torch.arange(n, device=ref.device) % NUM_CLASSES) if conditional else None
    return generator.sample(n, y), y


def load_sampler(run_dir: Union[str, Path], device: Union[str, torch.device] = "cpu") -> Callable[[int], torch.Tensor]:
    """The trained generator of a finished run folder as ``sample(n) -> (n, D)`` grey values in
    [0, 1] (a conditional generator draws the classes in turn, ``i % 10``): the moving average of
    its parameters if the run kept one (``ema`` > 0), else its last iterate."""
    report = read_run_report(run_dir, COMMAND)
    generator, _ = build(report["settings"], report["x_dim"])
    state = load_checkpoint(Path(run_dir) / "checkpoint.pt", map_location=device)
    average = (state.get("loss") or {}).get("average")
    generator.load_state_dict(average if average is not None else state["modules"][0])
    generator.to(device).eval()
    conditional = report["settings"]["conditional"]

    def sample(n: int) -> torch.Tensor:
        return _draw(generator, n, conditional)[0]

    return sample


def print_summary(report: Dict[str, Any]) -> None:
    objective = f"{report['loss']} ({report['n_critic']})" + (", conditional" if report["conditional"] else "")
    rows = [
        ("objective (n_critic)", objective),
        ("final D / G loss", f"{report['discriminator_loss'][-1]:.4f} / {report['generator_loss'][-1]:.4f}"),
        ("mean D output real / fake", f"{report['d_real'][-1]:.3f} / {report['d_fake'][-1]:.3f}"),
        ("mean intensity samples / data", f"{report['sample_mean_intensity']:.3f} / "
                                          f"{report['data_mean_intensity']:.3f}"),
        ("epochs / generator steps / seconds", f"{report['epochs']} / {report['generator_steps']} / "
                                               f"{report['seconds']:.1f}"),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))

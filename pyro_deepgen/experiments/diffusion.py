r"""Train a Gaussian diffusion probabilistic model (Sohl-Dickstein et al. 2015) and report its
test bound.

The model is :class:`~pyro_deepgen.models.GaussianDiffusion` with a
:class:`~pyro_deepgen.nn.TimeMLP` (vectors) or a :class:`~pyro_deepgen.nn.UNet` (images) as its
reverse-process network, trained by :func:`~pyro_deepgen.train.fit` on
:class:`~pyro_deepgen.infer.DiffusionELBO` (Adam, gradient norm clipped at 1, learning rate
annealed from ``lr`` to ``lr/10`` along a half cosine). The bound

.. math::

    -\log p(x_0) \le \mathbb E_q\Big[-\log p(x_0|x_1)
        + \sum_{t=2}^T \mathrm{KL}\big(q(x_{t-1}|x_t, x_0)\,\|\,p(x_{t-1}|x_t)\big)
        + \mathrm{KL}\big(q(x_T|x_0)\,\|\,p(x_T)\big)\Big]

is reported on the test set two ways, each with its standard error: along one forward
trajectory per test point (the headline, usually the smaller variance), and as the sum of the
closed-form KL terms; in nats per data point and bits per dimension.

Data: the 2-D swiss roll (the paper's Figure 1, T = 40), the 8x8 digits or MNIST (dequantized
to 17 or 256 levels). Settings left as ``None`` take the per-data values of :data:`DEFAULTS`.
:func:`run` writes ``report.json`` and, for images, ``samples.png`` and ``inpainting.png``
(the lower half of test images filled in from the known top half), or, for the swiss roll,
``trajectory.png`` (the forward trajectory and the reverse samples). ``pyro-deepgen diffusion``
calls it.

**Reference**: J. Sohl-Dickstein, E. Weiss, N. Maheswaranathan, S. Ganguli, *Deep Unsupervised
Learning using Nonequilibrium Thermodynamics*, ICML 2015, arXiv:1503.03585.
"""
import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple, Union

import torch

from ..data import load_train_test
from ..data.toy import make_swiss_roll
from ..infer import DiffusionELBO
from ..infer.diffusion_elbo import WEIGHTINGS
from ..models import GaussianDiffusion
from ..models.diffusion import MEAN_TYPES
from ..models.diffusion_schedules import SCHEDULES
from ..nn import TimeMLP, UNet
from ..plotting import save_diffusion_trajectory, save_image_grid
from ..train import fit
from .common import (
    ResumableConfig,
    DATA_SETS,
    check_choice,
    check_common,
    check_data,
    check_int_tuple,
    check_positive_float,
    check_positive_int,
    fit_run_arguments,
    prepare_output,
    resume_report,
    settings,
    write_report,
)

COMMAND = "diffusion"
#: Settings used only after training, which a resumed run may change (``--resume-override``).
AFTER_TRAINING = ("max_test", "num_samples")
NETS = ("mlp", "unet")

#: per-data values of the settings left as ``None`` (the swiss roll is the paper's Figure 1,
#: T = 40); sized to finish in about a minute on two CPU cores (swissroll, digits).
DEFAULTS: Dict[str, Dict[str, Any]] = {
    "swissroll": dict(steps=40, schedule="sohl", epochs=80, batch_size=128, lr=2e-3, net="mlp",
                      loss="ddpm", hidden_dims=(128, 128, 128), base_channels=16, max_test=2000),
    "digits": dict(steps=100, schedule="cosine", epochs=25, batch_size=64, lr=2e-3, net="unet",
                   loss="ddpm", hidden_dims=(256, 256, 256), base_channels=16, max_test=2000),
    "mnist": dict(steps=100, schedule="cosine", epochs=10, batch_size=64, lr=1e-3, net="unet",
                  loss="ddpm", hidden_dims=(512, 512, 512), base_channels=16, max_test=500),
}


@dataclasses.dataclass
class DiffusionConfig(ResumableConfig):
    """The settings of :func:`run`, one per option of ``pyro-deepgen diffusion`` (same defaults;
    ``None`` takes the per-data value of :data:`DEFAULTS`, see :meth:`resolved`).

    :param data: ``swissroll`` (2-D), ``digits`` (scikit-learn's 8x8) or ``mnist`` (IDX files).
    :param data_root: folder with the MNIST IDX files (for ``data="mnist"``).
    :param download: fetch the missing official MNIST files into ``data_root`` (checked by MD5).
    :param steps: number of diffusion steps T.
    :param schedule: the beta schedule, one of
        :data:`~pyro_deepgen.models.diffusion_schedules.SCHEDULES`.
    :param epochs: training epochs.
    :param batch_size: minibatch size.
    :param lr: Adam learning rate (annealed to ``lr/10``).
    :param loss: gradient weighting of :class:`~pyro_deepgen.infer.DiffusionELBO`: ``elbo``
        (the bound) or ``ddpm`` (epsilon-prediction plus 1e-3 times the bound).
    :param mean_type: what the network's mean output predicts, one of
        :data:`~pyro_deepgen.models.diffusion.MEAN_TYPES` (``v``: well conditioned at every
        step; ``eps`` as in DDPM).
    :param net: ``mlp`` (TimeMLP) or ``unet`` (images only).
    :param hidden_dims: TimeMLP hidden sizes (``--hidden``, also spelled ``--hidden-dims``).
    :param base_channels: UNet channels at full resolution.
    :param num_train: use at most this many training points (swissroll: points drawn, default
        10000).
    :param max_test: evaluate the bound on at most this many test points.
    :param num_samples: samples drawn for the figures.

    The shared fields (seed, device, out, progress, overwrite, resume, resume_override) come from
    :class:`~pyro_deepgen.experiments.common.ResumableConfig`.
    """

    data: str = "swissroll"
    data_root: Optional[str] = None
    download: bool = False
    steps: Optional[int] = None
    schedule: Optional[str] = None
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    lr: Optional[float] = None
    loss: Optional[str] = None
    mean_type: str = "v"
    net: Optional[str] = None
    hidden_dims: Optional[Tuple[int, ...]] = None
    base_channels: Optional[int] = None
    num_train: Optional[int] = None
    max_test: Optional[int] = None
    num_samples: int = 64
    out: Union[str, Path] = Path("runs/diffusion")

    def __post_init__(self) -> None:
        check_data(self, ("swissroll",) + DATA_SETS)
        check_positive_int(self, "num_samples", *(
            name for name in ("steps", "epochs", "batch_size", "base_channels", "num_train", "max_test")
            if getattr(self, name) is not None))
        if self.lr is not None:
            check_positive_float(self, "lr")
        for name, choices in (("schedule", SCHEDULES), ("loss", WEIGHTINGS), ("net", NETS)):
            if getattr(self, name) is not None:
                check_choice(self, name, choices)
        check_choice(self, "mean_type", MEAN_TYPES)
        check_int_tuple(self, "hidden_dims", allow_none=True)
        if self.net == "unet" and self.data == "swissroll":
            raise ValueError("net='unet' (--net unet) needs images; use data digits or mnist")
        check_common(self)

    def resolved(self) -> "DiffusionConfig":
        """A copy with every setting left as ``None`` set to its per-data default."""
        return dataclasses.replace(self, **{key: value for key, value in DEFAULTS[self.data].items()
                                            if getattr(self, key) is None})


def swiss_roll(n: int, seed: int) -> torch.Tensor:
    """The 2-D swiss roll of :func:`pyro_deepgen.data.toy.make_swiss_roll` halved, i.e.
    sklearn's roll / 10: about unit scale, noise standard deviation 0.05."""
    return make_swiss_roll(n, seed=seed) / 2


def load(config: DiffusionConfig) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, Any]]:
    """``(x_train, x_test, info)`` of a resolved config: images reshaped to the network's event
    shape (``(1, side, side)`` for the UNet, flat for the MLP); ``info`` holds the event shape,
    ``data`` (``continuous`` or ``discrete``), the number of pixel levels and the test split."""
    if config.data == "swissroll":
        n = config.num_train or 10000
        x_train = swiss_roll(n, config.seed)
        x_test = swiss_roll(config.max_test, config.seed + 1)
        split = f"{config.max_test} fresh points (seed {config.seed + 1})"
        return x_train, x_test, {"event_shape": (2,), "data": "continuous", "test_split": split}
    tt = load_train_test(config.data, config.data_root, seed=config.seed, download=config.download)
    x_train, x_test = tt.x_train, tt.x_test
    if config.num_train is not None:
        x_train = x_train[: config.num_train]
    x_test = x_test[: config.max_test]
    side = int(math.isqrt(x_train.shape[1]))
    shape = (1, side, side) if config.net == "unet" else (side * side,)
    info = {"event_shape": shape, "data": "discrete", "image_side": side,
            "num_levels": 17 if config.data == "digits" else 256, "test_split": tt.test_split}
    return x_train.reshape(-1, *shape), x_test.reshape(-1, *shape), info


def build(config: DiffusionConfig, info: Dict[str, Any]) -> GaussianDiffusion:
    """The diffusion model of a resolved config for data described by ``info`` (see :func:`load`)."""
    shape = info["event_shape"]
    if config.net == "unet":
        net = UNet(shape[0], base_channels=config.base_channels, channel_mults=(1, 2, 2))
    else:
        net = TimeMLP(shape[0], config.hidden_dims)
    return GaussianDiffusion(net, shape, num_steps=config.steps, schedule=config.schedule,
                             mean_type=config.mean_type, data=info["data"],
                             num_levels=info.get("num_levels", 256))


def cosine_decay(epochs: int):
    """Learning rate annealed from lr to lr/10 along a half cosine over the epochs."""
    def schedule(optimizer):
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=epochs, eta_min=optimizer.param_groups[0]["lr"] / 10)
    return schedule


def top_half_mask(side: int, event_shape: Tuple[int, ...], device=None) -> torch.Tensor:
    """The inpainting mask of a ``side x side`` image in ``event_shape``: True (known) on the top
    half of the rows, with a leading batch dimension of 1."""
    mask = torch.zeros(1, side, side, dtype=torch.bool, device=device)
    mask[:, : side // 2] = True
    return mask.reshape(1, *event_shape)


def bound_line(report: Dict[str, Any]) -> str:
    r"""The test bound as one quantity with one sign: the upper bound on the negative
    log-likelihood, :math:`-\log p(x_0) \le` ``-test_bound_nats`` nats per data point
    ``= test_bound_bits_per_dim`` bits per dimension (lower is better), with its standard error."""
    return (f"test negative log-likelihood bound: -log p(x) <= {-report['test_bound_nats']:.3f} "
            f"+- {report['test_bound_nats_stderr']:.3f} nats per point = "
            f"{report['test_bound_bits_per_dim']:.4f} bits/dim (lower is better)")


def run(config: DiffusionConfig) -> Dict[str, Any]:
    """Train, evaluate the test bound, write the files to ``config.out``, print the bound and
    return the report (the contents of ``report.json``). The output folder is checked first
    (:func:`~pyro_deepgen.experiments.common.prepare_output`); training checkpoints to
    ``out/checkpoint.pt`` after every epoch, and ``resume`` continues from it with the same
    report as an uninterrupted run."""
    folder = prepare_output(config.out, COMMAND, overwrite=config.overwrite, resume=config.resume)
    config = config.resolved()
    torch.manual_seed(config.seed)
    x_train, x_test, info = load(config)
    x_train, x_test = x_train.to(config.device), x_test.to(config.device)
    diffusion = build(config, info).to(config.device)
    start = time.time()
    history = fit(diffusion.model, diffusion.guide, x_train, loss=DiffusionELBO(config.loss),
                  lr=config.lr, epochs=config.epochs, batch_size=config.batch_size,
                  seed=config.seed, clip_norm=1.0, lr_schedule=cosine_decay(config.epochs),
                  progress=config.progress, **fit_run_arguments(config, COMMAND, folder, AFTER_TRAINING))
    # everything after training starts from the seed: a resumed run reports the same numbers
    torch.manual_seed(config.seed)
    with folder.results() as out:
        train_seconds = time.time() - start
        diffusion.eval()
        # the bound two ways: one joint forward trajectory per point (= a Trace_ELBO particle;
        # the headline, usually the smaller variance) and the sum of closed-form KL terms
        bound = diffusion.bound(x_test, estimator="trajectory")
        kl = diffusion.bound(x_test, estimator="kl")
        sqrt_n = math.sqrt(len(x_test))
        report = {
            "test_bound_nats": bound.nats.mean().item(),
            "test_bound_bits_per_dim": bound.bits_per_dim.mean().item(),
            "test_bound_nats_stderr": (bound.nats.std() / sqrt_n).item(),
            "test_bound_nats_kl": kl.nats.mean().item(),
            "test_bound_bits_per_dim_kl": kl.bits_per_dim.mean().item(),
            "test_bound_nats_kl_stderr": (kl.nats.std() / sqrt_n).item(),
            "num_test": len(x_test),
            "num_train": len(x_train),
            "test_split": info["test_split"],
            "bound_terms_mean": kl.terms.mean(0).tolist(),  # L_0, L_1, ..., L_T
            "train_loss": history.loss,
            "epochs": history.epochs,
            "train_seconds": train_seconds,
            "settings": settings(config, COMMAND),
            **resume_report(history),
        }
        if info["data"] == "continuous":
            samples, path = diffusion.sample(max(config.num_samples, 1000), batch_size=1000,
                                             progress=config.progress, trajectory=True)
            T = diffusion.num_steps
            steps = (0, T // 2, T)
            forward = {t: x_test if t == 0 else diffusion.q_sample(x_test, t) for t in steps}
            reverse = {t: path[t] for t in steps}
            save_diffusion_trajectory(out / "trajectory.png", forward, reverse,
                                      title=f"Swiss roll, T = {T} (Sohl-Dickstein et al. 2015, Fig. 1)")
        else:
            side = info["image_side"]
            samples = diffusion.sample(config.num_samples, batch_size=256, progress=config.progress)
            save_image_grid(samples.reshape(len(samples), -1), out / "samples.png",
                            title=f"{config.data}: diffusion samples (T={config.steps})",
                            caption=f"{len(samples)} draws of the reverse process, row by row")
            shown = x_test[:16]
            mask = top_half_mask(side, info["event_shape"], config.device)
            filled = diffusion.inpaint(shown, mask, progress=config.progress)
            rows = torch.cat([shown, torch.where(mask, shown, torch.full_like(shown, 0.5)), filled])
            save_image_grid(rows.reshape(len(rows), -1), out / "inpainting.png", ncol=len(shown),
                            title="inpainting: the lower half filled in from the known top half",
                            row_labels=("test image", "known half", "inpainted"),
                            caption="each column: one test image")
        report["seconds"] = time.time() - start
        write_report(out, report)
    print(bound_line(report))
    print(f"results in {config.out}")
    return report


def load_sampler(run_dir: Union[str, Path], device: Union[str, torch.device] = "cpu") -> Callable[[int], torch.Tensor]:
    """The trained diffusion model of a finished image run folder as ``sample(n) -> (n, D)``
    in [0, 1]: ancestral samples of the reverse chain (on the pixel grid), flattened."""
    import types

    from ..train import load_checkpoint
    from .common import read_run_report

    s = read_run_report(run_dir, COMMAND)["settings"]
    if s["data"] == "swissroll":
        raise ValueError(f"run folder {run_dir} holds a swissroll diffusion run: only image runs have a sampler to "
                         "score")
    side = 8 if s["data"] == "digits" else 28
    info = {"event_shape": (1, side, side) if s["net"] == "unet" else (side * side,), "data": "discrete",
            "num_levels": 17 if s["data"] == "digits" else 256}
    config = types.SimpleNamespace(**{**s, "hidden_dims": tuple(s["hidden_dims"] or ())})
    diffusion = build(config, info)
    diffusion.load_state_dict(load_checkpoint(Path(run_dir) / "checkpoint.pt", map_location=device)["modules"][0])
    diffusion.to(device).eval()
    return lambda n: diffusion.sample(n, batch_size=256, progress=False).reshape(n, -1)

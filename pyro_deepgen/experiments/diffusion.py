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
import inspect
import math
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple, Union

import torch

from ..data import load_train_test
from ..data.toy import make_swiss_roll
from ..infer import DiffusionELBO
from ..infer.diffusion_elbo import WEIGHTINGS
from ..models import GaussianDiffusion, VariationalDiffusion
from ..models.diffusion import MEAN_TYPES
from ..models.diffusion_samplers import ddim_sample, inpaint, ode_sample, ode_variational_bound
from ..models.vdm import TERM_NAMES
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
AFTER_TRAINING = ("max_test", "num_samples", "sampler", "sample_steps")
#: The samplers of the figures (``--sampler``): the model's ancestral chain, DDIM (deterministic,
#: eta = 0) or the probability-flow ODE (continuous-time models; also the ODE log-likelihood).
SAMPLERS = ("ancestral", "ddim", "ode")
#: Default ``sample_steps`` of DDIM and of the ODE (fixed RK4 steps, uniform in t).
SAMPLE_STEPS = {"ddim": 50, "ode": 50}
#: The integrator of the probability-flow ODE (fixed steps uniform in t).
ODE_METHOD = "rk4"
#: The number of test points (the first ones) whose ODE log-likelihood is reported (each costs
#: 4 network calls and 4 vector-Jacobian products per RK4 step).
ODE_MAX_TEST = 200
NETS = ("mlp", "unet")
#: The training objectives (``--objective``): ``ddpm`` (GaussianDiffusion, learned variances,
#: the hybrid loss, uniform t), ``improved`` (the same with Nichol & Dhariwal's importance
#: sampling of t) and ``vdm`` (:class:`~pyro_deepgen.models.VariationalDiffusion`, continuous time).
OBJECTIVES = ("ddpm", "improved", "vdm")
#: Monte Carlo draws of (t, eps) per test point for the VDM bound.
VDM_BOUND_SAMPLES = 4
#: Steps of the VDM's ancestral sampler for the figures.
VDM_SAMPLE_STEPS = 256

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
#: the per-data defaults of ``objective``, and the settings of ``--objective vdm`` that differ
#: from :data:`DEFAULTS` (MNIST: sized to about 15 minutes on two CPU cores)
OBJECTIVE_DEFAULTS: Dict[str, str] = {"swissroll": "ddpm", "digits": "ddpm", "mnist": "vdm"}
VDM_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "swissroll": dict(epochs=80, lr=2e-3),
    "digits": dict(epochs=25, lr=2e-3),
    "mnist": dict(epochs=12, lr=2e-3),
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
    :param objective: ``ddpm``, ``improved`` or ``vdm`` (:data:`OBJECTIVES`; default ``vdm``
        for mnist, ``ddpm`` otherwise). ``vdm`` ignores ``steps``, ``schedule``, ``loss`` and
        ``mean_type`` (continuous time, learned schedule, trained on the bound).
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
    :param sampler: ``ancestral`` (default), ``ddim`` (deterministic DDIM, images only) or
        ``ode`` (the probability-flow ODE, ``objective="vdm"`` only; also reports the ODE
        log-likelihood of the first :data:`ODE_MAX_TEST` test points), for the samples and the
        inpainting figure.
    :param sample_steps: steps of DDIM or the ODE (default :data:`SAMPLE_STEPS`; for a
        discrete-time model at most T).

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
    objective: Optional[str] = None
    loss: Optional[str] = None
    mean_type: str = "v"
    net: Optional[str] = None
    hidden_dims: Optional[Tuple[int, ...]] = None
    base_channels: Optional[int] = None
    num_train: Optional[int] = None
    max_test: Optional[int] = None
    num_samples: int = 64
    sampler: str = "ancestral"
    sample_steps: Optional[int] = None
    out: Union[str, Path] = Path("runs/diffusion")

    def __post_init__(self) -> None:
        check_data(self, ("swissroll",) + DATA_SETS)
        check_positive_int(self, "num_samples", *(
            name for name in ("steps", "epochs", "batch_size", "base_channels", "num_train", "max_test")
            if getattr(self, name) is not None))
        if self.lr is not None:
            check_positive_float(self, "lr")
        for name, choices in (("schedule", SCHEDULES), ("loss", WEIGHTINGS), ("net", NETS),
                              ("objective", OBJECTIVES)):
            if getattr(self, name) is not None:
                check_choice(self, name, choices)
        check_choice(self, "mean_type", MEAN_TYPES)
        check_int_tuple(self, "hidden_dims", allow_none=True)
        if self.objective == "vdm" and self.data == "swissroll":
            raise ValueError("objective='vdm' (--objective vdm) needs discrete data; use data digits or mnist")
        if self.net == "unet" and self.data == "swissroll":
            raise ValueError("net='unet' (--net unet) needs images; use data digits or mnist")
        check_choice(self, "sampler", SAMPLERS)
        if self.sample_steps is not None:
            check_positive_int(self, "sample_steps")
        if self.sampler != "ancestral" and self.data == "swissroll":
            raise ValueError(f"--sampler {self.sampler} needs images (the swiss roll figure shows the ancestral "
                             "chain); use --data digits or mnist")
        objective = self.objective or OBJECTIVE_DEFAULTS[self.data]
        if self.sampler == "ode" and objective != "vdm":
            raise ValueError(f"--sampler ode needs the continuous-time objective (--objective vdm), got objective "
                             f"{objective!r}; use --sampler ddim for a discrete-time model")
        check_common(self)

    def resolved(self) -> "DiffusionConfig":
        """A copy with every setting left as ``None`` set to its per-data default."""
        objective = self.objective or OBJECTIVE_DEFAULTS[self.data]
        defaults = dict(DEFAULTS[self.data], objective=objective)
        if objective == "vdm":
            defaults.update(VDM_DEFAULTS[self.data])
        return dataclasses.replace(self, **{key: value for key, value in defaults.items()
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


def build(config: DiffusionConfig, info: Dict[str, Any],
          x_train: Optional[torch.Tensor] = None) -> Union[GaussianDiffusion, VariationalDiffusion]:
    """The diffusion model of a resolved config for data described by ``info`` (see :func:`load`).

    For ``objective="vdm"`` on images the model's base denoiser is the per-pixel histogram of
    ``x_train`` (Laplace-smoothed; without ``x_train``, e.g. when a checkpoint is loaded next,
    uniform logits of the right shape are used)."""
    shape = info["event_shape"]
    if getattr(config, "objective", "ddpm") == "vdm":
        return build_vdm(config, info, x_train)
    if config.net == "unet":
        net = UNet(shape[0], base_channels=config.base_channels, channel_mults=(1, 2, 2))
    else:
        net = TimeMLP(shape[0], config.hidden_dims)
    extra = {}
    if getattr(config, "objective", "ddpm") == "improved":
        # Nichol & Dhariwal's importance sampling of t, where GaussianDiffusion offers it
        if "t_sampling" in inspect.signature(GaussianDiffusion).parameters:
            extra["t_sampling"] = "importance"
    return GaussianDiffusion(net, shape, num_steps=config.steps, schedule=config.schedule,
                             mean_type=config.mean_type, data=info["data"],
                             num_levels=info.get("num_levels", 256), **extra)


def build_vdm(config: DiffusionConfig, info: Dict[str, Any],
              x_train: Optional[torch.Tensor] = None) -> VariationalDiffusion:
    """The :class:`~pyro_deepgen.models.VariationalDiffusion` of a resolved config: images only,
    a UNet on the noisy image and its Fourier features, the per-pixel histogram as base."""
    if info["data"] != "discrete":
        raise ValueError("objective='vdm' (--objective vdm) needs discrete data: use --data digits or mnist")
    shape = tuple(info["event_shape"])
    levels = info.get("num_levels", 256)
    channels = VariationalDiffusion.network_input_size(shape[0])
    if config.net == "unet":
        net = UNet(channels, base_channels=config.base_channels, channel_mults=(1, 2, 2), out_channels=shape[0])
    else:
        net = TimeMLP(channels, config.hidden_dims, out_dims=shape[0])
    if x_train is not None:
        base = VariationalDiffusion.histogram_logits(x_train, levels)
    else:
        base = torch.zeros(*shape, levels)
    return VariationalDiffusion(net, shape, num_levels=levels, base_logits=base)


def histogram_bits_per_dim(x_train: torch.Tensor, x_test: torch.Tensor, num_levels: int) -> float:
    """Bits per dimension of the test data under the per-dimension 256-way (``num_levels``-way)
    categorical fitted on the training data, Laplace-smoothed (add one to every count)."""
    logits = VariationalDiffusion.histogram_logits(x_train.double(), num_levels)
    k = torch.round(x_test.double() * (num_levels - 1)).long()
    logp = logits.unsqueeze(0).expand(len(k), *logits.shape).gather(-1, k.unsqueeze(-1))
    return (-logp.sum() / (k.numel() * math.log(2))).item()


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


def sample_steps(config: DiffusionConfig, diffusion: Any) -> int:
    """The steps of ``config.sampler`` (``ddim`` or ``ode``): ``config.sample_steps``, else
    :data:`SAMPLE_STEPS` (at most T for a discrete-time model)."""
    steps = config.sample_steps or SAMPLE_STEPS[config.sampler]
    if isinstance(diffusion, GaussianDiffusion):
        if config.sample_steps is not None and steps > diffusion.num_steps:
            raise ValueError(f"--sample-steps {steps} exceeds the model's {diffusion.num_steps} steps (--steps)")
        steps = min(steps, diffusion.num_steps)
    return steps


def fast_sample(diffusion: Any, config: DiffusionConfig, num_samples: int = 0,
                known: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``num_samples`` draws of ``config.sampler`` (``ddim`` with eta = 0, or ``ode``), or with
    ``known`` and ``mask`` the inpainting of ``known`` (:mod:`~pyro_deepgen.models.diffusion_samplers`)."""
    steps = sample_steps(config, diffusion)
    if known is not None:
        return inpaint(diffusion, known, mask, sampler=config.sampler, num_steps=steps, method=ODE_METHOD,
                       batch_size=256, progress=config.progress)
    if config.sampler == "ddim":
        return ddim_sample(diffusion, num_samples, steps, batch_size=256, progress=config.progress)
    return ode_sample(diffusion, num_samples, steps, method=ODE_METHOD, batch_size=256, progress=config.progress)


def ode_report(diffusion: Any, x_test: torch.Tensor, config: DiffusionConfig, info: Dict[str, Any]) -> Dict[str, Any]:
    r"""The probability-flow ODE log-likelihood of the first :data:`ODE_MAX_TEST` test points,
    in nats per point (a log-likelihood lower bound: higher is better) and bits per dimension
    (positive, lower is better), with standard errors:
    :func:`~pyro_deepgen.models.diffusion_samplers.ode_variational_bound` (the ODE's density as
    the prior of :math:`z_0` with the VDM's own encoder and decoder), one draw of :math:`z_0` and
    one Rademacher probe per point."""
    x = x_test[:ODE_MAX_TEST]
    steps = sample_steps(config, diffusion)
    start = time.time()
    nats = ode_variational_bound(diffusion, x, steps, num_probes=1, method=ODE_METHOD, batch_size=100,
                                 progress=config.progress)
    dims = x[0].numel()
    bits = -nats / (dims * math.log(2))
    sqrt_n = math.sqrt(len(x))
    return {
        "ode_log_likelihood_nats": nats.mean().item(),
        "ode_log_likelihood_nats_stderr": (nats.std() / sqrt_n).item() if len(x) > 1 else float("nan"),
        "ode_bits_per_dim": bits.mean().item(),
        "ode_bits_per_dim_stderr": (bits.std() / sqrt_n).item() if len(x) > 1 else float("nan"),
        "ode_num_test": len(x),
        "ode_steps": steps,
        "ode_method": ODE_METHOD,
        "ode_seconds": time.time() - start,
        "ode_note": ("log P(x) >= E_q(z0|x)[log p(x|z0) + log p_ODE(z0) - log q(z0|x)]: the probability-flow "
                     "ODE's density of z_0 (instantaneous change of variables, Hutchinson trace with one "
                     "Rademacher probe, fixed RK4 steps uniform in t) with the VDM's own encoder "
                     "q(z0|x) = N(alpha_0 f, sigma_0^2) and discrete decoder (variational dequantization), one "
                     "draw of z_0 per point; the ODE model differs from the diffusion bound's reverse chain"),
    }


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
    diffusion = build(config, info, x_train).to(config.device)
    vdm = config.objective == "vdm"
    start = time.time()
    history = fit(diffusion.model, diffusion.guide, x_train, loss=DiffusionELBO("elbo" if vdm else config.loss),
                  lr=config.lr, epochs=config.epochs, batch_size=config.batch_size,
                  seed=config.seed, clip_norm=1.0, lr_schedule=cosine_decay(config.epochs),
                  progress=config.progress, **fit_run_arguments(config, COMMAND, folder, AFTER_TRAINING))
    # everything after training starts from the seed: a resumed run reports the same numbers
    torch.manual_seed(config.seed)
    with folder.results() as out:
        train_seconds = time.time() - start
        diffusion.eval()
        sqrt_n = math.sqrt(len(x_test))
        if vdm:
            # the continuous-time bound, VDM_BOUND_SAMPLES draws of (t, eps) per test point
            bound = diffusion.bound(x_test, num_samples=VDM_BOUND_SAMPLES, batch_size=250)
            extra = {"bound_terms_mean": dict(zip(TERM_NAMES, bound.terms.mean(0).tolist())),
                     "gamma_0": diffusion.schedule.gamma_0.item(),
                     "gamma_1": diffusion.gamma(torch.ones(1, device=x_test.device)).item()}
        else:
            # the bound two ways: one joint forward trajectory per point (= a Trace_ELBO particle;
            # the headline, usually the smaller variance) and the sum of closed-form KL terms
            bound = diffusion.bound(x_test, estimator="trajectory")
            kl = diffusion.bound(x_test, estimator="kl")
            extra = {"test_bound_nats_kl": kl.nats.mean().item(),
                     "test_bound_bits_per_dim_kl": kl.bits_per_dim.mean().item(),
                     "test_bound_nats_kl_stderr": (kl.nats.std() / sqrt_n).item(),
                     "bound_terms_mean": kl.terms.mean(0).tolist()}  # L_0, L_1, ..., L_T
        if info["data"] == "discrete":
            extra["histogram_bits_per_dim"] = histogram_bits_per_dim(x_train.cpu(), x_test.cpu(),
                                                                     info["num_levels"])
        report = {
            "objective": config.objective,
            "test_bound_nats": bound.nats.mean().item(),
            "test_bound_bits_per_dim": bound.bits_per_dim.mean().item(),
            "test_bound_nats_stderr": (bound.nats.std() / sqrt_n).item(),
            "test_bound_bits_per_dim_stderr": (bound.bits_per_dim.std() / sqrt_n).item(),
            **extra,
            "num_test": len(x_test),
            "num_train": len(x_train),
            "test_split": info["test_split"],
            "train_loss": history.loss,
            "epochs": history.epochs,
            "train_seconds": train_seconds,
            "settings": settings(config, COMMAND),
            **resume_report(history),
        }
        if config.sampler == "ode":
            report.update(ode_report(diffusion, x_test, config, info))
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
            steps = VDM_SAMPLE_STEPS if vdm else config.steps
            sample_start = time.time()
            if config.sampler != "ancestral":
                steps = sample_steps(config, diffusion)
                samples = fast_sample(diffusion, config, config.num_samples)
            elif vdm:
                samples = diffusion.sample(config.num_samples, num_steps=steps, batch_size=256)
            else:
                samples = diffusion.sample(config.num_samples, batch_size=256, progress=config.progress)
            save_image_grid(samples.reshape(len(samples), -1), out / "samples.png",
                            title=f"{config.data}: {config.objective} samples ({config.sampler}, {steps} steps)",
                            caption=f"{len(samples)} draws of the reverse process, row by row")
            shown = x_test[:16]
            mask = top_half_mask(side, info["event_shape"], config.device)
            report["sample_seconds"] = time.time() - sample_start
            if config.sampler != "ancestral":
                filled = fast_sample(diffusion, config, known=shown, mask=mask)
            elif vdm:
                filled = diffusion.sample(len(shown), num_steps=steps, known=shown, mask=mask)
            else:
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
    config = types.SimpleNamespace(**{"objective": "ddpm", **s, "hidden_dims": tuple(s["hidden_dims"] or ())})
    diffusion = build(config, info)
    diffusion.load_state_dict(load_checkpoint(Path(run_dir) / "checkpoint.pt", map_location=device)["modules"][0])
    diffusion.to(device).eval()
    if config.objective == "vdm":
        return lambda n: diffusion.sample(n, num_steps=VDM_SAMPLE_STEPS, batch_size=256).reshape(n, -1)
    return lambda n: diffusion.sample(n, batch_size=256, progress=False).reshape(n, -1)

r"""Train a VAE (Kingma & Welling 2014) on the 8x8 digits or MNIST and evaluate it.

The model is :class:`~pyro_deepgen.models.VAE`; the guide is its diagonal Gaussian
:math:`q(z|x)` or an :class:`~pyro_deepgen.guides.AmortizedFlowGuide` (any family of
:data:`~pyro_deepgen.distributions.transforms.registry.FLOWS` on top of it). The training objective is
one of :data:`ELBOS`. The evaluation protocol:

- train and test ELBO, each averaged over 10 draws of :math:`z \sim q(z|x)`;
- the test log-likelihood :math:`\log \frac1K \sum_{k=1}^K p(x, z_k) / q(z_k|x)`,
  :math:`z_k \sim q(z|x)`, with :math:`K` = ``eval_samples`` (the IWAE bound of Burda et al.
  2016, a lower bound on :math:`\log p(x)` that tightens as :math:`K` grows);
- the number of active units (Burda et al. 2016: latent dimensions whose posterior mean varies
  over the data, :math:`\mathrm{Cov}_x \mathbb E_q[z_d] > 10^{-2}`);
- the Pareto-smoothed importance-sampling :math:`\hat k` of those :math:`K` weights per test
  point (Vehtari et al. 2024; :math:`\hat k > 0.7`: the estimate is unreliable), when
  :math:`K \ge 21`.

:func:`run` writes ``report.json``, ``checkpoint.pt``, ``samples.png``,
``reconstructions.png``, ``loss.png`` and, when ``z_dim`` is 2, ``manifold.png`` to
``config.out``. ``pyro-deepgen vae`` calls it.

**References**: D. P. Kingma, M. Welling, *Auto-Encoding Variational Bayes*, ICLR 2014,
arXiv:1312.6114. Y. Burda, R. Grosse, R. Salakhutdinov, *Importance Weighted Autoencoders*,
ICLR 2016, arXiv:1509.00519. A. Vehtari et al., *Pareto Smoothed Importance Sampling*, JMLR
2024, arXiv:1507.02646.
"""
import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple, Union

import pyro
import torch
from pyro.infer import ELBO, Trace_ELBO

from .. import evaluate
from ..distributions.transforms import FLOWS
from ..infer import TraceHVI_ELBO, TraceIWAE_ELBO, TraceVIMCO_ELBO
from ..infer.util import log_mean_exp
from ..models import VAE
from ..plotting import image_shape, save_image_grid, save_loss_curve, save_manifold
from ..train import History, fit
from .common import (
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

COMMAND = "vae"
#: Settings used only after training, which a resumed run may change (``--resume-override``).
AFTER_TRAINING = ("eval_samples",)
PSIS_MIN_SAMPLES = 21  # PSIS fits the largest ceil(min(S/5, 3 sqrt(S))) >= 5 weights
BINARIZATIONS = ("none", "threshold", "stochastic", "dynamic")


def _trace(particles: int, hvi_steps: int) -> ELBO:
    # the VAE has one plate, "data": no need to let Pyro guess (and log) it
    return Trace_ELBO(num_particles=particles, vectorize_particles=True, max_plate_nesting=1)


def _iwae(estimator: str) -> Callable[[int, int], ELBO]:
    def make(particles: int, hvi_steps: int) -> ELBO:
        return TraceIWAE_ELBO(num_particles=particles, estimator=estimator)

    return make


def _vimco(particles: int, hvi_steps: int) -> ELBO:
    return TraceVIMCO_ELBO(num_particles=particles)  # VIMCO's baseline needs K >= 2


def _hvi(particles: int, hvi_steps: int) -> ELBO:
    return TraceHVI_ELBO(num_steps=hvi_steps, num_particles=particles)


#: The training objectives by name, ``factory(particles, hvi_steps) -> ELBO``. ``trace`` is
#: Pyro's :class:`~pyro.infer.Trace_ELBO` (vectorized particles); ``iwae``, ``stl`` and
#: ``dreg`` the importance-weighted bound with its three gradient estimators; ``vimco`` the
#: score-function bound with leave-one-out baselines (at least 2 particles); ``hvi``
#: Hamiltonian variational inference with ``hvi_steps`` leapfrog steps.
ELBOS: Dict[str, Callable[[int, int], ELBO]] = {
    "trace": _trace,
    "iwae": _iwae("iwae"),
    "stl": _iwae("stl"),
    "dreg": _iwae("dreg"),
    "vimco": _vimco,
    "hvi": _hvi,
}
#: The least ``particles`` of the objectives that need more than one (a leave-one-out baseline
#: is built from the other particles); the objective always gets the ``particles`` asked for.
MIN_PARTICLES: Dict[str, int] = {"vimco": 2}
#: The guides q(z|x) by name, the VAE's diagonal Gaussian or a normalizing flow of the registry on top of it.
GUIDES: Tuple[str, ...] = ("diagonal",) + tuple(FLOWS)


def make_elbo(name: str, particles: int = 1, hvi_steps: int = 4) -> ELBO:
    """The training objective called ``name`` (a key of :data:`ELBOS`)."""
    try:
        factory = ELBOS[name]
    except KeyError:
        raise ValueError(f"elbo={name!r} is not known; use one of {', '.join(ELBOS)}") from None
    return factory(particles, hvi_steps)


@dataclasses.dataclass
class VAEConfig(ResumableConfig):
    """The settings of :func:`run`, one per option of ``pyro-deepgen vae`` (same defaults).

    :param data: ``digits`` (scikit-learn's 8x8 digits, embedded) or ``mnist`` (the IDX files in
        ``data_root``).
    :param data_root: folder with the MNIST IDX files; the test set is the t10k files when
        present, else a seeded 10% hold-out.
    :param download: fetch the missing official MNIST files into ``data_root`` (checked by MD5).
    :param binarize: ``none``, ``threshold``, ``stochastic`` or ``dynamic`` (a fresh Bernoulli
        draw of every image each epoch).
    :param z_dim: latent size.
    :param hidden: hidden layer sizes of encoder and decoder (and of a flow guide's networks).
    :param epochs: training epochs.
    :param batch_size: minibatch size.
    :param lr: Adam step size.
    :param elbo: the training objective, a key of :data:`ELBOS`.
    :param particles: particles per data point for the multi-sample objectives (at least
        :data:`MIN_PARTICLES` of the objective: 2 for ``vimco``).
    :param hvi_steps: leapfrog steps of ``elbo="hvi"``.
    :param guide: ``diagonal`` or a flow family of :data:`GUIDES`.
    :param flow_depth: number of flow layers K of a flow guide.
    :param eval_samples: importance samples K of the test log-likelihood.

    The shared fields (seed, device, out, progress, overwrite, resume, resume_override) come from
    :class:`~pyro_deepgen.experiments.common.ResumableConfig`.
    """

    data: str = "digits"
    data_root: Optional[str] = None
    download: bool = False
    binarize: str = "dynamic"
    z_dim: int = 50
    hidden: Tuple[int, ...] = (200, 200)
    epochs: int = 50
    batch_size: int = 100
    lr: float = 1e-3
    elbo: str = "trace"
    particles: int = 1
    hvi_steps: int = 4
    guide: str = "diagonal"
    flow_depth: int = 4
    eval_samples: int = 5000
    out: Union[str, Path] = Path("runs/vae")

    def __post_init__(self) -> None:
        check_data(self)
        check_choice(self, "binarize", BINARIZATIONS)
        check_positive_int(self, "z_dim", "epochs", "batch_size", "particles", "hvi_steps",
                           "flow_depth", "eval_samples")
        check_int_tuple(self, "hidden")
        check_positive_float(self, "lr")
        check_choice(self, "elbo", ELBOS)
        least = MIN_PARTICLES.get(self.elbo, 1)
        if self.particles < least:
            raise ValueError(f"particles (--particles) must be at least {least} for elbo={self.elbo!r} "
                             f"(--elbo {self.elbo}): its leave-one-out baseline is built from the other "
                             f"particles; got {self.particles}")
        check_choice(self, "guide", GUIDES)
        check_common(self)


def make_guide(config: VAEConfig, x_dim: int, vae: VAE):
    """``(guide, guide_module)``: the VAE's own diagonal guide (no extra module) or an amortized
    flow guide (a module of its own)."""
    if config.guide == "diagonal":
        return vae.guide, None
    from ..guides import AmortizedFlowGuide

    guide = AmortizedFlowGuide(x_dim, config.z_dim, flow=config.guide, depth=config.flow_depth,
                               hidden_dims=config.hidden)
    return guide, guide


def run(config: VAEConfig) -> Dict[str, Any]:
    """Train, evaluate (see the module doc), write the files to ``config.out``, print the summary
    and return the report (the contents of ``report.json``). The output folder is checked first
    (:func:`~pyro_deepgen.experiments.common.prepare_output`); training checkpoints to
    ``out/checkpoint.pt`` after every epoch, and ``resume`` continues from it with the same
    report as an uninterrupted run."""
    folder = prepare_output(config.out, COMMAND, overwrite=config.overwrite, resume=config.resume)
    binarize = None if config.binarize == "none" else config.binarize
    data = load_data(config, binarize)
    device = config.device
    x_train, x_test = data.x_train.to(device), data.x_test.to(device)
    x_dim = x_train.shape[1]

    pyro.set_rng_seed(config.seed)
    pyro.clear_param_store()
    vae = VAE(x_dim, config.z_dim, config.hidden).to(device)
    guide, guide_module = make_guide(config, x_dim, vae)
    if guide_module is not None:
        guide_module.to(device)
    elbo = make_elbo(config.elbo, config.particles, config.hvi_steps)

    t0 = time.time()
    history = fit(
        vae.model, guide, x_train, loss=elbo, module=guide_module, lr=config.lr,
        epochs=config.epochs, batch_size=config.batch_size, seed=config.seed,
        binarize="dynamic" if binarize == "dynamic" else None, progress=config.progress,
        **fit_run_arguments(config, COMMAND, folder, AFTER_TRAINING),
    )
    train_seconds = time.time() - t0
    report = evaluate_vae(vae, guide, x_train, x_test, config.eval_samples)
    report.update(
        epochs=history.epochs,
        seconds=time.time() - t0,
        train_seconds=train_seconds,
        train_loss=history.loss,
        test_split=data.test_split,
        num_train=int(x_train.shape[0]),
        num_test=int(x_test.shape[0]),
        settings=settings(config, COMMAND),
        **resume_report(history),
    )
    with folder.results() as out:
        write_report(out, report)
        write_figures(vae, x_test, history, out)
    print_summary(report)
    print(wrote_line(config.out, folder.files))
    return report


@torch.no_grad()
def evaluate_vae(vae: VAE, guide, x_train: torch.Tensor, x_test: torch.Tensor,
                 num_samples: int) -> Dict[str, Any]:
    """The evaluation protocol of the module doc, from ``pyro.set_rng_seed(0)``."""
    from ..diagnostics import psis_khat

    pyro.set_rng_seed(0)
    train_elbo = evaluate.elbo(vae.model, guide, x_train, num_samples=10).mean().item()
    test_elbo = evaluate.elbo(vae.model, guide, x_test, num_samples=10).mean().item()
    log_w = evaluate.log_importance_weights(vae.model, guide, x_test, num_samples=num_samples)
    ll = log_mean_exp(log_w, 0)
    khat = psis_khat(log_w) if num_samples >= PSIS_MIN_SAMPLES else None
    return {
        "train_elbo": train_elbo,
        "test_elbo": test_elbo,
        "test_log_likelihood": ll.mean().item(),
        "eval_samples": num_samples,
        "active_units": evaluate.active_units(vae.model, guide, x_test),
        "khat_median": None if khat is None else khat.median().item(),
        "khat_max": None if khat is None else khat.max().item(),
        "khat_fraction_above_0.7": None if khat is None else (khat > 0.7).float().mean().item(),
    }


def write_figures(vae: VAE, x_test: torch.Tensor, history: History, out: Path) -> None:
    """``samples.png``, ``reconstructions.png``, ``loss.png`` and (2-D latents) ``manifold.png``."""
    shape = image_shape(vae.x_dim)
    save_image_grid(vae.sample(64), out / "samples.png", shape, title="samples E[x|z], z ~ p(z)",
                    caption="64 draws of z from the prior, decoded to the Bernoulli means")
    x = x_test[:32]
    pairs = torch.stack([x, vae.reconstruct(x)], dim=1).reshape(-1, vae.x_dim)
    save_image_grid(pairs, out / "reconstructions.png", shape, ncol=8,
                    title="test images (data) and their reconstructions (recon)",
                    column_labels=("data", "recon"),
                    caption="columns alternate: a test image x, then its reconstruction E[x|z], z = mean of q(z|x)")
    save_loss_curve(history.loss, out / "loss.png", history.val, ylabel="-ELBO per data point")
    if vae.z_dim == 2:
        p = next(vae.parameters())
        save_manifold(vae.mean, out / "manifold.png", shape=shape, device=p.device, dtype=p.dtype)


def print_summary(report: Dict[str, Any]) -> None:
    """The summary table of a report: ELBOs, log-likelihood, active units, k-hat, split, time."""
    rows = [
        ("train ELBO", f"{report['train_elbo']:.2f}"),
        ("test ELBO", f"{report['test_elbo']:.2f}"),
        (f"test log p(x) (K={report['eval_samples']})", f"{report['test_log_likelihood']:.2f}"),
        ("active units", f"{report['active_units']}"),
        ("k-hat median / max", "n/a (needs --eval-samples >= 21)" if report["khat_max"] is None
         else f"{report['khat_median']:.2f} / {report['khat_max']:.2f}"),
        ("test split", report["test_split"]),
        ("epochs / seconds", f"{report['epochs']} / {report['seconds']:.1f}"),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))


def load_sampler(run_dir: Union[str, Path], device: Union[str, torch.device] = "cpu",
                 mean: bool = True) -> Callable[[int], torch.Tensor]:
    """The trained VAE of a finished run folder as ``sample(n) -> (n, D)`` in [0, 1]: the
    decoder means E[x|z] of z ~ p(z) (``mean=False``: Bernoulli draws of x). The VAE is the last
    module of the run's ``checkpoint.pt`` (after a flow guide's)."""
    from ..train import load_checkpoint
    from .common import read_run_report

    s = read_run_report(run_dir, COMMAND)["settings"]
    state = load_checkpoint(Path(run_dir) / "checkpoint.pt", map_location=device)["modules"][-1]
    vae = VAE(state["encoder.net.0.weight"].shape[1], s["z_dim"], tuple(s["hidden"]))
    vae.load_state_dict(state)
    vae.to(device).eval()
    return lambda n: vae.sample(n, mean=mean)

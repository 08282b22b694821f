r"""Adversarial training of an implicit Pyro model (a GAN's generator) with a discriminator.

A generator is any Pyro program of the shape

.. code-block:: python

    def model(num_samples, *labels):
        with pyro.plate("data", num_samples):
            z = pyro.sample("z", dist.Normal(0, 1).expand([z_dim]).to_event(1))
            pyro.deterministic("x", G(z, *labels), event_dim=1)

Its density :math:`p_g(x)` has no closed form, so there is no likelihood and no ELBO; the model is
trained against a discriminator (critic) :math:`D_\phi` instead, which sees real data
:math:`x\sim p_\text{data}` and generated :math:`\tilde x = G(z)`. :class:`AdversarialLoss` reads
:math:`\tilde x` from a :func:`poutine.trace <pyro.poutine.trace>` of the model (the site ``site``,
default ``"x"``), so the model stays an ordinary Pyro program (Pyro itself has no adversarial
inference: issue #1164, "no immediate plans").

With :math:`\ell = D_\phi(x)` the discriminator's output (a logit; :math:`D = \sigma(\ell)`) and
:math:`\tilde\ell = D_\phi(G(z))`, the objectives (losses to minimize, means over the batch) are:

- ``minimax``: discriminator :math:`\operatorname{softplus}(-\ell) + \operatorname{softplus}(\tilde\ell)
  = -\log D(x) - \log(1 - D(G(z)))`; generator :math:`-\operatorname{softplus}(\tilde\ell) =
  \log(1 - D(G(z)))`;
- ``nonsaturating``: discriminator as minimax; generator :math:`\operatorname{softplus}(-\tilde\ell)
  = -\log D(G(z))`;
- ``wgan-gp``: critic :math:`\tilde\ell - \ell + \lambda(\lVert\nabla_{\hat x}D_\phi(\hat x)\rVert_2
  - 1)^2`; generator :math:`-\tilde\ell`;
- ``hinge``: discriminator :math:`\max(0, 1 - \ell) + \max(0, 1 + \tilde\ell)`; generator
  :math:`-\tilde\ell`.

The minimax game is :math:`\min_G\max_D\ \mathbb E_{p_\text{data}}\log D(x) + \mathbb E_{p(z)}
\log(1-D(G(z)))`. For a fixed generator its maximizing discriminator is (Goodfellow et al. 2014,
Prop. 1)

.. math:: D^*(x) = \frac{p_\text{data}(x)}{p_\text{data}(x) + p_g(x)},\qquad
          \ell^*(x) = \log p_\text{data}(x) - \log p_g(x),

at which the game's value is :math:`-\log 4 + 2\,\mathrm{JSD}(p_\text{data}\,\|\,p_g)`. The
non-saturating generator loss has the same fixed points but strong gradients where :math:`D`
rejects the samples. WGAN-GP (Gulrajani et al. 2017) trains a critic towards the Kantorovich
potential of the Wasserstein-1 distance, the Lipschitz constraint held softly by a penalty at
:math:`\hat x = \epsilon x + (1-\epsilon)\tilde x`, :math:`\epsilon\sim U(0, 1)` per pair. The hinge
loss is that of Miyato et al. (2018).

**Training.** ``loss(model, guide, *batch)`` is a loss callable for
:func:`pyro_deepgen.train.fit`: it takes ``n_critic`` discriminator steps with its own Adam
optimizer, then returns the generator loss (summed over the batch) whose ``backward`` and step
``fit`` takes with the generator's optimizer. The minibatch of real data is split into
``n_critic`` chunks, one per discriminator step (so each critic step sees fresh real data, as in
Gulrajani et al.), each against as many fresh generated samples; the generator step draws as many
samples as the whole minibatch. The generator loss evaluates the discriminator with its
parameters detached (:func:`torch.func.functional_call`), so ``fit``'s backward leaves no
gradient in the discriminator. :meth:`AdversarialLoss.state_dict` holds the discriminator's
weights, its optimizer and both players' loss histories: ``fit`` checkpoints and resumes both
players.

**An average of the generator** (``average=generator``, ``average_decay`` :math:`\beta`): the
loss keeps a copy of the generator module whose parameters are the exponential moving average
(Yazıcı et al. 2019)

.. math:: \bar\theta_0 = \theta_0,\qquad \bar\theta_t = \beta\,\bar\theta_{t-1} + (1-\beta)\,\theta_t,

:math:`\theta_t` the generator's parameters after :math:`t` generator steps. It is updated at the
start of every call, before the discriminator steps, so after :math:`T` calls it averages
:math:`\theta_0,\dots,\theta_{T-1}` (the last step enters at the next call; with
:math:`\beta = 0.999` over thousands of steps the difference is negligible). Buffers are copied,
not averaged. :math:`\beta = 0` is the current generator (one step behind); the average is
never trained and only read by whoever samples from it (``loss.average``). Averaging the
iterates damps the rotation of the two-player dynamics around the equilibrium, where the
last iterate may sit on one side of the cycle (over-producing a few modes).

**Under torchrun** (a :mod:`torch.distributed` group of :math:`W` ranks, see
:mod:`pyro_deepgen.distributed`) the discriminator is data-parallel too, as DDP would make it:
its parameters and buffers start from rank 0's, and after every discriminator backward its
gradients (and loss) are averaged over the ranks before its optimizer steps
(:meth:`~pyro_deepgen.distributed.Context.reduce_step` with weight :math:`1/W`; each rank's loss
is a mean over its share of the chunk, so the average is the loss of the global chunk). Its
buffers (batch-norm statistics, if any) are rank 0's after each step. Every rank thus holds the
same discriminator and optimizer state; the generator's gradients are summed by ``fit``. A rank
that fails inside a discriminator step stops every rank with its error named.

**Conditional GANs** (Mirza & Osindero 2014): with ``batch = (x, y)`` the labels go to the model
(``model(n, y)``) and to the discriminator (``D(x, y)``).

**References**: I. Goodfellow et al., *Generative Adversarial Nets*, NeurIPS 2014,
arXiv:1406.2661. I. Gulrajani et al., *Improved Training of Wasserstein GANs*, NeurIPS 2017,
arXiv:1704.00028. Y. Yazıcı et al., *The Unusual Effectiveness of Averaging in GAN Training*,
ICLR 2019, arXiv:1806.04498. T. Miyato et al., *Spectral Normalization for Generative Adversarial Networks*,
ICLR 2018, arXiv:1802.05957. M. Mirza, S. Osindero, *Conditional Generative Adversarial Nets*,
arXiv:1411.1784.
"""
import copy
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import pyro
import torch
import torch.nn.functional as F
from pyro import poutine
from torch import nn

from .. import distributed as _distributed

OBJECTIVES = ("nonsaturating", "minimax", "wgan-gp", "hinge")
BATCH_MODES = ("argument", "plate")


def _check_objective(objective: str) -> str:
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
    return objective


def discriminator_objective(objective: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss (mean over each batch, no gradient penalty) from its outputs on
    real data ``real`` and generated data ``fake`` (logits / critic values), see the module
    table."""
    _check_objective(objective)
    if objective in ("minimax", "nonsaturating"):
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if objective == "wgan-gp":
        return fake.mean() - real.mean()
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def generator_objective(objective: str, fake: torch.Tensor) -> torch.Tensor:
    """The generator's loss per sample (the shape of ``fake``) from the discriminator's outputs
    on generated data, see the module table."""
    _check_objective(objective)
    if objective == "minimax":
        return -F.softplus(fake)
    if objective == "nonsaturating":
        return F.softplus(-fake)
    return -fake


def gradient_penalty(critic: Callable[..., torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     *labels: torch.Tensor, eps: Optional[torch.Tensor] = None) -> torch.Tensor:
    r"""WGAN-GP's penalty :math:`\frac1n\sum_i(\lVert\nabla_x f(\hat x_i)\rVert_2 - 1)^2` at
    :math:`\hat x_i = \epsilon_i x_i + (1-\epsilon_i)\tilde x_i` (Gulrajani et al. 2017),
    differentiable in the critic's parameters (``create_graph=True``).

    :param eps: ``(n,)`` mixing weights; default :math:`U(0, 1)` draws.
    """
    n = real.shape[0]
    if fake.shape != real.shape:
        raise ValueError(f"real and fake must have the same shape, got {tuple(real.shape)} and {tuple(fake.shape)}")
    if eps is None:
        eps = torch.rand(n, dtype=real.dtype, device=real.device)
    eps = eps.reshape((n,) + (1,) * (real.dim() - 1))
    mixed = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    out = critic(mixed, *labels)
    (grad,) = torch.autograd.grad(out.sum(), mixed, create_graph=True)
    return (grad.reshape(n, -1).norm(dim=1) - 1).pow(2).mean()


class AdversarialLoss:
    r"""A GAN's two-player loss as a loss callable for :func:`pyro_deepgen.train.fit` (see the
    module doc for the objectives, the optimal discriminator and the training scheme).

    Example::

        gen, disc = Generator(64, z_dim=32), Discriminator(64)
        loss = AdversarialLoss(disc, objective="wgan-gp", n_critic=5, lr=1e-4, betas=(0.0, 0.9))
        fit(gen.model, None, x_train, loss=loss, optimizer=pyro.optim.Adam({"lr": 1e-4, "betas": (0.0, 0.9)}))
        loss.history["generator"], loss.history["discriminator"]   # per generator step

    :param discriminator: an ``nn.Module`` called ``discriminator(x, *labels)`` that returns one
        logit (critic value) per sample, shape ``(n,)`` or ``(n, 1)``. It is trained here, not by
        ``fit``: do not pass it to ``fit``.
    :param objective: ``"nonsaturating"`` (default), ``"minimax"``, ``"wgan-gp"`` or ``"hinge"``.
    :param n_critic: discriminator steps per generator step (Gulrajani et al. use 5 with WGAN-GP).
    :param gp_weight: :math:`\lambda` of WGAN-GP's gradient penalty (ignored by the others).
    :param lr: the discriminator's Adam step size.
    :param betas: the discriminator's Adam ``betas``.
    :param site: the name of the model's site holding the generated data.
    :param batch_mode: ``"argument"``: the model is called ``model(n, *labels)``; ``"plate"``: it
        is called ``model(*labels)`` inside ``pyro.plate("samples", n)`` (for a model that draws
        one sample, such as ``z = pyro.sample("z", Normal(0, 1).expand([d]).to_event(1))``).
    :param average: the generator's ``nn.Module`` (the module whose parameters ``fit`` trains):
        keep an exponential moving average of its parameters in :attr:`average` (a copy of the
        module; see the module doc). ``None`` (default): no average.
    :param average_decay: :math:`\beta` of the moving average, in [0, 1).
    """

    def __init__(self, discriminator: nn.Module, objective: str = "nonsaturating", n_critic: int = 1,
                 gp_weight: float = 10.0, lr: float = 2e-4, betas: Tuple[float, float] = (0.5, 0.999),
                 site: str = "x", batch_mode: str = "argument", average: Optional[nn.Module] = None,
                 average_decay: float = 0.999) -> None:
        if not isinstance(discriminator, nn.Module):
            raise TypeError(f"discriminator must be an nn.Module, got {type(discriminator).__name__}")
        self.objective = _check_objective(objective)
        if isinstance(n_critic, bool) or not isinstance(n_critic, int) or n_critic < 1:
            raise ValueError(f"n_critic must be a positive integer, got {n_critic!r}")
        if not (isinstance(gp_weight, (int, float)) and gp_weight >= 0):
            raise ValueError(f"gp_weight must be a number >= 0, got {gp_weight!r}")
        if not (isinstance(lr, (int, float)) and lr > 0):
            raise ValueError(f"lr must be a positive number, got {lr!r}")
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        if batch_mode not in BATCH_MODES:
            raise ValueError(f"batch_mode must be one of {', '.join(BATCH_MODES)}; got {batch_mode!r}")
        if average is not None and not isinstance(average, nn.Module):
            raise TypeError(f"average must be the generator's nn.Module, got {type(average).__name__}")
        if not (isinstance(average_decay, (int, float)) and 0 <= average_decay < 1):
            raise ValueError(f"average_decay must be a number in [0, 1), got {average_decay!r}")
        self.discriminator = discriminator
        self._average_decay = float(average_decay)
        self._averaged = average
        #: the moving average of the generator (a copy of ``average`` that is never trained), or None
        self.average: Optional[nn.Module] = None
        if average is not None:
            self.average = copy.deepcopy(average).requires_grad_(False)
            # public only with an average, so that fit's resume check compares it then and a
            # checkpoint written without one still resumes
            self.average_decay = self._average_decay
        self.n_critic = n_critic
        self.gp_weight = float(gp_weight)
        self.lr = float(lr)
        self.beta1, self.beta2 = float(betas[0]), float(betas[1])
        self.site = site
        self.batch_mode = batch_mode
        self.optimizer = torch.optim.Adam(discriminator.parameters(), lr=self.lr, betas=(self.beta1, self.beta2))
        #: the losses per generator step of the discriminator (mean over its ``n_critic`` steps)
        #: and of the generator, and the mean discriminator output on real and generated data
        self.history: Dict[str, List[float]] = {"discriminator": [], "generator": [], "d_real": [], "d_fake": []}
        self._steps = 0
        self._synced = False  # under torchrun: whether the discriminator was given rank 0's state

    @property
    def steps(self) -> int:
        """Generator steps taken (each after ``n_critic`` discriminator steps)."""
        return self._steps

    @torch.no_grad()
    def update_average(self) -> None:
        """One step of the moving average towards the generator's current parameters (the first
        call, with no generator step taken yet, copies them); buffers are copied. Called at the
        start of every ``__call__``."""
        if self.average is None:
            return
        weight = 1.0 if self._steps == 0 else 1.0 - self._average_decay
        for mean, p in zip(self.average.parameters(), self._averaged.parameters()):
            mean.lerp_(p.detach(), weight)
        for mean, b in zip(self.average.buffers(), self._averaged.buffers()):
            mean.copy_(b)

    def _discriminate(self, x: torch.Tensor, labels: Sequence[torch.Tensor], detach_params: bool = False):
        d = self.discriminator
        if detach_params:
            state = {k: v.detach() for k, v in list(d.named_parameters()) + list(d.named_buffers())}
            out = torch.func.functional_call(d, state, (x, *labels))
        else:
            out = d(x, *labels)
        n = x.shape[0]
        if out.numel() != n:
            raise ValueError(f"the discriminator must return one value per sample, shape ({n},) or ({n}, 1); "
                             f"got {tuple(out.shape)}")
        return out.reshape(n)

    def generate(self, model: Callable, num_samples: int, *labels: torch.Tensor, **kwargs) -> torch.Tensor:
        """Run ``model`` under :func:`poutine.trace <pyro.poutine.trace>` (see ``batch_mode``) and
        return the value of its site ``site``, checked to hold ``num_samples`` samples."""
        if self.batch_mode == "argument":
            trace = poutine.trace(model).get_trace(num_samples, *labels, **kwargs)
        else:
            with pyro.plate("samples", num_samples):
                trace = poutine.trace(model).get_trace(*labels, **kwargs)
        if self.site not in trace.nodes:
            raise ValueError(f"the generator model has no site {self.site!r}: add pyro.deterministic({self.site!r}, "
                             "G(z)) or pass site=<name>")
        x = trace.nodes[self.site]["value"]
        if x.dim() == 0 or x.shape[0] != num_samples:
            how = "model(num_samples, *labels)" if self.batch_mode == "argument" else "pyro.plate('samples', n)"
            raise ValueError(f"the generator's site {self.site!r} has shape {tuple(x.shape)}, expected "
                             f"({num_samples}, ...): it must draw one sample per row when called as {how}")
        return x

    def discriminator_loss(self, real: torch.Tensor, fake: torch.Tensor,
                           *labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The discriminator's loss on ``real`` and ``fake`` (with WGAN-GP's penalty), and its mean
        outputs on both."""
        out_real = self._discriminate(real, labels)
        out_fake = self._discriminate(fake.detach(), labels)
        value = discriminator_objective(self.objective, out_real, out_fake)
        if self.objective == "wgan-gp" and self.gp_weight > 0:
            value = value + self.gp_weight * gradient_penalty(self.discriminator, real, fake, *labels)
        return value, out_real.detach().mean(), out_fake.detach().mean()

    def discriminator_step(self, model: Callable, real: torch.Tensor, *labels: torch.Tensor,
                           **kwargs) -> Tuple[float, float, float]:
        """One optimizer step of the discriminator on ``real`` against as many fresh samples of
        ``model``; returns its loss and mean outputs (real, generated) before the step."""
        ctx = _distributed.Context() if _distributed.world_size() > 1 else None
        if ctx is not None and not self._synced:
            ctx.broadcast_tensors(list(self.discriminator.parameters()) + list(self.discriminator.buffers()))
            self._synced = True
        self.optimizer.zero_grad(set_to_none=True)
        try:
            with torch.no_grad():
                fake = self.generate(model, real.shape[0], *labels, **kwargs)
            value, d_real, d_fake = self.discriminator_loss(real, fake, *labels)
            value.backward()
            value, d_real, d_fake, error = float(value.detach()), float(d_real), float(d_fake), None
        except Exception as e:
            if ctx is None:
                raise
            value, d_real, d_fake, error = float("nan"), float("nan"), float("nan"), e
        if ctx is not None:
            value = ctx.reduce_step(list(self.discriminator.parameters()), value, 1.0 / ctx.world, error,
                                    f"the discriminator step {self._steps + 1}")
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if ctx is not None and any(True for _ in self.discriminator.buffers()):
            ctx.broadcast_tensors(list(self.discriminator.buffers()))
        return value, d_real, d_fake

    def generator_loss(self, model: Callable, num_samples: int, *labels: torch.Tensor, **kwargs) -> torch.Tensor:
        """The generator's loss summed over ``num_samples`` fresh samples, differentiable in the
        model's parameters only (the discriminator's are detached)."""
        fake = self.generate(model, num_samples, *labels, **kwargs)
        return generator_objective(self.objective, self._discriminate(fake, labels, detach_params=True)).sum()

    def __call__(self, model: Callable, guide: Optional[Callable], *batch: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """``n_critic`` discriminator steps on chunks of ``batch``, then the generator's loss
        (summed over the batch; :func:`~pyro_deepgen.train.fit` backpropagates and steps it)."""
        if guide is not None:
            raise ValueError("AdversarialLoss takes no guide: pass guide=None (the generator is the model)")
        if not batch:
            raise ValueError("AdversarialLoss needs real data: batch = (x,) or (x, labels)")
        kwargs.pop("num_data", None)
        self.update_average()
        real, labels = batch[0], batch[1:]
        n = real.shape[0]
        chunks = [real.chunk(self.n_critic)] + [y.chunk(self.n_critic) for y in labels]
        d_values, d_reals, d_fakes = [], [], []
        for i in range(self.n_critic):
            k = i % len(chunks[0])
            value, d_real, d_fake = self.discriminator_step(model, chunks[0][k], *(c[k] for c in chunks[1:]),
                                                            **kwargs)
            d_values.append(value)
            d_reals.append(d_real)
            d_fakes.append(d_fake)
        g = self.generator_loss(model, n, *labels, **kwargs)
        self._steps += 1
        self.history["discriminator"].append(sum(d_values) / len(d_values))
        self.history["generator"].append(float(g.detach()) / n)
        self.history["d_real"].append(sum(d_reals) / len(d_reals))
        self.history["d_fake"].append(sum(d_fakes) / len(d_fakes))
        return g

    def state_dict(self) -> Dict[str, Any]:
        """The discriminator's weights, its optimizer's state, the step count, the loss histories
        and the generator's average (``None`` without one; plain data, checkpointed by
        :func:`~pyro_deepgen.train.fit`)."""
        return {"discriminator": self.discriminator.state_dict(), "optimizer": self.optimizer.state_dict(),
                "steps": self._steps, "history": {k: list(v) for k, v in self.history.items()},
                "average": None if self.average is None else self.average.state_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        saved = state.get("average")
        if (saved is None) != (self.average is None):
            raise ValueError("the saved loss state " + ("has no" if saved is None else "has a") + " generator average "
                             "but this loss " + ("keeps one" if saved is None else "does not") + ": resume with the "
                             "same average= setting")
        self.discriminator.load_state_dict(state["discriminator"])
        self.optimizer.load_state_dict(state["optimizer"])
        self._steps = int(state["steps"])
        self.history = {k: [float(v) for v in vs] for k, vs in state["history"].items()}
        if saved is not None:
            self.average.load_state_dict(saved)

    def __repr__(self) -> str:
        return (f"AdversarialLoss(objective={self.objective!r}, n_critic={self.n_critic}, gp_weight={self.gp_weight}, "
                f"lr={self.lr}, betas=({self.beta1}, {self.beta2})"
                + ("" if self.average is None else f", average_decay={self._average_decay}") + ")")

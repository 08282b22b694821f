r"""Semi-supervised VAEs (Kingma, Rezende, Mohamed & Welling 2014): M2 and M1+M2.

M2 (:class:`SSVAE`) is the generative model

.. math::

    p(y) = \mathrm{Cat}(1/C),\qquad p(z) = \mathcal N(0, I),\qquad
    p_\theta(x\mid y, z) = \mathrm{Bernoulli}\ \text{or}\ \mathcal N \text{ of } f_\theta(y, z),

with the guide :math:`q_\phi(y\mid x)\,q_\phi(z\mid x, y)`. A labelled pair has the bound

.. math::

    \log p(x, y) \ge -\mathcal L(x, y) = \mathbb E_{q(z|x,y)}\big[\log p(x|y,z) + \log p(y)
    + \log p(z) - \log q(z|x,y)\big],

an unlabelled point the bound with :math:`y` summed out exactly (enumerated, never sampled)

.. math::

    \log p(x) \ge -\mathcal U(x) = \sum_y q(y|x)\big(-\mathcal L(x, y) - \log q(y|x)\big),

and the objective over labelled pairs :math:`\mathcal D_l` and unlabelled images
:math:`\mathcal D_u` (paper, eq. 9) is

.. math::

    \mathcal J^\alpha = \sum_{(x,y)\in\mathcal D_l}\mathcal L(x,y) + \sum_{x\in\mathcal D_u}\mathcal U(x)
    + \alpha\,\mathbb E_{\tilde p_l(x,y)}\big[-\log q(y|x)\big],\qquad \alpha = 0.1\,N .

**The classification term in the same step.** :meth:`SSVAE.model` takes ``alpha`` and adds, for
each labelled point of a minibatch, ``pyro.factor`` :math:`(\alpha/N_l)\log q(y|x)` inside the
labelled plate; that plate's subsampling scale :math:`N_l/B_l` makes the minibatch's factors an
unbiased estimate of :math:`\alpha\,\mathbb E_{\tilde p_l}[\log q(y|x)]` (:math:`\alpha` times the
*mean* over the :math:`N_l` labelled pairs). One :class:`~pyro.infer.TraceEnum_ELBO` loss thus
estimates :math:`\mathcal J^\alpha` without bias, and one optimizer step follows its gradient.
Pyro's example ``examples/vae/ss_vae_M2.py`` instead runs a second SVI on the labelled batches with
the loss ``46 * sum(-log q(y|x))`` (unscaled minibatch sums, as its ELBOs), i.e. a weight of 46
*per labelled point*; here that weight is :math:`\alpha/N_l`, so Pyro's setting is
:math:`\alpha = 46\,N_l` (4600 at 100 labels: :math:`0.092\,N` for its :math:`N` = 50,000, close to
the paper's :math:`0.1\,N`; at 3000 labels the paper's rule gives a weight of 1.7, Pyro keeps 46).

**Minibatches.** ``model(x, y, labelled, num_labelled=N_l, num_unlabelled=N_u)``: the rows with
``labelled`` True go into ``pyro.plate("labelled", N_l)`` and the others into
``pyro.plate("unlabelled", N_u)``, each subsampled, so both sums are unbiased whatever the
numbers of each kind in the batch (the rows of a kind must be a uniform draw of that kind). Site
names then carry the plate's name (``"y_labelled"``, ``"z_unlabelled"``, ...). Without the mask,
the batch is all labelled (``y`` given) or all unlabelled (``y=None``) and the program is the
plain one, ``pyro.plate("data")`` with sites ``"y"``, ``"z"``, ``"x"``: so
:func:`pyro_deepgen.evaluate.log_likelihood` (which samples ``y`` from :math:`q(y|x)`, making the
importance weight :math:`p(x,y,z)/q(y|x)q(z|x,y)` an unbiased estimate of :math:`p(x)=\sum_y p(x,y)`),
``poutine.condition`` and :class:`~pyro_deepgen.infer.TraceIWAE_ELBO` on the labelled bound see a
VAE-like program. The unlabelled guide marks ``y`` ``infer={"enumerate": "parallel"}``;
:class:`~pyro_deepgen.infer.TraceIWAE_ELBO` refuses it with an error naming the site (train that
term with ``TraceEnum_ELBO(max_plate_nesting=1)``).

M1+M2 (:class:`StackedSSVAE`) is an M2 with a Gaussian likelihood whose data are draws
:math:`z_1\sim q(z_1|x)` of a trained, frozen M1 (:class:`~pyro_deepgen.models.VAE`).

**Reference**: D. P. Kingma, D. J. Rezende, S. Mohamed, M. Welling, *Semi-Supervised Learning
with Deep Generative Models*, NeurIPS 2014, arXiv:1406.5298.
"""
from typing import List, NamedTuple, Optional, Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import TraceEnum_ELBO
from pyro.nn import PyroModule
from pyro.nn.module import to_pyro_module_
from torch import nn
from torch.nn import functional as F

from .._checks import finite_float, one_of, positive_int, positive_ints
from ..distributions.bernoulli_image import BernoulliImage
from ..nn import MLP
from ..nn.mlp import Activation, get_activation
from ..plates import data_plate
from ._inputs import check_batch
from .vae import LIKELIHOODS, VAE


class LabelConditioned(nn.Module):
    r"""An MLP of an input :math:`u` and a class :math:`y` whose first layer is
    :math:`\mathrm{act}(W u + E_y + b)`: the one-hot linear layer, computed once for :math:`u` and
    broadcast over the classes (an enumerated :math:`y` of shape ``(C, 1)`` costs one first
    layer, not :math:`C`)."""

    def __init__(self, in_dim: int, num_classes: int, hidden_dims: Sequence[int], out_dims,
                 activation: Activation) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, hidden_dims[0])
        bound = 1.0 / (in_dim + num_classes) ** 0.5
        self.label = nn.Parameter(torch.empty(num_classes, hidden_dims[0]).uniform_(-bound, bound))
        self.activation = get_activation(activation)
        self.rest = MLP(hidden_dims[0], hidden_dims[1:], out_dims, activation)

    def forward(self, u: torch.Tensor, y: torch.Tensor):
        return self.rest(self.activation(self.linear(u) + self.label[y]))


class _Part(NamedTuple):
    labelled: bool
    x: torch.Tensor
    y: Optional[torch.Tensor]
    plate: str
    size: Optional[int]
    suffix: str


class SSVAE(PyroModule):
    r"""M2 of Kingma et al. (2014), arXiv:1406.5298 (see the module doc for the bounds, the
    :math:`\alpha` term and the minibatch rules).

    :param int x_dim: data dimension.
    :param int num_classes: number of classes :math:`C`.
    :param int z_dim: latent dimension (the paper: 50).
    :param hidden_dims: hidden layers of each network (at least one; decoder reversed). Default
        ``(500,)`` as in the paper and Pyro's example.
    :param str likelihood: ``"bernoulli"`` (logits; grey values in [0, 1] give the
        cross-entropy) or ``"gaussian"`` (learned diagonal variance; M1+M2's top layer).
    :param activation: hidden activation, default ``"softplus"`` (the paper's).
    :param float min_scale: added to every standard deviation.
    :param float classifier_dropout: dropout probability on the input of :math:`q(y|x)` while the
        module is in training mode (``self.training``), in the guide's :math:`q(y|x)` and in the
        classification term; :meth:`classify` and :meth:`analogies` never drop. Each draw of the
        mask is one member of a family of guides, so the bound stays a bound. Default 0 (the
        paper's M2); on mnist-5k with 100 labels 0.7 helps M2 and 0.3 M1+M2 (docs/ssvae.rst).
    :param int classifier_dim: 0 (default): :math:`q(y|\cdot)` reads ``x``. Otherwise every row
        passed to :meth:`model`, :meth:`guide`, :meth:`classify` is ``[x | u]``, ``x`` the
        ``x_dim`` modelled values and ``u`` ``classifier_dim`` further values that only
        :math:`q(y|u)` reads (M1+M2 with the image as the classifier's input: ``x`` = M1's code
        :math:`z_1`, ``u`` = the image). Any guide is allowed, so the bounds stay bounds.
    :param classifier_hidden: hidden layers of :math:`q(y|\cdot)` (default: ``hidden_dims``).
    """

    def __init__(self, x_dim: int, num_classes: int, z_dim: int = 50, hidden_dims: Sequence[int] = (500,),
                 likelihood: str = "bernoulli", activation: Activation = "softplus",
                 min_scale: float = 1e-4, classifier_dropout: float = 0.0, classifier_dim: int = 0,
                 classifier_hidden: Optional[Sequence[int]] = None) -> None:
        super().__init__()
        self.likelihood = one_of(likelihood, "likelihood", LIKELIHOODS)
        self.x_dim, self.z_dim = positive_int(x_dim, "x_dim"), positive_int(z_dim, "z_dim")
        self.num_classes = positive_int(num_classes, "num_classes")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        self.hidden_dims = positive_ints(hidden_dims, "hidden_dims", allow_empty=False)
        self.min_scale = finite_float(min_scale, "min_scale", low=0.0)
        self.classifier_dropout = finite_float(classifier_dropout, "classifier_dropout", low=0.0)
        if self.classifier_dropout >= 1:
            raise ValueError(f"classifier_dropout must be in [0, 1), got {classifier_dropout}")
        if isinstance(classifier_dim, bool) or not isinstance(classifier_dim, int) or classifier_dim < 0:
            raise ValueError(f"classifier_dim must be an int >= 0 (0: q(y|x) reads x), got {classifier_dim!r}")
        self.classifier_dim = classifier_dim
        self.classifier_hidden = self.hidden_dims if classifier_hidden is None else positive_ints(
            classifier_hidden, "classifier_hidden", allow_empty=False)
        self.encoder_y = MLP(classifier_dim or x_dim, self.classifier_hidden, num_classes, activation)
        self.encoder_z = LabelConditioned(x_dim, num_classes, self.hidden_dims, (z_dim, z_dim), activation)
        out = x_dim if likelihood == "bernoulli" else (x_dim, x_dim)
        self.decoder = LabelConditioned(z_dim, num_classes, self.hidden_dims[::-1], out, activation)
        for m in (self.encoder_y, self.encoder_z, self.decoder):
            to_pyro_module_(m)

    # -- networks -------------------------------------------------------------------------
    def data(self, x: torch.Tensor) -> torch.Tensor:
        """The modelled part of the rows ``x`` (all of it when ``classifier_dim`` is 0)."""
        return x[..., : self.x_dim] if self.classifier_dim else x

    def classifier_input(self, x: torch.Tensor) -> torch.Tensor:
        r"""What :math:`q(y|\cdot)` reads of the rows ``x``: ``x``, or its last ``classifier_dim`` values."""
        return x[..., self.x_dim:] if self.classifier_dim else x

    def class_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of :math:`q(y|x)`, shape ``(..., C)`` (with ``classifier_dropout`` on its input in
        training mode)."""
        x = self.classifier_input(x)
        if self.classifier_dropout and self.training:
            x = F.dropout(x, self.classifier_dropout, training=True)
        return self.encoder_y(x)

    def encode(self, x: torch.Tensor, y: torch.Tensor):
        """``(loc, scale)`` of :math:`q(z|x,y)`; ``y`` (integer classes) broadcasts against ``x``'s
        batch shape."""
        loc, raw = self.encoder_z(self.data(x), y)
        return loc, F.softplus(raw) + self.min_scale

    def likelihood_dist(self, z: torch.Tensor, y: torch.Tensor) -> dist.Distribution:
        """:math:`p(x|y,z)` with event shape ``(x_dim,)``."""
        if self.likelihood == "bernoulli":
            return BernoulliImage(self.decoder(z, y))
        loc, raw = self.decoder(z, y)
        return dist.Normal(loc, F.softplus(raw) + self.min_scale).to_event(1)

    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`q(y|x)`: class probabilities, shape ``(N, C)``."""
        self._check(x)
        return torch.softmax(self.encoder_y(self.classifier_input(x)), -1)

    # -- checks ---------------------------------------------------------------------------
    def _check(self, x: torch.Tensor) -> None:
        width = self.x_dim + self.classifier_dim
        if not torch.is_tensor(x) or x.dim() != 2 or x.shape[-1] != width:
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            what = f"{width} = x_dim {self.x_dim} + classifier_dim {self.classifier_dim}" if self.classifier_dim \
                else str(width)
            raise ValueError(f"x must have shape (batch, {what}); got {shape}. "
                             "Flatten images with x.reshape(len(x), -1).")
        # a Bernoulli likelihood needs its modelled values in [0, 1]; the classifier's input may be anything
        check_batch(self, self.data(x), "x", "SSVAE", self.likelihood == "bernoulli")

    def _check_labels(self, y: torch.Tensor, n: int, rows: Optional[torch.Tensor]) -> None:
        if not torch.is_tensor(y) or y.shape != (n,) or y.dtype not in (torch.int64, torch.int32):
            shape = (tuple(y.shape), y.dtype) if torch.is_tensor(y) else type(y).__name__
            raise ValueError(f"y must be an integer tensor of shape ({n},) (the class of each row of x); "
                             f"got {shape}")
        used = y if rows is None else y[rows]
        if used.numel() and not bool(((used >= 0) & (used < self.num_classes)).all()):
            raise ValueError(f"y must hold classes in 0..{self.num_classes - 1}; got values in "
                             f"{int(used.min())}..{int(used.max())}")

    def _parts(self, x, y, labelled, num_labelled, num_unlabelled) -> List[_Part]:
        self._check(x)
        n = x.shape[0]
        if labelled is None:
            if y is None:
                return [_Part(False, x, None, "data", num_unlabelled, "")]
            self._check_labels(y, n, None)
            return [_Part(True, x, y, "data", num_labelled, "")]
        if not torch.is_tensor(labelled) or labelled.shape != (n,) or labelled.dtype != torch.bool:
            raise ValueError(f"labelled must be a bool tensor of shape ({n},) marking the rows of x that "
                             "have a label in y")
        if y is None:
            raise ValueError("labelled marks labelled rows but y is None: pass y (any value in unlabelled rows)")
        self._check_labels(y, n, labelled)
        parts = []
        if bool(labelled.any()):
            parts.append(_Part(True, x[labelled], y[labelled], "labelled", num_labelled, "_labelled"))
        if not bool(labelled.all()):
            parts.append(_Part(False, x[~labelled], None, "unlabelled", num_unlabelled, "_unlabelled"))
        return parts

    # -- Pyro programs --------------------------------------------------------------------
    def model(self, x: torch.Tensor, y: Optional[torch.Tensor] = None, labelled: Optional[torch.Tensor] = None,
              *, num_labelled: Optional[int] = None, num_unlabelled: Optional[int] = None,
              alpha: float = 0.0) -> None:
        r""":math:`p(y)p(z)p(x|y,z)`; ``y`` observed where labelled, latent (enumerated by the
        guide) elsewhere.

        :param x: ``(B, x_dim)``.
        :param y: ``(B,)`` integer classes, or ``None`` (every row unlabelled).
        :param labelled: ``(B,)`` bool, the rows whose ``y`` is a label (values of ``y`` elsewhere
            are ignored); ``None``: all rows are labelled when ``y`` is given.
        :param num_labelled: :math:`N_l`, the number of labelled pairs of the data set (``None``:
            this batch is all of them); scales the labelled plate by :math:`N_l/B_l`.
        :param num_unlabelled: :math:`N_u`, likewise for the unlabelled images.
        :param float alpha: :math:`\alpha` of the classification term; each labelled row adds
            ``pyro.factor`` :math:`(\alpha/N_l)\log q(y|x)` (0: the bare bound).
        """
        for part in self._parts(x, y, labelled, num_labelled, num_unlabelled):
            with data_plate(part.x, part.size, name=part.plate):
                b = part.x.shape[0]
                prior = dist.Categorical(logits=part.x.new_zeros(b, self.num_classes))
                yy = pyro.sample("y" + part.suffix, prior, obs=part.y)
                zero = part.x.new_zeros(b, self.z_dim)
                z = pyro.sample("z" + part.suffix, dist.Normal(zero, 1.0 + zero).to_event(1))
                pyro.sample("x" + part.suffix, self.likelihood_dist(z, yy), obs=self.data(part.x))
                if part.labelled and alpha:
                    log_q = dist.Categorical(logits=self.class_logits(part.x)).log_prob(part.y)
                    pyro.factor("classification" + part.suffix, (alpha / (part.size or b)) * log_q)

    def guide(self, x: torch.Tensor, y: Optional[torch.Tensor] = None, labelled: Optional[torch.Tensor] = None,
              *, num_labelled: Optional[int] = None, num_unlabelled: Optional[int] = None,
              alpha: float = 0.0) -> None:
        """:math:`q(y|x)q(z|x,y)`: ``y`` is enumerated in parallel for the unlabelled rows (use
        :class:`~pyro.infer.TraceEnum_ELBO`), the given label elsewhere. Arguments as
        :meth:`model`."""
        for part in self._parts(x, y, labelled, num_labelled, num_unlabelled):
            with data_plate(part.x, part.size, name=part.plate):
                yy = part.y
                if not part.labelled:
                    yy = pyro.sample("y" + part.suffix, dist.Categorical(logits=self.class_logits(part.x)),
                                     infer={"enumerate": "parallel"})
                loc, scale = self.encode(part.x, yy)
                pyro.sample("z" + part.suffix, dist.Normal(loc, scale).to_event(1))

    # -- utilities ------------------------------------------------------------------------
    def mean(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """:math:`\\mathbb E[x|y,z]`."""
        return self.likelihood_dist(z, y).mean

    @torch.no_grad()
    def analogies(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """For each row of ``x``: :math:`z` = the mean of :math:`q(z|x,y)` (``y`` its label, or the
        most probable class of :math:`q(y|x)`), decoded with every class: shape ``(N, C, x_dim)``."""
        self._check(x)
        if y is None:
            y = self.encoder_y(self.classifier_input(x)).argmax(-1)
        z = self.encode(x, y)[0]
        classes = torch.arange(self.num_classes, device=x.device)
        return self.mean(z.unsqueeze(1).expand(-1, self.num_classes, -1), classes.expand(x.shape[0], -1))


class StackedSSVAE(PyroModule):
    r"""M1+M2 of Kingma et al. (2014): an M2 (:class:`SSVAE`, Gaussian likelihood) on the latent code
    :math:`z_1` of a trained M1 (:class:`~pyro_deepgen.models.VAE`), which stays frozen.

    :meth:`features` draws :math:`z_1\sim q(z_1|x)` (or returns its mean); ``model``/``guide`` are
    the M2's on those features, so train with :class:`~pyro_deepgen.models.ssvae.SemiSupervisedLoss` given
    ``features=stacked.features`` (a fresh draw every step, as in the paper, which trains M2 on
    samples of M1's posterior). :meth:`classify` averages :math:`q(y|z_1)` over such draws.

    :param m1: the trained VAE (its parameters get ``requires_grad=False``); held by reference,
        not as a submodule (Pyro refuses to adopt a ``PyroModule`` that has run), so it is not in
        this module's ``state_dict`` and ``.to()`` does not move it.
    :param int num_classes: number of classes.
    :param int z_dim: M2's latent size.
    :param hidden_dims: M2's hidden layers.
    :param float classifier_dropout: as :class:`SSVAE`'s, on the classifier's input.
    :param str classifier_input: ``"code"`` (default): :math:`q(y|z_1)`, the paper's; ``"image"``:
        :math:`q(y|x)` reads the image (the guide may use any input; :meth:`features` then returns
        ``[z_1 | x]``, see :class:`SSVAE`'s ``classifier_dim``), while the generative model and
        :math:`q(z|z_1,y)` stay on :math:`z_1`.
    :param classifier_hidden: hidden layers of the classifier (default: ``hidden_dims``).
    """

    def __init__(self, m1: VAE, num_classes: int, z_dim: int = 50, hidden_dims: Sequence[int] = (500,),
                 activation: Activation = "softplus", classifier_dropout: float = 0.0,
                 classifier_input: str = "code", classifier_hidden: Optional[Sequence[int]] = None) -> None:
        super().__init__()
        self.classifier_input = one_of(classifier_input, "classifier_input", ("code", "image"))
        if not isinstance(m1, VAE):
            raise ValueError(f"m1 must be a pyro_deepgen.models.VAE, got {type(m1).__name__}")
        # held by reference, not as a submodule: Pyro refuses to adopt a PyroModule that has already
        # run (its trained M1); so m1 is neither moved by .to() nor part of this state_dict
        self.__dict__["m1"] = m1
        for p in m1.parameters():
            p.requires_grad_(False)
        self.m2 = SSVAE(m1.z_dim, num_classes, z_dim, hidden_dims, likelihood="gaussian", activation=activation,
                        classifier_dropout=classifier_dropout,
                        classifier_dim=m1.x_dim if self.classifier_input == "image" else 0,
                        classifier_hidden=classifier_hidden)

    @torch.no_grad()
    def features(self, x: torch.Tensor, sample: bool = True) -> torch.Tensor:
        """:math:`z_1\\sim q(z_1|x)` (``sample``) or its mean, shape ``(N, m1.z_dim)``; with
        ``classifier_input="image"`` the rows ``[z_1 | x]``."""
        self.m1._check(x, values=True)
        loc, scale = self.m1.encode(x)
        z1 = loc + scale * torch.randn_like(loc) if sample else loc
        return torch.cat([z1, x], -1) if self.classifier_input == "image" else z1

    def model(self, z1, *args, **kwargs) -> None:
        """M2's model on features ``z1`` (see :meth:`SSVAE.model`)."""
        self.m2.model(z1, *args, **kwargs)

    def guide(self, z1, *args, **kwargs) -> None:
        """M2's guide on features ``z1``."""
        self.m2.guide(z1, *args, **kwargs)

    @torch.no_grad()
    def classify(self, x: torch.Tensor, num_samples: int = 32) -> torch.Tensor:
        r""":math:`q(y|x) = \mathbb E_{q(z_1|x)}\,q(y|z_1)`, the guide's class probabilities with
        :math:`z_1` integrated out, estimated from ``num_samples`` draws of :math:`z_1` (the M2 was
        trained on such draws); ``num_samples=0``: :math:`q(y|\mathbb E[z_1|x])`. Shape ``(N, C)``.
        On mnist-5k at 100 labels the 32-draw average was 1 point better than the mean (docs/ssvae.rst).
        With ``classifier_input="image"`` it is :math:`q(y|x)` itself (no draws)."""
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 0:
            raise ValueError(f"num_samples must be an int >= 0, got {num_samples!r}")
        self.m1._check(x, values=True)
        if self.classifier_input == "image":  # q(y|x) does not depend on z1
            return self.m2.classify(self.features(x, sample=False))
        loc, scale = self.m1.encode(x)  # once: only the draws differ
        if num_samples == 0:
            return self.m2.classify(loc)
        return sum(self.m2.classify(loc + scale * torch.randn_like(loc)) for _ in range(num_samples)) / num_samples


class SemiSupervisedLoss:
    r"""A loss for :func:`pyro_deepgen.train.fit` over the unlabelled images: each call
    ``loss(model, guide, x_u)`` draws a labelled minibatch of ``labelled_batch_size`` pairs (without
    replacement, from the torch random state, which ``fit`` checkpoints), runs ``model``/``guide``
    once on the mixed batch with ``num_labelled`` / ``num_unlabelled`` set, and returns
    :class:`~pyro.infer.TraceEnum_ELBO`'s estimate of :math:`\mathcal J^\alpha` times
    :math:`b/N` (:math:`b` = ``len(x_u)``, :math:`N = N_l + N_u`), so that ``fit`` reports
    :math:`\mathcal J^\alpha/N` per data point. The estimate is unbiased for any batch sizes.

    :param x_labelled: ``(N_l, D)`` labelled images; ``y_labelled``: ``(N_l,)`` classes.
    :param int num_unlabelled: :math:`N_u`, the size of the data ``fit`` iterates over.
    :param float alpha: :math:`\alpha` (the paper: :math:`0.1\,N`).
    :param int labelled_batch_size: labelled pairs per step (default: all of them, at most 100).
    :param features: ``x -> features`` applied to both parts before the model (M1+M2:
        :meth:`StackedSSVAE.features`).
    """

    def __init__(self, x_labelled: torch.Tensor, y_labelled: torch.Tensor, num_unlabelled: int,
                 alpha: float = 0.0, labelled_batch_size: Optional[int] = None, features=None) -> None:
        if x_labelled.dim() != 2 or y_labelled.shape != x_labelled.shape[:1] or not len(y_labelled):
            raise ValueError("x_labelled must be (N_l, D) and y_labelled (N_l,) with N_l >= 1")
        self.x_labelled, self.y_labelled = x_labelled, y_labelled
        self.num_labelled = int(x_labelled.shape[0])
        self.num_unlabelled = positive_int(num_unlabelled, "num_unlabelled")
        self.alpha = finite_float(alpha, "alpha", low=0.0)
        size = min(self.num_labelled, 100) if labelled_batch_size is None else labelled_batch_size
        self.labelled_batch_size = min(positive_int(size, "labelled_batch_size"), self.num_labelled)
        self.features = features
        self.elbo = TraceEnum_ELBO(max_plate_nesting=1)

    def __call__(self, model, guide, x: torch.Tensor) -> torch.Tensor:
        index = torch.randperm(self.num_labelled, device=self.y_labelled.device)[: self.labelled_batch_size]
        xl, yl = self.x_labelled[index], self.y_labelled[index]
        xs = torch.cat([xl, x])
        if self.features is not None:
            xs = self.features(xs)
        ys = torch.cat([yl, yl.new_zeros(x.shape[0])])
        mask = torch.zeros(xs.shape[0], dtype=torch.bool, device=xs.device)
        mask[: len(index)] = True
        total = self.elbo.differentiable_loss(model, guide, xs, ys, mask, num_labelled=self.num_labelled,
                                              num_unlabelled=self.num_unlabelled, alpha=self.alpha)
        return total * (x.shape[0] / (self.num_labelled + self.num_unlabelled))

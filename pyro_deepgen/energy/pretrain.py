r"""Greedy layer-wise pretraining of the deep Boltzmann family: each layer is an RBM trained by
:func:`pyro_deepgen.train.fit` with contrastive divergence. The only module of
:mod:`pyro_deepgen.energy` that imports the training loop: the models do not train themselves.
"""
from typing import List, Tuple, Union

import torch

from ..train import History, fit
from .cd import ContrastiveDivergence
from .dbm import DBM, DoubledRBM
from .dbn import DBN, PROPAGATE as DBN_PROPAGATE


def pretrain_dbn(dbn: DBN, data: torch.Tensor, loss=None, propagate: str = "sample",
                 init_visible_bias: bool = True, **fit_kwargs) -> List[History]:
    r"""Greedy layer-wise training of a :class:`~pyro_deepgen.energy.DBN` (Hinton, Osindero &
    Teh 2006): fit ``dbn.rbms[0]`` to the data with
    :func:`pyro_deepgen.train.fit`, pass the data up (samples of :math:`h^1\sim q(h^1\mid v)`
    or, with ``propagate="mean"``, their probabilities), fit ``dbn.rbms[1]`` to that, and so on.

    :param data: training data ``(N, V)`` in [0, 1].
    :param loss: a factory ``() -> loss`` called once per RBM (default
        ``ContrastiveDivergence(k=1)``).
    :param str propagate: ``"sample"`` (default) or ``"mean"``.
    :param bool init_visible_bias: start each RBM's visible biases at the log-odds of its
        training data's marginals (:meth:`RBM.init_visible_bias`; default True).
    :param fit_kwargs: passed on to :func:`~pyro_deepgen.train.fit` (``epochs``, ``lr``,
        ``batch_size``, ``optimizer``, ``progress``, ...).
    :returns: the list of :class:`~pyro_deepgen.train.History`, one per RBM.
    """
    dbn.check_layer(data, dbn.layer_sizes[0], "data", matrix=True)
    if propagate not in DBN_PROPAGATE:
        raise ValueError(f"propagate={propagate!r}; use one of {DBN_PROPAGATE}")
    make_loss = loss if loss is not None else (lambda: ContrastiveDivergence(k=1))
    x = data.to(dbn.top.weight)
    histories = []
    for layer, rbm in enumerate(dbn.rbms):
        if init_visible_bias:
            rbm.init_visible_bias(x)
        histories.append(fit(rbm, None, x, loss=make_loss(), **fit_kwargs))
        if layer < len(dbn.rbms) - 1:
            with torch.no_grad():
                x = rbm.hidden_probs(x)
                x = torch.bernoulli(x) if propagate == "sample" else x
    return histories


def pretrain_dbm(dbm: DBM, data: torch.Tensor, loss=None, init_visible_bias: bool = True,
                 **fit_kwargs) -> Tuple[DoubledRBM, DoubledRBM]:
    r"""Greedy layer-wise pretraining of a :class:`~pyro_deepgen.energy.DBM` with doubled weights
    (Salakhutdinov & Hinton 2009, Sec. 3.1), through :func:`pyro_deepgen.train.fit` and
    contrastive divergence.

    The bottom RBM :math:`v - h^1` is trained with its bottom-up input doubled,
    :math:`p(h^1\mid v) = \sigma(2W_1 v + c)`, standing in for the missing top-down input
    from :math:`h^2`; the top RBM :math:`h^1 - h^2` with its top-down input doubled,
    :math:`p(h^1\mid h^2) = \sigma(2W_2^\top h^2 + b)`. Its training data are samples of
    :math:`h^1` from the bottom RBM's doubled up-pass. The DBM then takes :math:`W_1, W_2`,
    the visible biases of the bottom RBM, :math:`c_2` from the top RBM and the average
    of the two estimates of :math:`c_1`; composed, each layer receives input from both
    neighbours with the weights halved relative to the pretraining conditionals.

    :param data: binary training data ``(N, V)``.
    :param loss: a loss factory ``() -> loss`` for each RBM (default
        ``ContrastiveDivergence(k=1)``), e.g.
        ``lambda: ContrastiveDivergence(persistent=True)``.
    :param bool init_visible_bias: start each RBM's visible biases at the log-odds of its
        training data's marginals (:meth:`RBM.init_visible_bias`; default True). Without
        it, a few epochs leave the biases near 0 and the background pixels grey.
    :param fit_kwargs: passed to :func:`~pyro_deepgen.train.fit` for each layer (``epochs``,
        ``lr``, ``batch_size``, ``optimizer``, ``progress``, ...).
    :returns: the two (pretraining) RBMs.
    """
    dbm.check_visible(data, "data")
    make_loss = loss if loss is not None else (lambda: ContrastiveDivergence(k=1))
    p = dbm.weight1
    bottom = DoubledRBM(dbm.num_visible, dbm.num_hidden1, up=2.0).to(p)
    top = DoubledRBM(dbm.num_hidden1, dbm.num_hidden2, down=2.0).to(p)
    data = data.to(p)
    if init_visible_bias:
        bottom.init_visible_bias(data)
    fit(bottom, None, data, loss=make_loss(), **fit_kwargs)
    with torch.no_grad():
        h1 = bottom.sample_hidden(data)
    if init_visible_bias:
        top.init_visible_bias(h1)
    fit(top, None, h1, loss=make_loss(), **fit_kwargs)
    with torch.no_grad():
        dbm.weight1.copy_(bottom.weight)
        dbm.weight2.copy_(top.weight)
        dbm.visible_bias.copy_(bottom.visible_bias)
        dbm.hidden1_bias.copy_(0.5 * (bottom.hidden_bias + top.visible_bias))
        dbm.hidden2_bias.copy_(top.hidden_bias)
    return bottom, top


def pretrain(model: Union[DBN, DBM], data: torch.Tensor, **kwargs):
    """Greedy layer-wise pretraining of a DBN (:func:`pretrain_dbn`) or a DBM
    (:func:`pretrain_dbm`); ``kwargs`` go to that function."""
    if isinstance(model, DBN):
        return pretrain_dbn(model, data, **kwargs)
    if isinstance(model, DBM):
        return pretrain_dbm(model, data, **kwargs)
    raise TypeError(f"pretrain needs a DBN or a DBM, got {type(model).__name__}")

r"""Binarization of grey-level images in [0, 1] for Bernoulli likelihoods.

Three conventions are in use in the literature:

- ``"threshold"``: :math:`\tilde x = \mathbb{1}[x > 0.5]`, deterministic.
- ``"stochastic"``: one fixed Bernoulli draw :math:`\tilde x \sim \mathrm{Bernoulli}(x)`
  made once with a seeded generator, as in the binarized MNIST of Larochelle & Murray [1]
  (reproducible: the same seed gives the same images on every call).
- ``"dynamic"``: a fresh Bernoulli draw of the training images every epoch, as in the IWAE
  paper [2]. The loaders then return the grey values of training data, and the training loop
  (``pyro_deepgen.train.fit(..., binarize="dynamic")``) calls :func:`dynamic_binarize` each
  epoch; evaluation data get one fixed seeded draw (the ``"stochastic"`` rule), see
  :func:`binarize_split`.

References

[1] H. Larochelle, I. Murray, "The Neural Autoregressive Distribution Estimator", AISTATS 2011.

[2] Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted Autoencoders",
    arXiv:1509.00519.
"""
from typing import Optional

import torch

BINARIZE_METHODS = (None, "threshold", "stochastic", "dynamic")
SPLITS = ("train", "test")


def check_binarize(method: Optional[str]) -> Optional[str]:
    """Validate a binarization method name and return it (the string ``"none"`` means ``None``).

    :raises ValueError: naming the accepted values.
    """
    if isinstance(method, str) and method.lower() == "none":
        return None
    if method not in BINARIZE_METHODS:
        raise ValueError(
            f"binarize must be one of None, 'threshold', 'stochastic' or 'dynamic'; got {method!r}"
        )
    return method


def _check_unit_interval(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point Tensor of values in [0, 1]; got {type(x)}")
    if x.numel() and not bool(((x >= 0) & (x <= 1)).all()):
        raise ValueError("x must hold Bernoulli probabilities in [0, 1]; rescale it first")


def dynamic_binarize(x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    r"""One fresh Bernoulli draw of grey-level images: :math:`\tilde x \sim \mathrm{Bernoulli}(x)`.

    The training loop calls this every epoch for ``binarize="dynamic"``. :math:`E[\tilde x] = x`.

    :param x: floating-point Tensor of values in [0, 1].
    :param generator: random number generator on ``x.device`` (``None``: torch's global one).
    :returns: a Tensor of 0s and 1s with the dtype and device of ``x``.
    """
    _check_unit_interval(x)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None; got {type(generator)}")
    return torch.bernoulli(x, generator=generator)


def binarize(x: torch.Tensor, method: Optional[str], seed: int = 0) -> torch.Tensor:
    """Binarize grey-level images in [0, 1].

    :param x: floating-point Tensor of values in [0, 1].
    :param method: ``None`` (return ``x`` unchanged), ``"threshold"`` (``x > 0.5``),
        ``"stochastic"`` (one Bernoulli draw from a ``torch.Generator`` seeded with ``seed``:
        the same result on every call) or ``"dynamic"`` (returns the grey values ``x``
        unchanged: the training loop draws afresh each epoch; use :func:`binarize_split` to
        get the fixed draw for evaluation data).
    :param seed: seed of the ``"stochastic"`` draw.
    :returns: a Tensor with the dtype and device of ``x``.
    """
    method = check_binarize(method)
    _check_unit_interval(x)
    if method is None or method == "dynamic":
        return x
    if method == "threshold":
        return (x > 0.5).to(x.dtype)
    generator = torch.Generator(device=x.device).manual_seed(seed)
    return dynamic_binarize(x, generator)


def binarize_split(
    x: torch.Tensor, method: Optional[str], split: str = "train", seed: int = 0
) -> torch.Tensor:
    """Binarize a training or evaluation split as the loaders do.

    Identical to :func:`binarize` except that for ``method="dynamic"`` and ``split="test"``
    it makes one fixed seeded draw (the ``"stochastic"`` rule), so that evaluation data stay
    fixed while training data are redrawn each epoch.

    :param split: ``"train"`` or ``"test"``.
    """
    method = check_binarize(method)
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
    if method == "dynamic" and split == "test":
        method = "stochastic"
    return binarize(x, method, seed)

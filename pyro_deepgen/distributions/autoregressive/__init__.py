"""Autoregressive models over binary vectors and images, with exact likelihoods: :class:`NADE`,
:class:`MADE` (order-agnostic, mask ensembles) and :class:`PixelCNN`. Each is a module whose call
``module(context=None)`` is an :class:`AutoregressiveBernoulli` distribution."""
from .base import AutoregressiveBernoulli, AutoregressiveModule  # noqa: F401
from .made import MADE  # noqa: F401
from .nade import NADE  # noqa: F401
from .pixelcnn import MaskedConv2d, PixelCNN  # noqa: F401

r"""A small PixelCNN over square binary images (van den Oord et al. 2016)."""
from typing import Optional

import torch
from torch.nn import functional as F

from ..._checks import positive_int
from ...nn.masks import conv_mask
from .base import AutoregressiveModule


class MaskedConv2d(torch.nn.Conv2d):
    """A same-padded convolution whose kernel is multiplied by
    :func:`~pyro_deepgen.nn.masks.conv_mask` (type ``"A"`` or ``"B"``), kept as a buffer."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, mask_type: str) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.register_buffer("mask", conv_mask(kernel_size, mask_type))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class PixelCNN(AutoregressiveModule):
    r"""A PixelCNN over ``side x side`` binary images in raster order (flattened to
    ``dim = side**2``, like the package's other image models):

    .. math:: p(x) = \prod_{i=1}^{D} p(x_i \mid x_{<i}),

    one masked :math:`k \times k` convolution of type A (the centre pixel excluded), then
    ``layers`` residual blocks of masked :math:`3 \times 3` type B convolutions (centre included,
    so each logit still sees only the pixels above and to the left), ReLUs and a
    :math:`1 \times 1` convolution to the logits. With ``context_dim``, a linear map of the
    context is added to every feature map (a conditional PixelCNN). There are no vertical and
    horizontal stacks, so the receptive field has the blind spot of the original masks.

    :param int side: image side; ``dim = side**2``.
    :param int channels: feature maps.
    :param int layers: residual type-B blocks.
    :param int kernel_size: odd size of the type-A kernel (the paper: 7).
    :param int context_dim: size of the conditioning input, or ``None``.
    :param str name: the prefix of its parameters in Pyro's param store (see :meth:`model`).

    **Reference**: A. van den Oord, N. Kalchbrenner, K. Kavukcuoglu, *Pixel Recurrent Neural
    Networks*, ICML 2016, arXiv:1601.06759.
    """

    def __init__(self, side: int, channels: int = 32, layers: int = 4, kernel_size: int = 5,
                 context_dim: Optional[int] = None, name: str = "pixelcnn") -> None:
        super().__init__()
        self.name = name
        self.side = positive_int(side, "side")
        self.dim = side * side
        self.channels = positive_int(channels, "channels")
        self.num_layers = positive_int(layers, "layers")
        kernel_size = positive_int(kernel_size, "kernel_size")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (a centre pixel), got {kernel_size}")
        self.context_dim = None if context_dim is None else positive_int(context_dim, "context_dim")
        self.first = MaskedConv2d(1, channels, kernel_size, "A")
        self.blocks = torch.nn.ModuleList(MaskedConv2d(channels, channels, 3, "B") for _ in range(layers))
        self.out = torch.nn.Conv2d(channels, 1, 1)
        self.context_net = None if context_dim is None else torch.nn.Linear(context_dim, channels)

    def logits(self, x: torch.Tensor, context: Optional[torch.Tensor] = None, mask: int = 0) -> torch.Tensor:
        batch = torch.broadcast_shapes(x.shape[:-1], () if context is None else context.shape[:-1])
        x = x.expand(batch + x.shape[-1:]).reshape(-1, 1, self.side, self.side)
        h = self.first(x)
        if context is not None:
            context = context.expand(batch + context.shape[-1:]).reshape(-1, self.context_dim)
            h = h + self.context_net(context)[..., None, None]
        for block in self.blocks:
            h = h + block(F.relu(h))
        return self.out(F.relu(h)).reshape(batch + (self.dim,))

r"""Autoregressive connectivity masks, shared by MADE, the IAF/MAF conditioners and PixelCNN.

**MADE degrees** (Germain et al. 2015, sec. 4). Input :math:`i` gets the degree
:math:`m_0(i) \in \{1..D\}`, its position in the ordering; a hidden unit :math:`k` of layer
:math:`l` gets :math:`m_l(k) \in \{\min_k m_{l-1}(k), \dots, D-1\}`. The masks

.. math:: M^{l}_{k',k} = [m_l(k') \ge m_{l-1}(k)], \qquad
          M^{\mathrm{out}}_{d,k} = [m_0(d) > m_L(k)]

make output :math:`d` a function of the inputs of smaller degree only, for **any** hidden
widths (narrower than :math:`D` included: some inputs then reach fewer outputs).

**PixelCNN masks** (van den Oord et al. 2016): a :math:`k \times k` kernel sees the rows above
and the pixels left of the centre; type ``"A"`` (first layer) excludes the centre, type ``"B"``
(later layers) includes it.

**Reference**: M. Germain, K. Gregor, I. Murray, H. Larochelle, *MADE: Masked Autoencoder for
Distribution Estimation*, ICML 2015, arXiv:1502.03509. A. van den Oord, N. Kalchbrenner,
K. Kavukcuoglu, *Pixel Recurrent Neural Networks*, ICML 2016, arXiv:1601.06759.
"""
from typing import List, Optional, Sequence

import torch


def made_degrees(input_degrees: torch.Tensor, hidden_dims: Sequence[int], random: bool = False,
                 generator: Optional[torch.Generator] = None) -> List[torch.Tensor]:
    """The degrees of the hidden layers for inputs of ``input_degrees`` (a permutation of
    ``1..D``): drawn uniformly from ``[min of the layer below, D-1]`` with ``random``, else spread
    cyclically over that range (deterministic). With ``D = 1`` the hidden units get degree ``D``
    (connected to no output)."""
    d = input_degrees.numel()
    degrees, low = [], int(input_degrees.min())
    for width in hidden_dims:
        high = d - 1
        if high < low:
            m = torch.full((width,), d, dtype=torch.long)
        elif random:
            m = torch.randint(low, high + 1, (width,), generator=generator)
        else:
            m = low + torch.arange(width) % (high - low + 1)
        degrees.append(m)
        low = int(m.min()) if high >= low else low
    return degrees


def made_masks(input_degrees: torch.Tensor, hidden_degrees: Sequence[torch.Tensor],
               output_degrees: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
    """The ``(out, in)`` float masks of the hidden layers (``m_l >= m_{l-1}``) and of the output
    layer (``m_out > m_L``; ``output_degrees`` default ``input_degrees``)."""
    output_degrees = input_degrees if output_degrees is None else output_degrees
    masks, below = [], input_degrees
    for m in hidden_degrees:
        masks.append((m[:, None] >= below[None, :]).float())
        below = m
    masks.append((output_degrees[:, None] > below[None, :]).float())
    return masks


def conv_mask(kernel_size: int, mask_type: str) -> torch.Tensor:
    """The ``(k, k)`` PixelCNN mask of a single-colour convolution: 1 above the centre row and
    left of the centre; the centre itself only for ``mask_type="B"``."""
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size!r}")
    mask = torch.zeros(kernel_size, kernel_size)
    c = kernel_size // 2
    mask[:c] = 1
    mask[c, :c + (mask_type == "B")] = 1
    return mask

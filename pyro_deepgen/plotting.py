"""Figures shared by the command-line tools: image grids, loss curves, 2-D latent manifolds."""
import math
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple

import torch


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def image_shape(dim: int) -> Tuple[int, int]:
    """The (height, width) of a flattened square image (64 -> 8x8, 784 -> 28x28; 560 -> Frey)."""
    if dim == 560:
        return (28, 20)
    side = int(round(math.sqrt(dim)))
    if side * side != dim:
        raise ValueError(f"cannot show vectors of size {dim} as images; give shape=(h, w)")
    return (side, side)


def save_image_grid(
    images: torch.Tensor,
    path: Path,
    shape: Optional[Tuple[int, int]] = None,
    ncol: Optional[int] = None,
    title: Optional[str] = None,
) -> None:
    """Save a batch of flattened images ``(n, h*w)`` with values in [0, 1] as a grid PNG."""
    plt = _pyplot()
    images = images.detach().float().cpu()
    n = images.shape[0]
    h, w = shape or image_shape(images.shape[-1])
    ncol = ncol or int(math.ceil(math.sqrt(n)))
    nrow = int(math.ceil(n / ncol))
    grid = torch.ones(nrow * (h + 1) + 1, ncol * (w + 1) + 1)
    for i in range(n):
        r, c = divmod(i, ncol)
        grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + c * (w + 1):1 + c * (w + 1) + w] = (
            images[i].reshape(h, w).clamp(0, 1)
        )
    fig, ax = plt.subplots(figsize=(max(2.0, ncol * w / 16), max(2.0, nrow * h / 16)))
    ax.imshow(grid.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title)
    fig.savefig(path, bbox_inches="tight", dpi=100)
    plt.close(fig)


def save_loss_curve(
    train: Sequence[float], path: Path, val: Sequence[Tuple[int, float]] = (), ylabel: str = "loss"
) -> None:
    """Plot the per-epoch training loss (and validation points) to ``path``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(range(1, len(train) + 1), train, label="train")
    if val:
        ax.plot([e for e, _ in val], [v for _, v in val], "o-", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_manifold(
    decode_mean: Callable[[torch.Tensor], torch.Tensor],
    path: Path,
    n: int = 15,
    shape: Optional[Tuple[int, int]] = None,
    device=None,
    dtype=None,
) -> None:
    """The learned 2-D manifold (Kingma & Welling 2014, Fig. 4): decode a grid of latent values
    placed at the standard-normal quantiles of an ``n x n`` grid in (0, 1)^2."""
    p = torch.linspace(0.5 / n, 1 - 0.5 / n, n, dtype=torch.float64)
    q = torch.distributions.Normal(0.0, 1.0).icdf(p)
    zz = torch.stack(torch.meshgrid(q, q.flip(0), indexing="xy"), dim=-1).reshape(-1, 2)
    with torch.no_grad():
        images = decode_mean(zz.to(device=device, dtype=dtype or torch.float32))
    save_image_grid(images, path, shape=shape, ncol=n)

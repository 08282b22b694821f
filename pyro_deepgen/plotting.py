"""Every figure of the package: image grids, loss curves, 2-D latent manifolds, the diffusion
trajectory of a 2-D data set, the densities of the 2-D flow benchmark, 2-D codes, the two
players' losses of a GAN and a confusion matrix.

Every figure has a title and labelled axes (an image grid: a caption under it, and column or
row labels where they say what each column or row is); every function saves a PNG and returns
the closed :class:`matplotlib.figure.Figure`, so that its texts can be checked. The one
exception, :func:`show_png`, draws a PNG that a run wrote on an open figure, for notebooks and
the tutorials."""
import math
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence, Tuple, Union

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
    caption: Optional[str] = None,
    column_labels: Optional[Sequence[str]] = None,
    row_labels: Optional[Sequence[str]] = None,
    ylabel: str = "",
):
    """Save a batch of flattened images ``(n, h*w)`` with values in [0, 1] as a grid PNG, filled
    row by row with ``ncol`` images per row (default: a square grid).

    The figure has a title (``title``, default ``"n images"``) and a caption under the grid as
    its x-axis label (``caption``, default ``"n images of h x w pixels, row by row"``);
    ``column_labels`` / ``row_labels`` name the columns (above the grid) and rows (left of it),
    e.g. which column holds the data and which the reconstruction. Returns the (closed)
    :class:`matplotlib.figure.Figure`.
    """
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
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xticks([])
    ax.set_yticks([])
    if column_labels is not None:  # tick labels above the grid, one per column
        ax.set_xticks([1 + c * (w + 1) + (w - 1) / 2 for c in range(ncol)],
                      [column_labels[c % len(column_labels)] for c in range(ncol)], fontsize=7)
        ax.xaxis.set_ticks_position("top")
        ax.tick_params(axis="x", length=0)
    if row_labels is not None:
        ax.set_yticks([1 + r * (h + 1) + (h - 1) / 2 for r in range(nrow)],
                      [row_labels[r % len(row_labels)] for r in range(nrow)], fontsize=7)
        ax.tick_params(axis="y", length=0)
    ax.set_title(title or f"{n} images", pad=14 if column_labels is not None else 6)
    ax.set_xlabel(caption or f"{n} images of {h} x {w} pixels, row by row", fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    fig.savefig(path, bbox_inches="tight", dpi=100)
    plt.close(fig)
    return fig


def save_loss_curve(
    train: Sequence[float], path: Path, val: Sequence[Tuple[int, float]] = (), ylabel: str = "loss",
    title: str = "training loss per epoch",
):
    """Plot the per-epoch training loss (and validation points) to ``path``; returns the (closed)
    figure."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(range(1, len(train) + 1), train, label="train")
    if val:
        ax.plot([e for e, _ in val], [v for _, v in val], "o-", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return fig


def save_manifold(
    decode_mean: Callable[[torch.Tensor], torch.Tensor],
    path: Path,
    n: int = 15,
    shape: Optional[Tuple[int, int]] = None,
    device=None,
    dtype=None,
    title: str = "learned 2-D manifold: decoded means E[x|z]",
):
    """The learned 2-D manifold (Kingma & Welling 2014, Fig. 4): decode a grid of latent values
    placed at the standard-normal quantiles of an ``n x n`` grid in (0, 1)^2; :math:`z_1` grows
    from left to right and :math:`z_2` from bottom to top (the axes are labelled with the
    values). Returns the (closed) figure."""
    p = torch.linspace(0.5 / n, 1 - 0.5 / n, n, dtype=torch.float64)
    q = torch.distributions.Normal(0.0, 1.0).icdf(p)
    zz = torch.stack(torch.meshgrid(q, q.flip(0), indexing="xy"), dim=-1).reshape(-1, 2)
    with torch.no_grad():
        images = decode_mean(zz.to(device=device, dtype=dtype or torch.float32))
    return save_image_grid(images, path, shape=shape, ncol=n, title=title,
                           caption="z_1 (columns, standard-normal quantiles)",
                           column_labels=[f"{v:.1f}" for v in q.tolist()],
                           row_labels=[f"{v:.1f}" for v in q.flip(0).tolist()], ylabel="z_2 (rows)")


def save_diffusion_trajectory(
    path: Path,
    forward: Mapping[int, torch.Tensor],
    reverse: Mapping[int, torch.Tensor],
    title: Optional[str] = None,
    lim: float = 3.0,
):
    """Figure 1 of Sohl-Dickstein et al. (2015) for 2-D data: the top row scatters draws of the
    forward process :math:`q(x_t)` at the steps of ``forward`` (``{t: (n, 2) points}``, in
    increasing t), the bottom row the reverse process :math:`p(x_t)` at the steps of ``reverse``
    (in decreasing t), all on the window ``[-lim, lim]^2``, every panel with its title and axes
    :math:`x_1`, :math:`x_2`. Returns the (closed) figure."""
    plt = _pyplot()
    columns = max(len(forward), len(reverse))
    fig, axes = plt.subplots(2, columns, figsize=(10 * columns / 3, 6.5), sharex=True, sharey=True,
                             squeeze=False)
    for ax, t in zip(axes[0], sorted(forward)):
        ax.scatter(*forward[t].detach().cpu().T.numpy(), s=1, alpha=0.5)
        ax.set_title(f"forward q(x_{t}), t = {t}")
    for ax, t in zip(axes[1], sorted(reverse, reverse=True)):
        ax.scatter(*reverse[t].detach().cpu().T.numpy(), s=1, alpha=0.5, color="C1")
        ax.set_title(f"reverse p(x_{t}), t = {t}")
    for ax in axes.flat:
        ax.set_xlabel("x_1")
        ax.set_ylabel("x_2")
    axes[0, 0].set_xlim(-lim, lim)
    axes[0, 0].set_ylim(-lim, lim)
    fig.suptitle(title or "diffusion: forward process q (top) and reverse process p (bottom)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return fig


def save_flow_densities(
    draws: Mapping[Tuple[str, str, int], torch.Tensor],
    path: Path,
    energies: Mapping[str, Callable[[torch.Tensor], torch.Tensor]],
    lim: float = 4.0,
    bins: int = 100,
    title: str = "true densities exp(-U) and the fitted flows q_K (histograms of draws)",
):
    """Figure 3 of Rezende & Mohamed (2015): one row per energy :math:`U` (``energies[name]``
    maps ``(..., 2)`` points to :math:`U`), the true density :math:`e^{-U}` on a grid, then a
    2-D histogram of the draws of each fitted flow (``draws[(energy, flow, depth)]``, one column
    per flow and depth), all on the window ``[-lim, lim]^2``. Each panel has its column title
    and its energy as y label; the figure has ``title`` and the axes :math:`z_1`, :math:`z_2`
    of the window. Returns the (closed) figure."""
    plt = _pyplot()
    names = list(dict.fromkeys(e for e, _, _ in draws))
    columns = list(dict.fromkeys((f, k) for _, f, k in draws))
    fig, axes = plt.subplots(len(names), 1 + len(columns), squeeze=False,
                             figsize=(1.6 * (1 + len(columns)), 1.6 * len(names)))
    axis = torch.linspace(-lim, lim, 200, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), -1)
    edges = torch.linspace(-lim, lim, bins + 1).numpy()
    for i, e in enumerate(names):
        density = (-energies[e](grid)).exp()
        axes[i, 0].imshow(density.numpy(), origin="lower", extent=(-lim, lim, -lim, lim),
                          cmap="viridis")
        for j, (f, k) in enumerate(columns, start=1):
            z = draws.get((e, f, k))
            if z is not None:
                axes[i, j].hist2d(z[:, 0].numpy(), z[:, 1].numpy(), bins=[edges, edges],
                                  cmap="viridis")
            axes[i, j].set_facecolor(plt.get_cmap("viridis")(0.0))
    for j, (f, k) in enumerate(columns, start=1):
        axes[0, j].set_title(f"{f} K={k}", fontsize=8)
    axes[0, 0].set_title("exp(-U)", fontsize=8)
    for i, e in enumerate(names):
        for j, ax in enumerate(axes[i]):
            ax.set_ylabel(f"{e}: z_2" if j == 0 else "z_2", fontsize=7)
            ax.set_xlabel("z_1", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal")
    fig.suptitle(f"{title}, z in [-{lim:g}, {lim:g}]^2", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return fig


def save_codes(codes: torch.Tensor, labels: torch.Tensor, path: Path, title: str):
    """Scatter of 2-D codes coloured by class label; returns the (closed) figure."""
    plt = _pyplot()
    codes, labels = codes.detach().float().cpu().numpy(), labels.cpu().numpy()
    fig, ax = plt.subplots(figsize=(5, 4.5))
    points = ax.scatter(codes[:, 0], codes[:, 1], c=labels, cmap="tab10", s=8, vmin=-0.5, vmax=9.5)
    fig.colorbar(points, ax=ax, ticks=range(10), label="label")
    ax.set_xlabel("code unit 1")
    ax.set_ylabel("code unit 2")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return fig


def save_player_losses(per_epoch: Mapping[str, Sequence[float]], path: Path, objective: str):
    """Both players' losses per epoch (and the mean discriminator outputs) in one figure; returns
    the (closed) figure."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    epochs = range(1, len(per_epoch["generator"]) + 1)
    axes[0].plot(epochs, per_epoch["discriminator"], label="discriminator")
    axes[0].plot(epochs, per_epoch["generator"], label="generator")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("loss (mean per step)")
    axes[0].set_title(f"both players ({objective})")
    axes[0].legend()
    axes[1].plot(epochs, per_epoch["d_real"], label="on real data")
    axes[1].plot(epochs, per_epoch["d_fake"], label="on generated data")
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("discriminator output (logit / critic)")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return fig


def save_confusion(pred: torch.Tensor, y: torch.Tensor, path: Path, title: str, num_classes: int = 10):
    """The confusion matrix (counts; rows the true class) as a titled, labelled heat map;
    returns the (closed) figure."""
    plt = _pyplot()
    k = num_classes
    m = torch.bincount(y.cpu() * k + pred.cpu(), minlength=k * k).reshape(k, k).numpy()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    im = ax.imshow(m, cmap="Blues")
    for i in range(k):
        for j in range(k):
            if m[i, j]:
                ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if m[i, j] > m.max() / 2 else "black")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"confusion matrix on the test set\n{title}")
    fig.colorbar(im, ax=ax, label="test images")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return fig


def show_png(path: Union[str, Path], title: str = "", width: float = 6.0):
    """Draw a PNG that a run wrote (e.g. ``samples.png``) on a new matplotlib figure, titled and
    without axes, at ``width`` inches and the image's aspect ratio; returns the figure (the
    tutorials use it to put a run's figures on their page)."""
    plt = _pyplot()
    image = plt.imread(str(path))
    fig, ax = plt.subplots(figsize=(width, width * image.shape[0] / image.shape[1]))
    ax.imshow(image)
    ax.set_title(title)
    ax.axis("off")
    return fig

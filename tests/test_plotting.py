"""Every figure of ``pyro_deepgen.plotting`` has a title and labelled axes, and says what its
columns or rows are where that is not obvious. Each function returns the Figure it saved."""
import pytest
import torch

from pyro_deepgen.data.toy import EnergyModel
from pyro_deepgen.plotting import (
    save_diffusion_trajectory,
    save_flow_densities,
    save_image_grid,
    save_loss_curve,
    save_manifold,
    show_png,
)


def _title(fig):
    suptitle = fig._suptitle.get_text() if fig._suptitle is not None else ""
    return suptitle or " ".join(ax.get_title() for ax in fig.axes).strip()


def _check_titled_and_labelled(fig, path):
    assert path.stat().st_size > 0
    assert _title(fig), "the figure has no title"
    assert fig.axes
    for ax in fig.axes:
        assert ax.get_xlabel().strip(), f"axes {ax} has no x label"
    return fig


def test_image_grid_has_title_and_caption(tmp_path):
    fig = save_image_grid(torch.rand(6, 64), tmp_path / "grid.png", title="six images",
                          caption="uniform noise")
    _check_titled_and_labelled(fig, tmp_path / "grid.png")
    (ax,) = fig.axes
    assert ax.get_title() == "six images" and ax.get_xlabel() == "uniform noise"
    # the defaults are a title and a caption too
    fig = save_image_grid(torch.rand(4, 64), tmp_path / "plain.png")
    assert fig.axes[0].get_title() == "4 images" and "8 x 8 pixels" in fig.axes[0].get_xlabel()


def test_grid_column_and_row_labels(tmp_path):
    fig = save_image_grid(torch.rand(8, 64), tmp_path / "pairs.png", ncol=4, title="pairs",
                          column_labels=("data", "recon"), row_labels=("first", "second"))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["data", "recon", "data", "recon"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["first", "second"]


def test_vae_reconstructions_say_which_column_is_which(tmp_path):
    from pyro_deepgen.experiments.vae import write_figures
    from pyro_deepgen.models import VAE
    from pyro_deepgen.train import History

    vae = VAE(64, 2, (8,))
    history = History(loss=[3.0, 2.0])
    figures = {}
    import pyro_deepgen.experiments.vae as vae_module

    def spy(images, path, *args, **kwargs):
        figures[path.name] = save_image_grid(images, path, *args, **kwargs)
        return figures[path.name]

    with pytest.MonkeyPatch.context() as m:
        m.setattr(vae_module, "save_image_grid", spy)
        write_figures(vae, torch.rand(40, 64), history, tmp_path)
    ax = figures["reconstructions.png"].axes[0]
    assert "data" in ax.get_title() and "reconstruction" in ax.get_title()
    assert [t.get_text() for t in ax.get_xticklabels()][:2] == ["data", "recon"]
    assert "reconstruction" in ax.get_xlabel()
    assert figures["samples.png"].axes[0].get_title()
    assert (tmp_path / "manifold.png").stat().st_size > 0


def test_loss_curve(tmp_path):
    fig = save_loss_curve([3.0, 2.0, 1.5], tmp_path / "loss.png", [(2, 2.5)], ylabel="-ELBO")
    _check_titled_and_labelled(fig, tmp_path / "loss.png")
    assert fig.axes[0].get_xlabel() == "epoch" and fig.axes[0].get_ylabel() == "-ELBO"


def test_manifold(tmp_path):
    fig = save_manifold(lambda z: torch.sigmoid(z.sum(-1, keepdim=True).expand(-1, 64)),
                        tmp_path / "manifold.png", n=5)
    _check_titled_and_labelled(fig, tmp_path / "manifold.png")
    ax = fig.axes[0]
    assert "z_1" in ax.get_xlabel() and "z_2" in ax.get_ylabel()
    # z_1 grows to the right, z_2 upward: the tick labels are the latent values
    z1 = [float(t.get_text()) for t in ax.get_xticklabels()]
    z2 = [float(t.get_text()) for t in ax.get_yticklabels()]
    assert z1 == sorted(z1) and z2 == sorted(z2, reverse=True) and len(z1) == 5


def test_diffusion_trajectory(tmp_path):
    points = {t: torch.randn(50, 2) for t in (0, 2, 4)}
    fig = save_diffusion_trajectory(tmp_path / "trajectory.png", points, points)
    _check_titled_and_labelled(fig, tmp_path / "trajectory.png")
    assert all(ax.get_title() and ax.get_ylabel() for ax in fig.axes)


def test_flow_densities(tmp_path):
    draws = {("U1", "planar", 2): torch.randn(200, 2), ("U1", "nice", 2): torch.randn(200, 2)}
    fig = save_flow_densities(draws, tmp_path / "flows.png", {"U1": EnergyModel("U1").energy})
    _check_titled_and_labelled(fig, tmp_path / "flows.png")
    assert [ax.get_title() for ax in fig.axes] == ["exp(-U)", "planar K=2", "nice K=2"]
    assert fig.axes[0].get_ylabel().startswith("U1")


def test_show_png_draws_the_written_image_at_its_aspect_ratio(tmp_path):
    path = tmp_path / "grid.png"
    save_image_grid(torch.rand(6, 64), path, (8, 8), title="t", caption="c")
    fig = show_png(path, "a run's samples", width=4.0)
    image = fig.axes[0].get_images()[0].get_array()
    width, height = fig.get_size_inches()
    assert fig.axes[0].get_title() == "a run's samples"
    assert width == 4.0 and height == pytest.approx(4.0 * image.shape[0] / image.shape[1])
    assert not fig.axes[0].axison
    import matplotlib.pyplot as plt

    plt.close(fig)

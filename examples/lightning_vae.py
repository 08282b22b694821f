"""Train the package's VAE with the IWAE bound and the DReG gradient (Tucker et al. 2019) under
PyTorch Lightning, for users whose training already runs on Lightning (optional dependency:
``pip install pyro-deepgen[lightning]``).

The loss is :class:`~pyro.infer.ELBOModule`: ``TraceIWAE_ELBO(...)(vae.model, vae.guide)`` is an
``nn.Module`` whose ``forward`` is the ELBO's ``differentiable_loss`` (whose gradient is the
DReG estimator's), so Lightning's DDP strategy averages its gradients like those of any module.
With ``pyro.settings.set(module_local_params=True)`` the VAE's parameters live in the module, not
in Pyro's global param store, which every DDP process would otherwise hold on its own (Pyro's
``examples/svi_lightning.py`` does the same). Lightning's ``DistributedSampler`` shards the
data; the data plate is scaled to the global data size by ``num_data``, so each rank's loss is
an unbiased estimate of the whole objective and DDP's average of them is one too; ``setup``
seeds each rank with :func:`pyro.set_rng_seed` on ``seed + global_rank``, so that the ranks draw
different guide noise.

    python examples/lightning_vae.py --devices 2 --strategy ddp --epochs 5

Without Lightning, the package's own ``fit`` does the same under ``torchrun`` (see
docs/distributed.rst).
"""
import argparse

import lightning.pytorch as pl
import pyro
import torch

from pyro_deepgen.data import load_digits
from pyro_deepgen.infer import TraceIWAE_ELBO
from pyro_deepgen.models import VAE


class LitVAE(pl.LightningModule):
    """The VAE and its DReG-IWAE loss as a LightningModule (the loss scaled per data point)."""

    def __init__(self, x_dim: int, num_data: int, z_dim: int = 8, hidden=(64,), particles: int = 8,
                 lr: float = 1e-3, seed: int = 0):
        super().__init__()
        self.vae = VAE(x_dim, z_dim, tuple(hidden))
        self.loss_fn = TraceIWAE_ELBO(num_particles=particles, estimator="dreg")(self.vae.model, self.vae.guide)
        self.num_data, self.lr, self.seed = num_data, lr, seed

    def setup(self, stage: str) -> None:
        pyro.set_rng_seed(self.seed + self.global_rank)  # each rank its own guide noise

    def training_step(self, batch, batch_idx):
        (x,) = batch
        loss = self.loss_fn(x, num_data=self.num_data) / self.num_data  # -IWAE bound per data point
        self.log("loss", loss, prog_bar=True, sync_dist=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def train(devices: int = 1, strategy: str = "auto", epochs: int = 1, batch_size: int = 100,
          limit_batches=None, seed: int = 0) -> LitVAE:
    pyro.settings.set(module_local_params=True)
    torch.manual_seed(seed)  # the same initial weights on every rank (DDP broadcasts rank 0's anyway)
    x, _ = load_digits(binarize="threshold")
    data = torch.utils.data.TensorDataset(x)
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size // devices, shuffle=True)
    module = LitVAE(x.shape[1], len(data), seed=seed)
    trainer = pl.Trainer(accelerator="cpu", devices=devices, strategy=strategy, max_epochs=epochs,
                         limit_train_batches=limit_batches, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, loader)
    return module


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--strategy", default="auto", help="e.g. ddp (several processes) or auto")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=100, help="global batch, split over the devices")
    args = parser.parse_args()
    train(args.devices, args.strategy, args.epochs, args.batch_size)

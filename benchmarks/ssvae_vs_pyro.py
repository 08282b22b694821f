"""M2 against Pyro's example ``examples/vae/ss_vae_M2.py``, side by side in one process.

Pyro's example is not installed with pyro-ppl, so its M2 is written out here as in Pyro 1.9.1
(500 softplus hidden units, z of 50, one-hot y enumerated by ``config_enumerate(expand=True)``
under ``TraceEnum_ELBO(max_plate_nesting=1)``, Adam at lr 0.00042 and beta1 0.9, a second
``SVI`` on the labelled batches with ``poutine.scale(46)`` on ``y_aux``, one labelled batch
interleaved among the unlabelled ones per epoch, losses without subsampling scales). The
package's ``SSVAE`` is trained through the ``ssvae`` command's ``train_m2`` (the classification
term in the same objective, every labelled pair in every step, lr 3e-3). Both: the same
architecture, the same 100 class-balanced labels of mnist-5k (draw 0), batch 100, the same
number of epochs (passes over the 4400 unlabelled images); scored on the seeded 10% hold-out.

    .venv/bin/python benchmarks/ssvae_vs_pyro.py --epochs 10
"""
import argparse
import dataclasses
import tempfile
import time
import warnings
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, TraceEnum_ELBO, config_enumerate
from pyro.optim import Adam
from torch import nn

from _shared_data import default_mnist_root, require_mnist_root
from pyro_deepgen.data import load_train_test
from pyro_deepgen.experiments.common import prepare_output
from pyro_deepgen.experiments.ssvae import SSVAEConfig, balanced_labels, train_m2


class PyroExampleM2(nn.Module):
    """Pyro 1.9.1's ``examples/vae/ss_vae_M2.py`` SSVAE (its ``MLP`` helper as concatenations)."""

    def __init__(self, x_dim=784, classes=10, z_dim=50, hidden=500, aux_loss_multiplier=46.0):
        super().__init__()
        self.classes, self.z_dim, self.aux = classes, z_dim, aux_loss_multiplier
        self.encoder_y = nn.Sequential(nn.Linear(x_dim, hidden), nn.Softplus(), nn.Linear(hidden, classes),
                                       nn.Softmax(-1))
        self.encoder_z = nn.Sequential(nn.Linear(x_dim + classes, hidden), nn.Softplus(), nn.Linear(hidden, 2 * z_dim))
        self.decoder = nn.Sequential(nn.Linear(z_dim + classes, hidden), nn.Softplus(), nn.Linear(hidden, x_dim),
                                     nn.Sigmoid())

    @staticmethod
    def _cat(x, y):
        shape = torch.broadcast_shapes(x.shape[:-1], y.shape[:-1])
        return torch.cat([x.expand(shape + x.shape[-1:]), y.expand(shape + y.shape[-1:])], -1)

    def model(self, xs, ys=None):
        pyro.module("ss_vae", self)
        b = xs.size(0)
        with pyro.plate("data"):
            zs = pyro.sample("z", dist.Normal(xs.new_zeros(b, self.z_dim), xs.new_ones(b, self.z_dim)).to_event(1))
            ys = pyro.sample("y", dist.OneHotCategorical(xs.new_ones(b, self.classes) / self.classes), obs=ys)
            loc = self.decoder(self._cat(zs, ys))
            pyro.sample("x", dist.Bernoulli(loc, validate_args=False).to_event(1), obs=xs)

    def guide(self, xs, ys=None):
        with pyro.plate("data"):
            if ys is None:
                ys = pyro.sample("y", dist.OneHotCategorical(self.encoder_y(xs)))
            out = self.encoder_z(self._cat(xs, ys))
            pyro.sample("z", dist.Normal(out[..., :self.z_dim], out[..., self.z_dim:].exp()).to_event(1))

    def model_classify(self, xs, ys=None):
        pyro.module("ss_vae", self)
        with pyro.plate("data"), pyro.poutine.scale(scale=self.aux):
            pyro.sample("y_aux", dist.OneHotCategorical(self.encoder_y(xs)), obs=ys)

    def guide_classify(self, xs, ys=None):
        pass


def train_pyro_example(x_l, y_l, x_u, epochs, batch_size, seed):
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    net = PyroExampleM2()
    optimizer = Adam({"lr": 0.00042, "betas": (0.9, 0.999)})
    guide = config_enumerate(net.guide, "parallel", expand=True)
    losses = [SVI(net.model, guide, optimizer, loss=TraceEnum_ELBO(max_plate_nesting=1,
                                                                   strict_enumeration_warning=False)),
              SVI(net.model_classify, net.guide_classify, optimizer,
                  loss=TraceEnum_ELBO(max_plate_nesting=1, strict_enumeration_warning=False))]
    y_onehot = torch.nn.functional.one_hot(y_l, 10).float()
    sup_batches = max(len(x_l) // batch_size, 1)
    unsup_batches = len(x_u) // batch_size
    periodic = (sup_batches + unsup_batches) // sup_batches  # the example's interleaving
    t0 = time.time()
    for _ in range(epochs):
        order_u, order_l = torch.randperm(len(x_u)), torch.randperm(len(x_l))
        su = sl = 0
        for i in range(sup_batches + unsup_batches):
            if i % periodic == 1 and sl < sup_batches:
                idx = order_l[sl * batch_size:(sl + 1) * batch_size]
                sl += 1
                for loss in losses:
                    loss.step(x_l[idx], y_onehot[idx])
            else:
                idx = order_u[su * batch_size:(su + 1) * batch_size]
                su += 1
                for loss in losses:
                    loss.step(x_u[idx])
    return net, (time.time() - t0) / epochs


def main(args):
    require_mnist_root(args.data_root)
    torch.set_num_threads(args.threads)
    # the example's auxiliary model has y_aux, which its empty guide lacks (as in Pyro's own runs)
    warnings.filterwarnings("ignore", message="Found vars in model but not guide")
    data = load_train_test("mnist", str(args.data_root), seed=0)
    x, y, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    index = balanced_labels(y, 100, 0)
    unlabelled = torch.ones(len(x), dtype=torch.bool)
    unlabelled[index] = False
    rows = []
    net, sec = train_pyro_example(x[index], y[index], x[unlabelled], args.epochs, args.batch_size, seed=0)
    with torch.no_grad():
        error = 100 * (net.encoder_y(x_test).argmax(-1) != y_test).float().mean().item()
    rows.append(("Pyro's example (second SVI, 46 per labelled pair, lr 0.00042)", error, sec))
    with tempfile.TemporaryDirectory() as tmp:
        config = SSVAEConfig(model="m2", data="mnist", data_root=str(args.data_root), labels=100, label_draws=1,
                             epochs=args.epochs, batch_size=args.batch_size, classifier_dropout=args.classifier_dropout,
                             progress=False, out=Path(tmp) / "run")
        config = config.resolved()
        folder = prepare_output(config.out, "ssvae", overwrite=False, resume=False)
        pyro.clear_param_store()
        ours, sec = train_m2(config, x, y, index, 0, folder, "draw0")
        error = 100 * (ours.classify(x_test).argmax(-1) != y_test).float().mean().item()
        rows.append((f"pyro_deepgen SSVAE (one objective, alpha 46 x 100, lr {config.lr}, "
                     f"classifier dropout {config.classifier_dropout})", error, sec))
        print({k: v for k, v in dataclasses.asdict(config).items() if k in ("z_dim", "hidden", "lr", "epochs")})
    print(f"mnist-5k, 100 labels (draw 0), {args.epochs} epochs, batch {args.batch_size}, "
          f"{len(x_test)} test images, {args.threads} threads")
    for name, error, sec in rows:
        print(f"  {name}: test error {error:.1f}%, {sec:.2f} s per epoch")
    print(f"  time per epoch, ours / Pyro's: {rows[1][2] / rows[0][2]:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=default_mnist_root())
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--classifier-dropout", type=float, default=0.0,
                        help="dropout on our q(y|x)'s input; default 0, as Pyro's example (the command's MNIST "
                             "default is 0.7)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    main(parser.parse_args())

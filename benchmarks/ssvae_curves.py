"""Semi-supervised MNIST: the test error of one M2 or M1+M2 over its epochs (the diagnosis of docs/ssvae.rst).

Trains the package's SSVAE (m2) or StackedSSVAE (m1m2, on an M1 VAE trained first) with
SemiSupervisedLoss in a plain Adam loop on one class-balanced draw of 100 labels of mnist-5k
(test set: the seeded 10% hold-out) and prints, every --every epochs, the error on the labelled
pairs, on the unlabelled training images and on the test images: whether the 100 labels are
fitted, and whether the unlabelled bound moves q(y|x) towards or away from the digit classes.
For m1m2 it also prints M1's posterior means + RBF SVM / logistic regression.

    .venv/bin/python benchmarks/ssvae_curves.py --lr 1e-3 --epochs 30                # M2
    .venv/bin/python benchmarks/ssvae_curves.py --model m1m2 --lr 1e-3 --epochs 40   # M1+M2
    .venv/bin/python benchmarks/ssvae_curves.py --model m1m2 --m1-z 20 --z-dim 2 --hidden 100 \
        --alpha-per-label 200 --classifier-dropout 0.3 --lr 2e-3 --epochs 150         # the defaults

M1+M2's errors average q(y|z1) over 32 draws of z1 (StackedSSVAE.classify).
"""
import argparse
import time

import pyro
import torch
from pyro.infer import Trace_ELBO

from _shared_data import default_mnist_root, require_mnist_root
from pyro_deepgen.data import load_train_test
from pyro_deepgen.experiments.ssvae import balanced_labels
from pyro_deepgen.models import SSVAE, VAE, StackedSSVAE
from pyro_deepgen.models.ssvae import SemiSupervisedLoss
from pyro_deepgen.train import fit


def m1_baselines(m1, x_l, y_l, x_test, y_test):
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    with torch.no_grad():
        f_l, f_t = m1.encode(x_l)[0].numpy(), m1.encode(x_test)[0].numpy()
    for name, clf in (("RBF SVM", SVC(kernel="rbf", gamma="scale")), ("logistic", LogisticRegression(max_iter=3000))):
        error = 100 * float((clf.fit(f_l, y_l.numpy()).predict(f_t) != y_test.numpy()).mean())
        print(f"M1 means + {name}: test error {error:.1f}%", flush=True)


def main(args):
    require_mnist_root(args.data_root)
    print(vars(args), flush=True)
    data = load_train_test("mnist", str(args.data_root), seed=0)
    x, y, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    index = balanced_labels(y, args.labels, args.draw)
    unlabelled = torch.ones(len(x), dtype=torch.bool)
    unlabelled[index] = False
    x_u, y_u = x[unlabelled], y[unlabelled]
    pyro.set_rng_seed(args.draw)
    features = None
    if args.model == "m1m2":
        t0 = time.time()
        m1 = VAE(x.shape[1], args.m1_z, args.m1_hidden, activation="softplus")
        history = fit(m1.model, m1.guide, x, loss=Trace_ELBO(max_plate_nesting=1), lr=args.m1_lr,
                      epochs=args.m1_epochs, batch_size=args.batch_size, seed=args.draw, progress=False)
        print(f"M1: {args.m1_epochs} epochs, {(time.time() - t0) / args.m1_epochs:.2f} s per epoch, "
              f"loss {history.loss[-1]:.1f}", flush=True)
        m1_baselines(m1, x[index], y[index], x_test, y_test)
        net = StackedSSVAE(m1, 10, args.z_dim, args.hidden, classifier_dropout=args.classifier_dropout,
                           classifier_input=args.classifier_input, classifier_hidden=args.classifier_hidden)
        features = net.features
    else:
        net = SSVAE(x.shape[1], 10, args.z_dim, args.hidden, classifier_dropout=args.classifier_dropout,
                    classifier_hidden=args.classifier_hidden)
    loss = SemiSupervisedLoss(x[index], y[index], len(x_u), alpha=args.alpha_per_label * args.labels,
                              features=features)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=args.lr)
    classifier = net.m2 if args.model == "m1m2" else net  # the module whose class_logits the control trains
    ema = [p.detach().clone() for p in params] if args.ema else None

    def error(xs, ys):
        return 100.0 * (net.classify(xs).argmax(-1) != ys).float().mean().item()

    def ema_error(xs, ys):
        saved = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, e in zip(params, ema):
                p.copy_(e)
        result = error(xs, ys)
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)
        return result

    t0 = time.time()
    for epoch in range(1, args.epochs + 1):
        order = torch.randperm(len(x_u))
        for i in range(0, len(x_u), args.batch_size):
            batch = x_u[order[i:i + args.batch_size]]
            if args.binarize:
                batch = torch.bernoulli(batch)
            optimizer.zero_grad()
            if args.supervised_only:  # the control: the classification term alone, same classifier and dropout
                xl = x[index] if features is None else features(x[index])
                logits = classifier.class_logits(xl)
                torch.nn.functional.cross_entropy(logits, y[index]).backward()
            else:
                loss(net.model, net.guide, batch).backward()
            optimizer.step()
            if ema is not None:
                with torch.no_grad():
                    for p, e in zip(params, ema):
                        e.lerp_(p, 1 - args.ema)
        if epoch % args.every == 0 or epoch == args.epochs:
            print(f"epoch {epoch}: error labelled {error(x[index], y[index]):.1f}%, unlabelled {error(x_u, y_u):.1f}%, "
                  f"test {error(x_test, y_test):.1f}%"
                  + (f" (EMA: test {ema_error(x_test, y_test):.1f}%)" if ema is not None else "")
                  + f"; {(time.time() - t0) / epoch:.2f} s per epoch", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=str, default=str(default_mnist_root()))
    parser.add_argument("--model", choices=["m2", "m1m2"], default="m2")
    parser.add_argument("--labels", type=int, default=100)
    parser.add_argument("--draw", type=int, default=0, help="label draw (its seed)")
    parser.add_argument("--alpha-per-label", type=float, default=46.0)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--z-dim", type=int, default=50)
    parser.add_argument("--hidden", type=int, nargs="+", default=[500])
    parser.add_argument("--classifier-dropout", type=float, default=0.0, help="dropout on q(y|x)'s input")
    parser.add_argument("--ema", type=float, default=0.0,
                        help="also report the test error at an exponential moving average of the parameters "
                             "with this decay per step (0: off)")
    parser.add_argument("--classifier-input", choices=["code", "image"], default="code",
                        help="m1m2: q(y|z1) (code) or q(y|x) (image)")
    parser.add_argument("--classifier-hidden", type=int, nargs="+", default=None,
                        help="hidden layers of q(y|.) (default: --hidden)")
    parser.add_argument("--supervised-only", action="store_true",
                        help="control: train q(y|x) on the labelled pairs alone (same steps, dropout, optimizer)")
    parser.add_argument("--binarize", action="store_true", help="a fresh Bernoulli draw of every unlabelled batch")
    parser.add_argument("--m1-epochs", type=int, default=40)
    parser.add_argument("--m1-z", type=int, default=50)
    parser.add_argument("--m1-hidden", type=int, nargs="+", default=[500])
    parser.add_argument("--m1-lr", type=float, default=1e-3)
    main(parser.parse_args())

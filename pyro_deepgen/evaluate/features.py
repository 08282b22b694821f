r"""A small convolutional digit classifier whose penultimate layer is the feature space of the
sample metrics (:mod:`pyro_deepgen.evaluate.samples`).

The metrics of Heusel et al. (2017) use Inception-v3 features trained on ImageNet; offline, and
for 8x8 or 28x28 digits, this package trains its own classifier on the user's training split
(seconds on a CPU) and caches it. Numbers computed in these features are comparable only
between runs that share the classifier (same data, same settings, same seed), never with
published FID values.

Architecture (``side`` x ``side`` grey images, side 8 or 28): conv 3x3 (16) - ReLU - [max-pool
2 when side >= 16] - conv 3x3 (32) - ReLU - max-pool 2 - adaptive average pool to 4x4 -
linear 512 -> ``feature_dim`` - ReLU (the **features**) - linear -> classes. Each training
minibatch is, with probability 1/2 per image, replaced by a Bernoulli draw of its pixels, so that
binary samples (RBM, autoregressive models) and grey ones (VAE means, GAN) land in the same
feature distribution as the data.
"""
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Dict, Optional, Union

import torch
from torch import nn

from ..data.checks import check_finite

#: The version of the architecture and training recipe; a new one invalidates old cache files.
CLASSIFIER_VERSION = 1


class DigitClassifier(nn.Module):
    """The classifier of the module doc, on flat images ``(n, side*side)`` in [0, 1].

    :param side: image side (8 for the embedded digits, 28 for MNIST).
    :param num_classes: number of classes.
    :param feature_dim: width of the penultimate (feature) layer.
    """

    def __init__(self, side: int, num_classes: int = 10, feature_dim: int = 128) -> None:
        super().__init__()
        if side < 4:
            raise ValueError(f"side must be at least 4 pixels, got {side}")
        self.side, self.num_classes, self.feature_dim = int(side), int(num_classes), int(feature_dim)
        layers = [nn.Conv2d(1, 16, 3, padding=1), nn.ReLU()]
        if side >= 16:
            layers.append(nn.MaxPool2d(2))
        layers += [nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(4),
                   nn.Flatten(), nn.Linear(32 * 16, feature_dim), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(feature_dim, num_classes)

    def _images(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.side ** 2:
            raise ValueError(f"x must be flat images of shape (n, {self.side ** 2}), got {tuple(x.shape)}")
        return x.reshape(-1, 1, self.side, self.side)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate activations ``(n, feature_dim)``."""
        return self.body(self._images(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(n, num_classes)``."""
        return self.head(self.features(x))


@torch.no_grad()
def _batched(fn, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    return torch.cat([fn(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])


@torch.no_grad()
def classifier_features(classifier: DigitClassifier, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Penultimate features of ``x`` (eval mode, in batches), on ``x``'s device."""
    p = next(classifier.parameters())
    was = classifier.training
    classifier.eval()
    try:
        return _batched(classifier.features, x.to(p), batch_size)
    finally:
        classifier.train(was)


@torch.no_grad()
def predict(classifier: DigitClassifier, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Class probabilities ``(n, num_classes)`` of ``x``."""
    p = next(classifier.parameters())
    was = classifier.training
    classifier.eval()
    try:
        return _batched(lambda b: classifier(b).softmax(-1), x.to(p), batch_size)
    finally:
        classifier.train(was)


def accuracy(classifier: DigitClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of ``x`` classified as ``y``."""
    return (predict(classifier, x).argmax(-1).cpu() == y.cpu()).float().mean().item()


def _check_labelled(x: torch.Tensor, y: torch.Tensor) -> int:
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        raise ValueError(f"train_data must be a (n, side*side) tensor of images in [0, 1], got "
                         f"{getattr(x, 'shape', type(x))}")
    check_finite(x, "train_data")
    side = math.isqrt(x.shape[1])
    if side * side != x.shape[1]:
        raise ValueError(f"train_data must hold square images (side*side pixels), got {x.shape[1]} pixels")
    if not isinstance(y, torch.Tensor) or y.shape != (x.shape[0],):
        raise ValueError(f"train_labels must be a ({x.shape[0]},) tensor of class indices, got "
                         f"{getattr(y, 'shape', type(y))}")
    return side


def train_classifier(x: torch.Tensor, y: torch.Tensor, num_classes: int = 10, epochs: int = 5,
                     batch_size: int = 64, lr: float = 2e-3, seed: int = 0) -> DigitClassifier:
    """Train :class:`DigitClassifier` on images ``x`` ``(n, side*side)`` in [0, 1] with labels
    ``y``: Adam on the cross-entropy, with the Bernoulli augmentation of the module doc. Runs on
    ``x``'s device; seeded by ``seed`` (its own generator: the global random state is left as it
    was)."""
    side = _check_labelled(x, y)
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise ValueError(f"train_labels must lie in [0, {num_classes}), got [{int(y.min())}, {int(y.max())}]")
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = DigitClassifier(side, num_classes).to(x)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        gen = torch.Generator(device="cpu").manual_seed(seed)
        n = x.shape[0]
        y = y.to(x.device)
        for _ in range(epochs):
            order = torch.randperm(n, generator=gen).to(x.device)
            for i in range(0, n, batch_size):
                idx = order[i:i + batch_size]
                xb = x[idx]
                flip = torch.rand(xb.shape[0], 1, generator=gen).to(x) < 0.5
                draw = torch.bernoulli(xb.clamp(0, 1), generator=None)
                xb = torch.where(flip, draw, xb)
                loss = nn.functional.cross_entropy(model(xb), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
    finally:
        torch.random.set_rng_state(state)
    model.eval()
    return model


def cache_key(x: torch.Tensor, y: torch.Tensor, settings: Dict) -> str:
    """SHA-256 of the training images, labels, settings and :data:`CLASSIFIER_VERSION`."""
    h = hashlib.sha256()
    h.update(json.dumps({**settings, "version": CLASSIFIER_VERSION}, sort_keys=True).encode())
    h.update(str(tuple(x.shape)).encode())
    h.update(x.detach().cpu().to(torch.float32).contiguous().numpy().tobytes())
    h.update(y.detach().cpu().to(torch.int64).contiguous().numpy().tobytes())
    return h.hexdigest()


def cached_classifier(x: torch.Tensor, y: torch.Tensor, cache_dir: Optional[Union[str, Path]] = None,
                      num_classes: int = 10, epochs: int = 5, seed: int = 0) -> DigitClassifier:
    """:func:`train_classifier` on ``(x, y)``, or the classifier cached in ``cache_dir`` for the
    same data and settings (``classifier-<key>.pt``, see
    :func:`~pyro_deepgen.evaluate.features.cache_key`; written atomically: a
    temporary file then :func:`os.replace`, read with ``weights_only=True``). ``cache_dir=None``
    trains without caching; a cache that cannot be written is skipped."""
    settings = {"num_classes": num_classes, "epochs": epochs, "seed": seed}
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"classifier-{cache_key(x, y, settings)[:16]}.pt"
        if path.is_file():
            try:
                saved = torch.load(path, map_location=x.device, weights_only=True)
                model = DigitClassifier(saved["side"], saved["num_classes"]).to(x)
                model.load_state_dict(saved["state_dict"])
                return model.eval()
            except (OSError, RuntimeError, KeyError, ValueError):
                pass  # unreadable or stale: train afresh and replace it
    model = train_classifier(x, y, num_classes=num_classes, epochs=epochs, seed=seed)
    if path is not None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            torch.save({"side": model.side, "num_classes": model.num_classes, "settings": settings,
                        "state_dict": model.state_dict()}, tmp)
            os.replace(tmp, path)
        except (OSError, RuntimeError):  # torch.save raises RuntimeError for a missing folder
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
    return model

r"""Score samples of any generative model against held-out data, offline: the front door of the
sample metrics.

:func:`score_samples` takes samples ``(n, D)`` in [0, 1] pixel space (a VAE's decoder means,
RBM fantasy particles, diffusion, autoregressive, GAN or GSN samples) and real test images, and
returns

- ``frechet_distance``: the Fréchet distance in classifier features
  (:mod:`~pyro_deepgen.evaluate.frechet`; FID-style, but in the features of the package's own
  small classifier, :mod:`~pyro_deepgen.evaluate.features`, trained on ``train_data``);
- ``class_coverage`` (class -> share of samples), ``coverage_kl_to_uniform``,
  ``min_class_share`` (:mod:`~pyro_deepgen.evaluate.coverage`);
- ``mmd``, ``mmd_p_value``, ``mmd_bandwidth``: the unbiased kernel MMD² in classifier features
  and its permutation p-value; ``c2st_accuracy``, ``c2st_p_value``: the classifier two-sample
  test (:mod:`~pyro_deepgen.evaluate.two_sample`);
- ``parzen_log_likelihood``, ``parzen_stderr``, ``parzen_sigma``: the GAN paper's Parzen window
  in pixel space (:mod:`~pyro_deepgen.evaluate.parzen`; biased, it warns);
- ``num_samples``, ``num_test`` and, given ``test_labels``, ``classifier_test_accuracy``.

CSL (:mod:`~pyro_deepgen.evaluate.csl`) needs the chain's own reconstruction distribution, not
samples, so it is a separate call.
"""
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import torch

from ..data.checks import check_finite
from .coverage import class_coverage
from .csl import bernoulli_csl, csl
from .features import DigitClassifier, accuracy, cached_classifier, classifier_features, predict, train_classifier
from .frechet import frechet_distance, gaussian_frechet_distance
from .parzen import DEFAULT_SIGMAS, ParzenBiasWarning, parzen_log_prob, parzen_window
from .two_sample import classifier_two_sample_test, mmd2_unbiased, mmd_test


def _images(t, name: str, dim: Optional[int] = None) -> torch.Tensor:
    if not isinstance(t, torch.Tensor) or t.dim() != 2 or t.shape[0] < 2:
        raise ValueError(f"{name} must be a (n, D) tensor of flat images with n >= 2, got "
                         f"{getattr(t, 'shape', type(t))}")
    if dim is not None and t.shape[1] != dim:
        raise ValueError(f"{name} has {t.shape[1]} pixels per image, but the test data has {dim}")
    check_finite(t, name)
    return t.detach().to(torch.float32)


def score_samples(samples: torch.Tensor, test_data: torch.Tensor, train_data: Optional[torch.Tensor] = None,
                  train_labels: Optional[torch.Tensor] = None, *, test_labels: Optional[torch.Tensor] = None,
                  classifier: Optional[DigitClassifier] = None, val_data: Optional[torch.Tensor] = None,
                  cache_dir: Optional[Union[str, Path]] = None, classifier_epochs: int = 5,
                  num_permutations: int = 500, c2st: bool = True, parzen: bool = True,
                  parzen_sigmas: Sequence[float] = DEFAULT_SIGMAS, min_share: float = 0.05, seed: int = 0,
                  warn: bool = True) -> Dict[str, Any]:
    """Every sample metric of the module doc, as one plain dict.

    :param samples: ``(n, D)`` samples in [0, 1], D = side².
    :param test_data: ``(N, D)`` real images the samples are compared with.
    :param train_data: ``(M, D)`` training images with ``train_labels`` ``(M,)``: the classifier
        is trained on them (or read from ``cache_dir``) unless ``classifier`` is given; a seeded
        subset of them is the Parzen validation split unless ``val_data`` is given.
    :param test_labels: labels of ``test_data``, for the classifier's test accuracy.
    :param classifier: a trained :class:`~pyro_deepgen.evaluate.features.DigitClassifier`.
    :param val_data: Parzen validation images (choose :math:`\\sigma` on them).
    :param cache_dir: folder to cache the classifier in (see
        :func:`~pyro_deepgen.evaluate.features.cached_classifier`).
    :param classifier_epochs: training epochs of the classifier.
    :param num_permutations: permutations of the MMD test.
    :param c2st: also run the classifier two-sample test.
    :param parzen: also compute the Parzen window (``val_data`` or ``train_data`` needed).
    :param parzen_sigmas: the Parzen grid.
    :param min_share: the share a class needs to count as covered.
    :param seed: seeds the classifier, the permutations, the C2ST split and the validation subset.
    :param warn: let the Parzen window warn that it is biased.
    """
    test = _images(test_data, "test_data")
    x = _images(samples, "samples", test.shape[1])
    if classifier is None:
        if train_data is None or train_labels is None:
            raise ValueError("score_samples needs train_data and train_labels to train its classifier, or a "
                             "trained classifier=")
        train = _images(train_data, "train_data", test.shape[1])
        classifier = cached_classifier(train, train_labels, cache_dir, epochs=classifier_epochs, seed=seed)
    f_samples = classifier_features(classifier, x)
    f_test = classifier_features(classifier, test.to(f_samples.device))
    coverage = class_coverage(predict(classifier, x), min_share)
    mmd = mmd_test(f_samples, f_test, num_permutations=num_permutations, seed=seed)
    report: Dict[str, Any] = {
        "frechet_distance": frechet_distance(f_samples, f_test),
        "class_coverage": coverage["shares"],
        "coverage_kl_to_uniform": coverage["kl_to_uniform"],
        "min_class_share": coverage["min_share"],
        "classes_covered": coverage["classes_covered"],
        "mmd": mmd.mmd2,
        "mmd_p_value": mmd.p_value,
        "mmd_bandwidth": mmd.bandwidth,
        "mmd_permutations": mmd.num_permutations,
        "num_samples": int(x.shape[0]),
        "num_test": int(test.shape[0]),
    }
    if test_labels is not None:
        report["classifier_test_accuracy"] = accuracy(classifier, test, test_labels)
    if c2st and min(x.shape[0], test.shape[0]) >= 4:
        result = classifier_two_sample_test(f_samples, f_test, seed=seed)
        report.update(c2st_accuracy=result.accuracy, c2st_p_value=result.p_value)
    if parzen:
        if val_data is None:
            if train_data is None:
                raise ValueError("parzen=True needs val_data (or train_data, a subset of which is used) to "
                                 "choose sigma; pass one, or parzen=False")
            gen = torch.Generator().manual_seed(seed)
            pool = _images(train_data, "train_data", test.shape[1])
            val_data = pool[torch.randperm(pool.shape[0], generator=gen)[:min(1000, pool.shape[0])]]
        val = _images(val_data, "val_data", test.shape[1])
        result = parzen_window(x, test, val, sigmas=parzen_sigmas, warn=False)
        if warn:
            warnings.warn("parzen_log_likelihood is a biased estimate, far from the model's log-likelihood in "
                          "high dimension and easy to fool (Theis et al. 2016)", ParzenBiasWarning, stacklevel=2)
        report.update(parzen_log_likelihood=result.log_likelihood, parzen_stderr=result.stderr,
                      parzen_sigma=result.sigma)
    return report


__all__ = ["score_samples", "DigitClassifier", "train_classifier", "cached_classifier", "classifier_features",
           "predict", "accuracy", "frechet_distance", "gaussian_frechet_distance", "class_coverage", "mmd_test",
           "mmd2_unbiased", "classifier_two_sample_test", "parzen_window", "parzen_log_prob", "ParzenBiasWarning",
           "csl", "bernoulli_csl", "DEFAULT_SIGMAS"]

r"""Class coverage: how a classifier labels a set of samples.

With :math:`\hat p_k` the share of samples labelled :math:`k` (arg-max of the classifier) over
:math:`K` classes, the report gives each share, the smallest, and

.. math:: \mathrm{KL}(\hat p \,\Vert\, U) = \sum_k \hat p_k \log(K \hat p_k) \in [0, \log K],

0 for a perfectly balanced sampler and :math:`\log K` when every sample falls in one class (mode
collapse). It sees only the labels: a sampler that copies one training image per class scores
perfectly, so read it with the Fréchet distance and the two-sample tests. Coverage targets
(e.g. "every class at least 5%") assume a balanced data set.
"""
from typing import Any, Dict

import torch


def class_coverage(probabilities: torch.Tensor, min_share: float = 0.05) -> Dict[str, Any]:
    """Coverage of samples from the classifier's class probabilities ``(n, K)``.

    :returns: ``shares`` (class index -> share, as a dict of str -> float), ``kl_to_uniform``
        (nats), ``min_share``, ``classes_covered`` (classes with a share >= ``min_share``) and
        ``all_covered``.
    """
    if not isinstance(probabilities, torch.Tensor) or probabilities.dim() != 2 or probabilities.shape[0] < 1:
        raise ValueError("probabilities must be a (n, num_classes) tensor with n >= 1, got "
                         f"{getattr(probabilities, 'shape', type(probabilities))}")
    k = probabilities.shape[1]
    counts = torch.bincount(probabilities.argmax(-1).cpu(), minlength=k).to(torch.float64)
    share = counts / counts.sum()
    positive = share > 0
    kl = (share[positive] * (share[positive] * k).log()).sum().item()
    return {
        "shares": {str(i): share[i].item() for i in range(k)},
        "kl_to_uniform": kl,
        "min_share": share.min().item(),
        "classes_covered": int((share >= min_share).sum()),
        "all_covered": bool((share >= min_share).all()),
    }

"""Independent Bernoulli pixels parameterized by logits, as one event."""
import torch
from pyro.distributions import TorchDistribution, constraints
from torch.nn import functional as F


class BernoulliImage(TorchDistribution):
    r"""Independent Bernoulli variables over the last dimension, parameterized by logits:

    .. math:: \log p(x) = \sum_i x_i \ell_i - \log(1 + e^{\ell_i})
              = -\sum_i \mathrm{BCE}(\ell_i, x_i).

    The same density as ``dist.Bernoulli(logits=l).to_event(1)``, computed with one fewer pass
    over the pixels (the sign is applied after the sum), which matters when thousands of
    importance samples are scored. Grey values in [0, 1] are accepted (the cross-entropy), so
    arguments are not validated against ``{0, 1}``.

    :param torch.Tensor logits: shape ``batch_shape + (D,)``.
    """

    arg_constraints = {"logits": constraints.real}
    support = constraints.independent(constraints.unit_interval, 1)
    has_rsample = False

    def __init__(self, logits: torch.Tensor, validate_args=None) -> None:
        if logits.dim() < 1:
            raise ValueError("logits must have at least one dimension (the pixels)")
        self.logits = logits
        super().__init__(logits.shape[:-1], logits.shape[-1:], validate_args=False)

    def expand(self, batch_shape, _instance=None) -> "BernoulliImage":
        return BernoulliImage(self.logits.expand(torch.Size(batch_shape) + self.event_shape))

    @property
    def mean(self) -> torch.Tensor:
        return torch.sigmoid(self.logits)

    @property
    def variance(self) -> torch.Tensor:
        p = self.mean
        return p * (1 - p)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        probs = self.mean.expand(self._extended_shape(sample_shape))
        with torch.no_grad():
            return torch.bernoulli(probs)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        logits, value = torch.broadcast_tensors(self.logits, value)
        return F.binary_cross_entropy_with_logits(logits, value, reduction="none").sum(-1).neg()

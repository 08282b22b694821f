"""SVI with ``TraceIWAE_ELBO`` (k=5, "iwae" and "dreg") and Pyro's ``Trace_ELBO`` to the exact
posterior of two conjugate models (Normal-Normal, Beta-Bernoulli): 6000 Adam steps (lr 0.01),
then the mean of the guide's parameters over 1000 more steps, printed next to the exact values.

    .venv/bin/python benchmarks/iwae_conjugate.py
"""
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam
from torch.distributions import constraints

from pyro_deepgen.infer import TraceIWAE_ELBO

torch.set_default_dtype(torch.float64)
X_NORMAL = torch.tensor([0.8, 1.9, 1.2, 0.4, 1.5])
X_BERNOULLI = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0])


def normal_model(x):
    z = pyro.sample("z", dist.Normal(0.0, 1.0))
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def normal_guide(x):
    m = pyro.param("m", torch.tensor(0.0))
    s = pyro.param("s", torch.tensor(1.0), constraint=constraints.positive)
    pyro.sample("z", dist.Normal(m, s))


def beta_model(x):
    p = pyro.sample("p", dist.Beta(2.0, 2.0))
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.Bernoulli(p), obs=x)


def beta_guide(x):
    a = pyro.param("a", torch.tensor(1.0), constraint=constraints.positive)
    b = pyro.param("b", torch.tensor(1.0), constraint=constraints.positive)
    pyro.sample("p", dist.Beta(a, b))


def main():
    n = len(X_NORMAL)
    cases = [
        ("Normal-Normal", normal_model, normal_guide, X_NORMAL, ("m", "s"),
         (float(X_NORMAL.sum()) / (n + 1), (1.0 / (n + 1)) ** 0.5)),
        ("Beta-Bernoulli", beta_model, beta_guide, X_BERNOULLI, ("a", "b"),
         (2 + float(X_BERNOULLI.sum()), 2 + len(X_BERNOULLI) - float(X_BERNOULLI.sum()))),
    ]
    elbos = [("Trace_ELBO", Trace_ELBO()), ("IWAE k=5", TraceIWAE_ELBO(5)),
             ("IWAE-DReG k=5", TraceIWAE_ELBO(5, estimator="dreg"))]
    for elbo_name, elbo in elbos:
        for case, model, guide, x, keys, exact in cases:
            pyro.clear_param_store()
            pyro.set_rng_seed(0)
            svi = SVI(model, guide, Adam({"lr": 0.01}), elbo)
            for _ in range(6000):
                svi.step(x)
            mean = [0.0] * len(keys)
            for _ in range(1000):
                svi.step(x)
                for i, key in enumerate(keys):
                    mean[i] += float(pyro.param(key).detach()) / 1000
            shown = ", ".join(f"{k} = {v:.3f} (exact {e:.3f})" for k, v, e in zip(keys, mean, exact))
            print(f"{elbo_name:14s} {case:15s} {shown}", flush=True)


if __name__ == "__main__":
    main()

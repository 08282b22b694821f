"""Cost and variance of the score-function ELBO's two Rao-Blackwellization rules.

``TraceScoreFunction_ELBO(rao_blackwellize="provenance")`` (the default, the rule of Pyro's
``TraceGraph_ELBO``) against ``rao_blackwellize="plates"`` (the rule of Pyro's ``Trace_ELBO``)
and against Pyro's own ``TraceGraph_ELBO`` and ``Trace_ELBO`` (vectorized particles), in one
process, on a two-layer sigmoid belief net with a factorized Bernoulli guide (every guide site
lacks ``rsample``, so all four take the score-function gradient): median CPU milliseconds per
``loss_and_grads`` and the variance of the guide gradient over independent seeds, each as a
ratio to ``TraceGraph_ELBO``.

    python benchmarks/score_function.py [--steps 200] [--seeds 200] [--batch 100]
"""
import argparse
import statistics
import time

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import Trace_ELBO, TraceGraph_ELBO

from pyro_deepgen.infer import TraceScoreFunction_ELBO

H1, H2, D = 16, 8, 64


def make_program(batch: int):
    torch.manual_seed(0)
    w2 = torch.randn(H2, H1) * 0.5
    w1 = torch.randn(H1, D) * 0.5
    x = torch.rand(batch, D).round()

    def model():
        with pyro.plate("data", batch):
            h2 = pyro.sample("h2", dist.Bernoulli(logits=torch.zeros(batch, H2)).to_event(1))
            h1 = pyro.sample("h1", dist.Bernoulli(logits=h2 @ w2).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=h1 @ w1).to_event(1), obs=x)

    def guide():
        a1 = pyro.param("a1", torch.zeros(H1))
        a2 = pyro.param("a2", torch.zeros(H2))
        with pyro.plate("data", batch):
            pyro.sample("h1", dist.Bernoulli(logits=a1.expand(batch, H1)).to_event(1))
            pyro.sample("h2", dist.Bernoulli(logits=a2.expand(batch, H2)).to_event(1))

    return model, guide


def contenders():
    return {
        "provenance (default)": TraceScoreFunction_ELBO(1, None),
        "plates": TraceScoreFunction_ELBO(1, None, rao_blackwellize="plates"),
        "Pyro TraceGraph_ELBO": TraceGraph_ELBO(),
        "Pyro Trace_ELBO": Trace_ELBO(),
    }


def step_ms(elbo, model, guide, steps: int) -> float:
    times = []
    for _ in range(steps):
        t = time.process_time()
        elbo.loss_and_grads(model, guide)
        times.append(time.process_time() - t)
    return 1e3 * statistics.median(times)


def gradient_variance(elbo, model, guide, seeds: int) -> float:
    grads = []
    for seed in range(seeds):
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        elbo.loss_and_grads(model, guide)
        grads.append(torch.cat([pyro.param(n).unconstrained().grad.flatten() for n in ("a1", "a2")]))
    return torch.stack(grads).var(0).mean().item()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args(argv)
    model, guide = make_program(args.batch)
    rows = {}
    for name, elbo in contenders().items():
        pyro.clear_param_store()
        step_ms(elbo, model, guide, 10)  # warm-up
        rows[name] = (step_ms(elbo, model, guide, args.steps),
                      gradient_variance(elbo, model, guide, args.seeds))
    ref_ms, ref_var = rows["Pyro TraceGraph_ELBO"]
    print(f"sigmoid belief net {D}-{H1}-{H2}, batch {args.batch}, {torch.get_num_threads()} threads; "
          f"variance over {args.seeds} seeds")
    print(f"{'estimator':24s} {'ms/step':>8s} {'x TG':>6s} {'grad var':>10s} {'x TG':>6s}")
    for name, (ms, var) in rows.items():
        print(f"{name:24s} {ms:8.2f} {ms / ref_ms:6.2f} {var:10.3f} {var / ref_var:6.2f}")


if __name__ == "__main__":
    main()

"""The 2-D benchmark of Rezende & Mohamed (2015, section 6.1, figure 3): flows fitted to the test
energies U1-U4 by minimizing KL(q||p), against the learned Gaussian (no flow) as the baseline.

It runs the experiment of ``pyro-deepgen flows2d`` (:func:`pyro_deepgen.experiments.flows2d.run`,
the same settings as :class:`~pyro_deepgen.experiments.flows2d.Flows2DConfig`, given as
``--name value``, comma-separated for lists) and prints, besides the KL table, the ratio
KL(flow) / KL(Gaussian) per cell (lower is better; the paper expects planar K=32 to match all
four energies closely and NICE to need more layers than planar). Outputs: report.json, table.md
and flows2d.png in --out.

    PYTHONPATH=. python benchmarks/flows_2d.py --quick
    PYTHONPATH=. python benchmarks/flows_2d.py --steps 2000 --out results/flows2d
    PYTHONPATH=. python benchmarks/flows_2d.py --steps 20000   # the paper's annealing
"""
import argparse
import dataclasses

from pyro_deepgen.experiments.flows2d import FitResult, Flows2DConfig, results_table, run


def _option_type(default):
    """The argument type of a config field, from its default: comma-separated lists for tuples."""
    if isinstance(default, tuple):
        item = type(default[0])
        return lambda text: tuple(item(v) for v in text.split(",") if v.strip())
    return type(default) if isinstance(default, (int, float)) else str


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for field in dataclasses.fields(Flows2DConfig):
        if field.name == "progress":
            parser.add_argument("--no-progress", dest="progress", action="store_false", default=None)
        elif field.name == "anneal_steps":
            parser.add_argument("--anneal-steps", type=int, default=None)
        else:
            parser.add_argument(f"--{field.name.replace('_', '-')}", type=_option_type(field.default),
                                default=None, help=f"default {field.default}")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: U1 and U3, planar and nice, K=2,8, 30 steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.energies, args.flows, args.depths = ("U1", "U3"), ("planar", "nice"), (2, 8)
        args.steps, args.samples = 30, 2000
    return args


def main(argv=None):
    args = parse_args(argv)
    settings = {k: v for k, v in vars(args).items() if k != "quick" and v is not None}
    report = run(Flows2DConfig(**settings))
    results = [FitResult(**r) for r in report["results"]]
    print("KL(flow) / KL(learned Gaussian), same steps and seed (lower is better)")
    print(results_table(results, value="kl_ratio"), end="")
    return results


if __name__ == "__main__":
    main()

"""The 2-D benchmark of Rezende & Mohamed (2015, section 6.1, figure 3): flows fitted to the test
energies U1-U4 by minimizing KL(q||p), against the learned Gaussian (no flow) as the baseline.

It runs ``pyro-deepgen flows2d`` (same arguments, see ``pyro_deepgen.flows2d``) and prints,
besides the KL table, the ratio KL(flow) / KL(Gaussian) per cell (lower is better; the paper
expects planar K=32 to match all four energies closely and NICE to need more layers than
planar). Outputs: report.json, table.md and flows2d.png in --out.

    PYTHONPATH=. python benchmarks/flows_2d.py --quick
    PYTHONPATH=. python benchmarks/flows_2d.py --steps 2000 --out results/flows2d
    PYTHONPATH=. python benchmarks/flows_2d.py --steps 20000   # the paper's annealing
"""
import argparse

from pyro_deepgen.cli import flows2d as cli
from pyro_deepgen.flows2d import results_table


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_arguments(parser)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: U1 and U3, planar and nice, K=2,8, 30 steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.energies, args.flows, args.depths = ("U1", "U3"), ("planar", "nice"), (2, 8)
        args.steps, args.samples = 30, 2000
    return args


def main(argv=None):
    args = parse_args(argv)
    results = cli.run(args)
    print("KL(flow) / KL(learned Gaussian), same steps and seed (lower is better)")
    print(results_table(results, value="kl_ratio"), end="")
    return results


if __name__ == "__main__":
    main()

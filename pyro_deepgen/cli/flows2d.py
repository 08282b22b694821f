"""Fit normalizing flows to the 2-D test energies of Rezende & Mohamed (2015) by minimizing
KL(q||p) with the paper's annealing, and report KL = -ELBO + log Z (log Z by grid quadrature).

Writes report.json (settings and one record per fit), table.md (KL per flow, depth and energy)
and flows2d.png (the true densities and the fitted flows, like figure 3 of the paper). The
defaults take a few minutes on 2 CPU cores; the paper's schedule is --steps 20000 or more
(annealing over the first 10000 steps).
"""
import argparse

from ..experiments.flows2d import Flows2DConfig
from ..experiments.flows2d import run as run_experiment
from .common import (MARKER_FILE, RUN_REPORT, SIZES_METAVAR, add_common_arguments, config_from_args, int_list,
                     positive_float, positive_int)

HELP = "the 2-D flow benchmark of Rezende & Mohamed (2015)"
#: What the command writes to --out: its files, and the keys of report.json.
OUTPUTS = {
    "files": {
        "report.json": "the report (keys below)",
        "table.md": "KL(q||p) of every energy, flow and depth as a Markdown table",
        "flows2d.png": "the densities of the fitted flows next to the target energies",
        **MARKER_FILE,
    },
    "report": {
        "results": "one record per fit: energy, flow, depth, kl and kl_stderr (KL(q||p) in nats), "
                   "neg_elbo, log_z, final_loss, steps, seconds, kl_ratio (KL over the Gaussian's)",
        "settings": RUN_REPORT["settings"],
        "world_size": RUN_REPORT["world_size"],
    },
}


def name_list(text: str):
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    if not values:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--energies", type=name_list, default=("U1", "U2", "U3", "U4"),
                        metavar="U1,U2,...", help="comma-separated energies among U1,U2,U3,U4 (default all)")
    parser.add_argument("--flows", type=name_list, default=("planar", "radial", "nice", "iaf"),
                        metavar="NAME,NAME,...", help="comma-separated flows among planar,radial,nice,realnvp,iaf "
                        "(default planar,radial,nice,iaf)")
    parser.add_argument("--depths", type=int_list, default=(2, 8, 32), metavar=SIZES_METAVAR,
                        help="comma-separated flow depths K (default 2,8,32)")
    parser.add_argument("--steps", type=positive_int, default=300,
                        help="optimizer steps per fit (default 300; the paper: 20000+)")
    parser.add_argument("--anneal-steps", type=positive_int, default=None,
                        help="steps over which beta rises from 0.01 to 1 "
                        "(default min(10000, steps/2); the paper: 10000)")
    parser.add_argument("--particles", type=positive_int, default=256,
                        help="draws from q per step (default 256)")
    parser.add_argument("--lr", type=positive_float, default=1e-2, metavar="LR",
                        help="learning rate, finite and > 0 (default 0.01)")
    parser.add_argument("--samples", type=positive_int, default=10000,
                        help="draws for the final KL estimate and the figure (default 10000)")
    add_common_arguments(parser, out_default="runs/flows2d", resume=False)


def run(args: argparse.Namespace) -> None:
    run_experiment(config_from_args(Flows2DConfig, args))

"""Data-parallel throughput of ``fit``: images/s of a VAE against the process count.

Trains the package's VAE (784-200-200-50 on the MNIST files in ``--data-root``, default
../shared/data/mnist-5k, else the 8x8 digits) with ``Trace_ELBO`` at one global batch size, in
one process and in ``N`` gloo processes spawned here (the same code path as
``torchrun --nproc_per_node N``), each process with ``--threads`` torch threads. Reports
images/s (training images x epochs / seconds of rank 0's ``fit``, the first epoch excluded as
warm-up) and the scaling efficiency ``throughput(N) / (N x throughput(1))``; writes JSON.

    python benchmarks/distributed.py [--procs 1 2] [--epochs 3] [--out results/distributed.json]

On GPUs, the recipe is one process per GPU with NCCL:
``torchrun --nproc_per_node <GPUs> $(which pyro-deepgen) vae --device cuda ...``; this script
measures CPU processes only.
"""
import argparse
import datetime
import json
import os
import socket
import time
from pathlib import Path

import pyro
import torch

from pyro_deepgen.data import load_digits, load_mnist
from pyro_deepgen.models import VAE
from pyro_deepgen.train import fit
from _shared_data import default_mnist_root  # noqa: E402 (benchmarks/ is on sys.path when run)


def _data(root):
    try:
        x, _ = load_mnist(str(root), "train", binarize="threshold")
        return x, "mnist-5k"
    except (OSError, ValueError):
        x, _ = load_digits(binarize="threshold")
        return x, "digits"


def _train(args, x):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    vae = VAE(x.shape[1], 50, (200, 200))
    times = []

    def callback(epoch, history):
        times.append(time.perf_counter())

    t0 = time.perf_counter()
    fit(vae.model, vae.guide, x, epochs=args.epochs, batch_size=args.batch_size, progress=False, callback=callback)
    times.insert(0, t0)
    return (times[-1] - times[1]) / (len(times) - 2)  # seconds per epoch, the first one excluded


def _worker(rank, world, port, args, x, queue):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(args.threads)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=120))
    seconds = _train(args, x)
    if rank == 0:
        queue.put(seconds)
    torch.distributed.destroy_process_group()


def _run(world, args, x):
    if world == 1:
        torch.set_num_threads(args.threads)
        return _train(args, x)
    ctx = torch.multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [ctx.Process(target=_worker, args=(r, world, port, args, x, queue)) for r in range(world)]
    for p in procs:
        p.start()
    seconds = queue.get(timeout=600)
    for p in procs:
        p.join()
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--data-root", default=str(default_mnist_root()))
    parser.add_argument("--out", default="results/distributed.json")
    args = parser.parse_args()
    x, name = _data(args.data_root)
    rows = []
    for world in args.procs:
        seconds = _run(world, args, x)
        rows.append({"processes": world, "seconds_per_epoch": seconds, "images_per_s": x.shape[0] / seconds})
    base = rows[0]["images_per_s"] / rows[0]["processes"]
    for row in rows:
        row["efficiency"] = row["images_per_s"] / (row["processes"] * base)
        print(f"{row['processes']} process(es): {row['images_per_s']:8.0f} images/s   "
              f"{row['seconds_per_epoch']:.2f} s/epoch   efficiency {row['efficiency']:.2f}")
    result = {"data": name, "num_train": int(x.shape[0]), "batch_size": args.batch_size, "epochs": args.epochs,
              "threads_per_process": args.threads, "cpu_count": os.cpu_count(), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

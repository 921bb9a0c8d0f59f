"""Data-parallel training throughput: samples/s of one bathymetry fit (MagicBathyNet light U-Net on
simulated patches) in one process and in two DDP processes (torchrun, gloo on the CPU), and the scaling
efficiency (two-process samples/s over twice the one-process figure). Every process keeps the same batch
(data parallelism: two processes see twice the samples per optimiser step) and one thread; one process
with two threads is printed too, the other way to spend two cores. Seconds are those of trainer.fit as the
checkpoint records them (no start-up, data simulation or statistics). The load average is printed: other
jobs on the machine lower every figure.

    .venv/bin/python bench/training_scaling.py --steps 40 --batch-size 8 --patch-size 64
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from training.simulation.shallow_water import write_magicbathynet_layout  # noqa: E402


def fit_samples_per_second(data: Path, out: Path, processes: int, threads: int, steps: int, batch_size: int,
                           width: int) -> float:
    fit = ["fit", "--task", "bathymetry", "--data", str(data), "--max-steps", str(steps), "--batch-size",
           str(batch_size), "--base-channels", str(width), "--accelerator", "cpu", "--threads", str(threads),
           "--out", str(out)]
    if processes == 1:
        command = [sys.executable, "-m", "training", *fit]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                   str(processes), "-m", "training", *fit, "--devices", str(processes),
                   "--distributed-strategy", "ddp"]
    environment = os.environ | {"OMP_NUM_THREADS": str(threads)}
    subprocess.run(command, check=True, cwd=REPO, env=environment, capture_output=True)
    provenance = torch.load(out / "checkpoint.pt", weights_only=True)["provenance"]
    assert provenance["processes"] == processes and provenance["steps"] == steps
    return steps * batch_size * processes / provenance["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8, help="per process")
    parser.add_argument("--patch-size", type=int, default=64)
    parser.add_argument("--patches", type=int, default=96)
    parser.add_argument("--width", type=int, default=16, help="light U-Net base channels (paper: 32)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "data"
        write_magicbathynet_layout(data, "agia_napa", args.patches, args.patch_size, seed=1)
        print(f"bathymetry fit, {args.steps} steps of {args.batch_size} patches of {args.patch_size} px per process,"
              f" base channels {args.width}; {os.cpu_count()} CPUs, load average before "
              + " ".join(f"{load:.1f}" for load in os.getloadavg()))
        rates = {}
        for name, processes, threads in (("1 process, 1 thread", 1, 1), ("2 processes (DDP), 1 thread each", 2, 1),
                                         ("1 process, 2 threads", 1, 2)):
            rates[name] = fit_samples_per_second(data, Path(folder) / name.replace(" ", "_"), processes, threads,
                                                 args.steps, args.batch_size, args.width)
            print(f"{name:34s} {rates[name]:7.1f} samples/s")
        one, two = rates["1 process, 1 thread"], rates["2 processes (DDP), 1 thread each"]
        print(f"scaling efficiency, 2 processes vs 1: {two / (2 * one):.2f} (speed-up {two / one:.2f}x); "
              f"2 DDP processes vs 1 process on 2 threads: {two / rates['1 process, 2 threads']:.2f}x; load average "
              "after " + " ".join(f"{load:.1f}" for load in os.getloadavg()))


if __name__ == "__main__":
    main()

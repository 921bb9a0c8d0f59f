"""Samples per second reading reBEN from the GeoTIFF tree vs from the ``prepare`` store.

Each reader returns full S1+S2 samples (torchgeo's dict) in a random order, single process, after
one warm-up pass (so both read from the page cache: the figure is decoding and file-handling cost,
the part the store removes; on a cold disk the GeoTIFF tree's 15 files per patch cost more).
Without --data, a fixture is generated first (training/simulation/bigearthnet_fixture.py).
Usage: python bench/ben_store.py [--data ROOT] [--patches 200] [--samples 400]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from torchgeo.datasets import BigEarthNetV2  # noqa: E402

from training.datasets.ben_store import BigEarthNetV2Store, write_store  # noqa: E402
from training.datasets.reben import BigEarthNetV2Nearest  # noqa: E402
from training.simulation.bigearthnet_fixture import write_bigearthnet_fixture  # noqa: E402


def samples_per_second(dataset, samples: int, seed: int = 0) -> float:
    order = torch.randint(len(dataset), (samples,), generator=torch.Generator().manual_seed(seed))
    for index in order[: min(samples, len(dataset))]:  # warm-up
        dataset[int(index)]
    began = time.perf_counter()
    for index in order:
        dataset[int(index)]
    return samples / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, help="BigEarthNet v2 root (default: a generated fixture)")
    parser.add_argument("--patches", type=int, default=200, help="fixture size when --data is not given")
    parser.add_argument("--samples", type=int, default=400, help="random reads per reader")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        root = args.data
        if root is None:
            root = Path(scratch) / "bigearthnet"
            write_bigearthnet_fixture(root, args.patches, seed=0)
        store = Path(scratch) / "store"
        began = time.perf_counter()
        write_store(root, store)
        print(f"prepare: {time.perf_counter() - began:.1f} s for {root}")
        readers = {
            "GeoTIFF tree, torchgeo BigEarthNetV2": BigEarthNetV2(root, split="train", bands="all"),
            "GeoTIFF tree, BigEarthNetV2Nearest": BigEarthNetV2Nearest(root, split="train", bands="all"),
            "LMDB store, BigEarthNetV2Store": BigEarthNetV2Store(store, split="train", bands="all"),
        }
        rates = {name: samples_per_second(reader, args.samples) for name, reader in readers.items()}
    for name, rate in rates.items():
        print(f"{name:40s} {rate:8.1f} samples/s")
    geotiff = rates["GeoTIFF tree, BigEarthNetV2Nearest"]
    print(f"store / GeoTIFF tree (same sample): {rates['LMDB store, BigEarthNetV2Store'] / geotiff:.1f}x")


if __name__ == "__main__":
    main()

"""Crop mapping (TSViT): pixels per second per fusion variant through the engine vs bare
session.run, and how the cost grows with the number of dates (T = 10, 20, 40 per modality).

Models: the three fusions in the shipped model's size (tile 24, patch 4, dim 64, depths 2 + 2,
4 heads of 16), exported UNTRAINED for timing only (weights do not change the cost), with a
contract allowing up to 64 dates so that the engine does not subsample. Input: a simulated
season (training/simulation/crop_geotiffs.py), T dates per modality taken evenly from it.
Usage: python bench/crop.py [--size 96]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.contract import ModelContract  # noqa: E402
from engine.pipeline import tile_origins  # noqa: E402
from engine.runtime import Model  # noqa: E402
from engine.tasks import run_task  # noqa: E402
from engine.tasks.crop_map import MapCrops  # noqa: E402
from training.crop_maps.export import write_crop_onnx  # noqa: E402
from training.crop_maps.model import TSViTConfig, build_crop_model  # noqa: E402
from training.simulation.crop_geotiffs import write_crop_time_series  # noqa: E402

FUSIONS = ("early", "cross-attention", "sync-class-token")
DATE_COUNTS = (10, 20, 40)


def export_untrained(fusion: str, shipped: ModelContract, folder: Path) -> str:
    channels = [len(m.bands) for m in shipped.modalities]
    config = TSViTConfig(image_size=24, patch_size=4, dim=64, temporal_depth=2, spatial_depth=2, heads=4, head_dim=16)
    torch.manual_seed(0)
    graph = build_crop_model(channels, len(shipped.outputs.names), fusion, config).eval()
    contract = dataclasses.replace(
        shipped, name=f"bench-{fusion}", provenance={"fusion": fusion, "note": "untrained, for timing"},
        modalities=tuple(dataclasses.replace(m, max_dates=64) for m in shipped.modalities))
    path = folder / f"{fusion}.onnx"
    write_crop_onnx(graph, [m.name for m in shipped.modalities], channels, 24, path, contract)
    return str(path)


def bare_seconds(model: Model, size: int, dates: int) -> float:
    """session.run alone on as many tiles, batches and dates as the engine feeds."""
    contract = model.contract
    tile = contract.tile_size
    origins = tile_origins(size, tile, contract.overlap)
    rng = np.random.default_rng(0)
    seconds = 0.0
    for _ in origins:
        for start in range(0, len(origins), contract.batch_size):
            n = len(origins[start:start + contract.batch_size])
            feeds = {}
            for m in contract.modalities:
                feeds[m.name] = rng.standard_normal((n, dates, len(m.bands), tile, tile)).astype(np.float32)
                feeds[f"{m.name}_doy"] = np.tile(np.linspace(1, 365, dates).astype(np.int64), (n, 1))
                feeds[f"{m.name}_mask"] = np.ones((n, dates, tile, tile), np.float32)
            began = time.perf_counter()
            model.run(feeds)
            seconds += time.perf_counter() - began
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=96)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="rsai-bench-"))
    series = write_crop_time_series(folder / "series", size=args.size, seed=5, stack=False)
    shipped = Model(MapCrops().model_path({}), "cpu").contract
    pixels = args.size ** 2
    print(f"{args.size}x{args.size} px, simulated season with {len(series.s2)} S2 and {len(series.s1)} S1 dates")
    print(f"{'fusion':>17} {'T':>3} | {'engine px/s':>11} {'bare px/s':>9} {'ratio':>5}")
    for fusion in FUSIONS:
        path = export_untrained(fusion, shipped, folder)
        model = Model(path, "cpu")
        for dates in DATE_COUNTS:
            keep = {name: [files[i] for i in np.linspace(0, len(files) - 1, dates).round().astype(int)]
                    for name, files in (("s2", series.s2), ("s1", series.s1))}
            began = time.perf_counter()
            run_task("map_crops", {"s2": [str(p) for p in keep["s2"]], "s1": [str(p) for p in keep["s1"]],
                                   "output": str(folder / "crops.tif"), "model": path, "device": "cpu"},
                     lambda f, m: None, lambda: False)
            engine = time.perf_counter() - began
            bare = bare_seconds(model, args.size, dates)
            print(f"{fusion:>17} {dates:>3} | {pixels / engine:>11.0f} {pixels / bare:>9.0f} {engine / bare:>5.2f}")


if __name__ == "__main__":
    main()

"""Patches per second of the shipped scene-labels model through the engine vs bare session.run.

The engine task reads a multi-file S1 + S2 area (one GeoTIFF per band, 20 m bands upsampled on
the fly), cuts 120 x 120 patches, runs the model and writes the GeoPackage; the bare figure runs
``session.run`` alone on the same number of already-normalised patches in the same batches.
Usage: python bench/scene_labels.py [--patches-per-side 12]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.runtime import Model  # noqa: E402
from engine.tasks import run_task  # noqa: E402
from engine.tasks.scene_labels import ClassifyScenes  # noqa: E402

TWENTY_METRE_BANDS = {"B05", "B06", "B07", "B8A", "B11", "B12"}


def write_area(folder: Path, model: Model, side_px: int) -> list[str]:
    """One single-band GeoTIFF per model band, values around the contract's means."""
    rng = np.random.default_rng(0)
    paths = []
    for band, mean, std in zip(model.contract.bands, model.contract.mean, model.contract.std):
        step = 20 if band.name in TWENTY_METRE_BANDS else 10
        size = side_px * 10 // step
        values = (mean + std * rng.standard_normal((1, size, size))).astype("float32")
        path = folder / f"area_{band.name}_{step}m.tif"
        with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1, dtype="float32",
                           crs="EPSG:32633", transform=from_origin(400000, 5800000, step, step), tiled=True) as dst:
            dst.write(values)
        paths.append(str(path))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patches-per-side", type=int, default=12)
    args = parser.parse_args()
    model_path = ClassifyScenes().model_path({})
    model = Model(model_path, "cpu")
    patch, batch = model.contract.tile_size, model.contract.batch_size
    folder = Path(tempfile.mkdtemp(prefix="rsai-bench-"))
    inputs = write_area(folder, model, args.patches_per_side * patch)
    patches = args.patches_per_side ** 2

    tiles = np.random.default_rng(1).standard_normal((batch, len(model.contract.bands), patch, patch)).astype("float32")
    began = time.perf_counter()
    for _ in range(0, patches, batch):
        model.run(tiles)
    bare = time.perf_counter() - began

    began = time.perf_counter()
    result = run_task("classify_scenes", {"input": inputs, "output": str(folder / "labels.gpkg"), "device": "cpu"},
                      lambda f, m: None, lambda: False)
    engine = time.perf_counter() - began
    assert result["patches"]["classified"] == patches
    print(f"model {model.contract.name}: {patches} patches of {patch} px from {len(inputs)} single-band files")
    print(f"bare session.run: {patches / bare:.1f} patches/s   engine task: {patches / engine:.1f} patches/s   "
          f"ratio engine/bare time {engine / bare:.2f}")


if __name__ == "__main__":
    main()

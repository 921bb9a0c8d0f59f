"""Tiled-pipeline overhead and CPU vs CUDA throughput of a shipped model, measured in one run.

overhead = wall time of the engine task (read, normalise, batch, run, blend, write a compressed
GeoTIFF) / wall time of bare ``session.run`` over the same tiles (goal <= 1.15 on CPU).
Where onnxruntime can use CUDA, the same engine task is also timed on the GPU.
Usage: python bench/throughput.py [--size 2048] [--model models_onnx/bathymetry_s2_sim.onnx]
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

from engine.pipeline import tile_origins  # noqa: E402
from engine.raster_io import normalise  # noqa: E402
from engine.runtime import CUDA, Model  # noqa: E402
from engine.tasks import run_task  # noqa: E402


def bare_session_seconds(model: Model, image: np.ndarray) -> float:
    """Only session.run over exactly the tiles and batches the engine makes."""
    contract = model.contract
    tile, overlap = contract.tile_size, contract.overlap
    cols = tile_origins(image.shape[2], tile, overlap)
    seconds = 0.0
    for row in tile_origins(image.shape[1], tile, overlap):
        for start in range(0, len(cols), contract.batch_size):
            batch = np.stack([normalise(image[:, row:row + tile, c:c + tile], True, contract.mean, contract.std)
                              for c in cols[start:start + contract.batch_size]])
            began = time.perf_counter()
            model.run(batch)
            seconds += time.perf_counter() - began
    return seconds


def engine_seconds(scene: Path, model_path: str, device: str, out: Path) -> tuple[float, dict]:
    began = time.perf_counter()
    result = run_task("estimate_bathymetry", {"input": str(scene), "output": str(out), "model": model_path,
                                              "device": device}, lambda f, m: None, lambda: False)
    return time.perf_counter() - began, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--model", default=str(REPO / "models_onnx" / "bathymetry_s2_sim.onnx"))
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="rsai-bench-"))
    rng = np.random.default_rng(0)
    image = rng.integers(100, 3000, size=(3, args.size, args.size), dtype=np.uint16)
    scene = workdir / "scene.tif"
    with rasterio.open(scene, "w", driver="GTiff", width=args.size, height=args.size, count=3, dtype="uint16",
                       crs="EPSG:32636", transform=from_origin(580000, 3870000, 10, 10), tiled=True) as dst:
        dst.write(image)

    model = Model(args.model, "cpu")
    bare = min(bare_session_seconds(model, image.astype(np.float32)) for _ in range(2))
    engine, result = min((engine_seconds(scene, args.model, "cpu", workdir / "cpu.tif") for _ in range(2)),
                         key=lambda pair: pair[0])
    megapixels = args.size ** 2 / 1e6
    print(f"model {model.contract.name}, {args.size}x{args.size} px, {result['tiles']} tiles "
          f"of {model.contract.tile_size} px (overlap {model.contract.overlap})")
    print(f"CPU bare session.run: {bare:.2f} s   engine task: {engine:.2f} s   "
          f"overhead ratio {engine / bare:.3f} (goal <= 1.15)")
    print(f"CPU throughput: {megapixels / engine:.2f} Mpx/s through the engine")
    if CUDA in Model(args.model, "auto").session.get_providers()[:1]:
        engine_seconds(scene, args.model, "cuda", workdir / "warm.tif")  # CUDA context and kernels warm-up
        gpu, _ = engine_seconds(scene, args.model, "cuda", workdir / "gpu.tif")
        print(f"CUDA throughput: {megapixels / gpu:.2f} Mpx/s through the engine "
              f"({engine / gpu:.1f}x the CPU)")
    else:
        print("CUDA: not usable by onnxruntime on this machine; no GPU figure")


if __name__ == "__main__":
    main()

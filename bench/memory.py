"""Peak memory of the engine for a 16000x16000 raster vs a 1000x1000 one (goal: < 300 MB apart).

A trivial per-pixel model keeps the run to minutes, so what is measured is the pipeline: tiled
reads on their threads, blending accumulators, the strips queued for the writer thread and GDAL's
block cache. The model is declared fully convolutional (its graph is: training/fully_convolutional.py
writes its record), so the engine picks its tile within the default memory budget, as a user's run
would. Each run is a separate process reporting its own peak RSS. Measured for ``run_onnx`` (the
pipeline alone) and for ``estimate_bathymetry`` (the same, plus its quality layers over each strip).
Usage: python bench/memory.py [--big 16000] [--small 1000] [--workdir DIR]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.contract import Band, ModelContract, Outputs  # noqa: E402
from training.fully_convolutional import fully_convolutional_record  # noqa: E402
from training.pointwise_onnx import pointwise_model  # noqa: E402


def write_scene(path: Path, size: int) -> None:
    """A size x size, 3-band uint16 GeoTIFF written block row by block row (bounded memory)."""
    rng = np.random.default_rng(0)
    block = rng.integers(100, 3000, size=(3, 512, size), dtype=np.uint16)
    profile = dict(driver="GTiff", width=size, height=size, count=3, dtype="uint16", crs="EPSG:32636",
                   transform=from_origin(580000, 3870000, 10, 10), tiled=True, blockxsize=512,
                   blockysize=512, compress="deflate", BIGTIFF="YES")
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, size, 512):
            height = min(512, size - row)
            dst.write(block[:, :height], window=Window(0, row, size, height))


def child(task: str, image: str, model: str, output: str) -> None:
    from engine.tasks import run_task

    started = time.perf_counter()
    result = run_task(task, {"input": image, "output": output, "model": model, "device": "cpu"},
                      lambda f, m: None, lambda: False)
    peak_mb = peak_rss_mb()
    print(json.dumps({"peak_rss_mb": peak_mb, "seconds": time.perf_counter() - started, "tiles": result["tiles"],
                      "tile_size": result["tile_size"], "max_memory": result["max_memory"]}))


def peak_rss_mb() -> float:
    """This process's peak resident memory: Linux's VmHWM, the high-water mark of its own address space.
    ``ru_maxrss`` is no measure of a child: Linux carries the parent's peak over fork and exec, and the
    parent's fully convolutional probe peaks at about 1.4 GB. Elsewhere ``ru_maxrss``."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(task: str, image: Path, model: Path, workdir: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", task, str(image), str(model), str(workdir / "out.tif")],
                         cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--big", type=int, default=16000)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--workdir")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="rsai-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    contract = ModelContract(
        task="bench", name="per-pixel", bands=(Band("B02"), Band("B03"), Band("B04")),
        mean=(1000.0,) * 3, std=(500.0,) * 3, outputs=Outputs("regression", ("depth",), units="m"),
        tile_size=512, overlap=32, gsd_m=10.0, batch_size=4,
    )
    model = workdir / "per_pixel.onnx"
    onnx.save(pointwise_model(contract, np.array([[0.2, -0.1, 0.3]]), np.array([1.0])), model)
    declared = replace(contract, fully_convolutional=fully_convolutional_record(model))
    onnx.save(pointwise_model(declared, np.array([[0.2, -0.1, 0.3]]), np.array([1.0])), model)
    for size in (args.small, args.big):
        image = workdir / f"scene_{size}.tif"
        if not image.exists():
            write_scene(image, size)
    for task in ("run_onnx", "estimate_bathymetry"):
        figures = {}
        for size in (args.small, args.big):
            figures[size] = measure(task, workdir / f"scene_{size}.tif", model, workdir)
            print(f"{task} {size}x{size}: peak RSS {figures[size]['peak_rss_mb']:.0f} MB, "
                  f"{figures[size]['seconds']:.1f} s, {figures[size]['tiles']} tiles of {figures[size]['tile_size']} "
                  f"px (max_memory {figures[size]['max_memory']} MB, the default)", flush=True)
        growth = figures[args.big]["peak_rss_mb"] - figures[args.small]["peak_rss_mb"]
        print(f"{task}: peak RSS difference {args.big}^2 vs {args.small}^2: {growth:.0f} MB (goal < 300 MB): "
              + ("met" if growth < 300 else "NOT met"), flush=True)


if __name__ == "__main__":
    main()

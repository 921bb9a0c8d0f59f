"""Tiled-pipeline overhead and CPU vs CUDA throughput of a shipped model, measured in one run.

overhead = wall time of the engine task (read, normalise, batch, run, blend, write a compressed
GeoTIFF) / wall time of bare ``session.run`` over the same tiles (goal <= 1.15 on CPU).
Where onnxruntime can use CUDA, the same engine task is also timed on the GPU.
Usage: python bench/throughput.py [--size 2048] [--model models_onnx/bathymetry_s2_sim.onnx]

``--device cuda``: the GPU rows (issue #15), output Mpx/s of
- the bare model: ``Model.run`` (IO binding, pinned buffers, the fp16 variant where one sits beside the
  model) over tiles decoded beforehand, and plain ``session.run`` over the same batches;
- decode alone: reading and normalising the same tiles (``InputGrid.read_tiles``), on one thread and
  in parallel on one thread per core (each with its own dataset handle), no model;
- decode overlapped with the device: one thread decodes batch k+1 while ``Model.submit`` runs batch k;
- the engine task on the device.
Where onnxruntime cannot use CUDA it says so and why, and measures the same rows on its CPU provider.
bench/gpu_device_check.py is the self-contained check for the device machine (no rasterio there).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent import futures
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.pipeline import tile_origins  # noqa: E402
from engine.raster_io import normalise  # noqa: E402
from engine.raster_io import open_input  # noqa: E402
from engine.runtime import CUDA, DeviceBatches, Model  # noqa: E402
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


def tile_batches(model: Model) -> callable:
    """The engine's tile rows of a grid as (row, batch columns) pairs, in the pipeline's order."""
    contract = model.contract
    tile, overlap = contract.tile_size, contract.overlap

    def batches(width: int, height: int) -> list[tuple[int, list[int]]]:
        cols = tile_origins(width, tile, overlap)
        return [(row, cols[start:start + contract.batch_size]) for row in tile_origins(height, tile, overlap)
                for start in range(0, len(cols), contract.batch_size)]
    return batches


def decode_seconds(scene: Path, model: Model, threads: int) -> tuple[float, list[np.ndarray]]:
    """Read and normalise every batch of tiles the engine reads (no model), over ``threads`` threads
    each with its own dataset handle; returns the wall time and the batches, in order."""
    contract, tile = model.contract, model.contract.tile_size
    with open_input(str(scene), contract) as grid:
        work = tile_batches(model)(grid.width, grid.height)
        tile_h, tile_w = min(tile, grid.height), min(tile, grid.width)

    def decode_share(share: int) -> list[tuple[int, np.ndarray]]:
        with open_input(str(scene), contract) as own:
            return [(index, own.read_tiles(contract, row, cols, tile_h, tile_w)[0])
                    for index, (row, cols) in enumerate(work) if index % threads == share]
    began = time.perf_counter()
    with futures.ThreadPoolExecutor(threads) as pool:
        decoded = [pair for part in pool.map(decode_share, range(threads)) for pair in part]
    seconds = time.perf_counter() - began
    return seconds, [batch for _, batch in sorted(decoded, key=lambda pair: pair[0])]


def overlapped_seconds(scene: Path, model: Model) -> float:
    """One thread decodes batch k+1 while the model runs batch k (``Model.submit``); every result is
    taken, as the pipeline would blend it."""
    contract, tile = model.contract, model.contract.tile_size
    began = time.perf_counter()
    with open_input(str(scene), contract) as grid:
        tile_h, tile_w = min(tile, grid.height), min(tile, grid.width)
        pending = None
        for row, cols in tile_batches(model)(grid.width, grid.height):
            submitted = model.submit(grid.read_tiles(contract, row, cols, tile_h, tile_w)[0])
            if pending is not None:
                pending.result()
            pending = submitted
        pending.result()
    return time.perf_counter() - began


def model_seconds(run, batches: list[np.ndarray]) -> float:
    began = time.perf_counter()
    for batch in batches:
        run(batch)
    return time.perf_counter() - began


def device_report(args: argparse.Namespace, scene: Path, workdir: Path) -> None:
    """The GPU rows; on the CPU provider, with a clear statement, where CUDA is not usable."""
    import onnxruntime as ort

    from engine.doctor import why_not_cuda

    providers = ort.get_available_providers()
    print(f"onnxruntime {ort.__version__}, providers: {providers}")
    model = Model(args.model, "auto")
    on_gpu = model.provider == CUDA
    if not on_gpu:
        reason = ("this onnxruntime has no CUDA provider (a CPU-only package; onnxruntime-gpu has it)"
                  if CUDA not in providers else "the CUDA provider is listed but the session fell back to the CPU: "
                  + (why_not_cuda() or "no reason found"))
        print(f"CUDA NOT AVAILABLE: {reason}. No GPU figure: the rows below are onnxruntime's CPU provider in "
              "its place (bench/gpu_device_check.py is the check to run on a GPU machine).")
    device = "cuda" if on_gpu else "cpu"
    megapixels = args.size ** 2 / 1e6
    decode_1, batches = decode_seconds(scene, model, 1)
    decode_n, _ = decode_seconds(scene, model, os.cpu_count())
    model.run(batches[0])  # warm-up: CUDA context, kernels, the first pinned buffers
    bare = min(model_seconds(model.run, batches) for _ in range(2))
    plain = min(model_seconds(lambda b: model.session.run(None, {model.input_names[0]: b}), batches) for _ in range(2))
    overlapped = min(overlapped_seconds(scene, model) for _ in range(2))
    engine, result = min((engine_seconds(scene, args.model, device, workdir / f"{device}.tif") for _ in range(2)),
                         key=lambda pair: pair[0])
    print(f"model {model.contract.name} on {model.provider} ({model.precision}"
          f"{', IO binding, ' + model.device_batches.host_memory + ' host buffers' if on_gpu else ''}), "
          f"{args.size}x{args.size} px; model, decode and overlap rows: the contract's tiling, {len(batches)} "
          f"batches of up to {model.contract.batch_size} tiles of {model.contract.tile_size} px; engine task: its "
          f"own tile plan, {result['tiles']} tiles")
    rows = [("bare model (Model.run over decoded tiles)", bare),
            ("bare session.run, no IO binding", plain),
            ("decode alone, 1 thread", decode_1),
            (f"decode alone, {os.cpu_count()} threads", decode_n),
            ("decode (1 thread) overlapped with Model.submit", overlapped),
            ("engine task (read, run, blend, write)", engine)]
    for label, seconds in rows:
        print(f"  {label:<48} {seconds:7.2f} s  {megapixels / seconds:7.2f} Mpx/s")
    print(f"engine / bare model {engine / bare:.2f}; engine / parallel decode alone {engine / decode_n:.2f}; "
          f"overlapped / max(bare, decode 1 thread) {overlapped / max(bare, decode_1):.2f} (1.00: the slower "
          f"of the two hides the other)")
    if not on_gpu:  # the measurement behind DeviceBatches' docstring: IO binding on the CPU provider
        bound = DeviceBatches(model.session, "cpu")
        binding = min(model_seconds(lambda b: bound.run(bound.stage({model.input_names[0]: b}, 0)), batches)
                      for _ in range(2))
        print(f"CPU IO binding (preallocated buffers) / plain session.run: {binding / plain:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--model", default=str(REPO / "models_onnx" / "bathymetry_s2_sim.onnx"))
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cuda: the GPU rows (bare model, decode alone, overlap, engine), measured on the "
                        "CPU provider with a clear note where CUDA is not usable")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="rsai-bench-"))
    rng = np.random.default_rng(0)
    image = rng.integers(100, 3000, size=(3, args.size, args.size), dtype=np.uint16)
    scene = workdir / "scene.tif"
    with rasterio.open(scene, "w", driver="GTiff", width=args.size, height=args.size, count=3, dtype="uint16",
                       crs="EPSG:32636", transform=from_origin(580000, 3870000, 10, 10), tiled=True) as dst:
        dst.write(image)
    if args.device == "cuda":
        return device_report(args, scene, workdir)

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

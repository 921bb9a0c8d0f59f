"""Tiled-pipeline overhead and CPU vs CUDA throughput of a shipped model, measured in one run.

CPU rows (issue #15), each the best of two runs, the engine in a fresh tuning cache (its first run
measures batch size and threads, its second uses them):
- engine vs the naive peer (bench/naive_peer.py): output Mpx/s of ``run_onnx`` (read, normalise,
  run, blend or stitch, write a compressed GeoTIFF) over the peer's (goal >= 1.3), and how far each
  is from one whole-window run of the model away from the window's edges (seamless: ~1e-5);
- overhead = wall time of the engine task / wall time of bare ``session.run`` over exactly the tiles
  and batches of the engine's tile plan, with its threads (goal <= 1.05);
- ``estimate_bathymetry`` (the same model plus its quality layers) for reference;
- the bound: bare ``session.run`` at the seamless tile that gives the most output per second, over the
  peer's rate (what an engine without any overhead could reach).
Where onnxruntime can use CUDA, the same engine task is also timed on the GPU.
Usage: python bench/throughput.py [--size 2048] [--model models_onnx/bathymetry_s2_sim.onnx]

``--device cuda``: the GPU rows (issue #15), output Mpx/s over the tiles and batches of the engine's
tile plan on the device, each the best of three rounds taken in turn, of
- the bare model: ``Model.run`` (IO binding, pinned buffers, the fp16 variant where one sits beside the
  model) over tiles decoded beforehand, and plain ``session.run`` over the same batches;
- decode alone: reading and normalising the same tiles (``InputGrid.read_tiles``), on one thread and
  in parallel on one thread per core (each with its own dataset handle), no model;
- decode overlapped with the device: one thread decodes batch k+1 while ``Model.submit`` runs batch k;
- the engine's ``run_onnx`` on the device.
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
from dataclasses import replace
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
from bench.naive_peer import naive_peer  # noqa: E402
from engine.tasks import run_task  # noqa: E402


def engine_seconds(scene: Path, model_path: str, device: str, out: Path,
                   task: str = "estimate_bathymetry") -> tuple[float, dict]:
    began = time.perf_counter()
    result = run_task(task, {"input": str(scene), "output": str(out), "model": model_path,
                             "device": device}, lambda f, m: None, lambda: False)
    return time.perf_counter() - began, result


def planned_model(model_path: str, result: dict, device: str = "cpu") -> Model:
    """The model as the engine ran it: its tile plan's tile, overlap, batch size and threads."""
    model = Model(model_path, device, threads=None if result["threads"] == "default" else result["threads"])
    model.contract = replace(model.contract, tile_size=result["tile_size"], overlap=result["overlap"],
                             batch_size=result["batch_size"])
    return model


def seam_error(model: Model, scene: Path, outputs: list[Path], window: int = 768) -> list[float]:
    """Largest |output - one whole-window run of the model| inside an aligned window at the scene's
    centre, the receptive radius (or a quarter of the window) away from its edges, per output."""
    record = model.contract.fully_convolutional
    margin = record.get("receptive_radius", window // 4)
    with rasterio.open(scene) as source:
        start = source.width // 2 // 64 * 64 - window // 2
        raw = source.read(window=((start, start + window), (start, start + window)), out_dtype="float32")
    outputs_ = model.contract.outputs
    expected = model.session.run(None, {model.input_names[0]: normalise(raw, True, model.contract.mean,
                                                                         model.contract.std)[None]})[0][0]
    expected = expected * outputs_.scale + outputs_.offset
    inner = (slice(None), slice(start + margin, start + window - margin), slice(start + margin, start + window - margin))
    errors = []
    for path in outputs:
        with rasterio.open(path) as out:
            errors.append(float(np.abs(out.read()[inner] - expected[:, margin:-margin, margin:-margin]).max()))
    return errors


def cpu_report(args: argparse.Namespace, scene: Path, workdir: Path) -> None:
    """Engine vs the naive peer, engine vs bare session.run over its own tiles, and the bathymetry task."""
    os.environ["RSAI_CACHE_DIR"] = str(workdir / "cache")  # a first use: tuned on the first run
    megapixels = args.size ** 2 / 1e6
    engine, result = min((engine_seconds(scene, args.model, "cpu", workdir / "engine.tif", "run_onnx")
                          for _ in range(2)), key=lambda pair: pair[0])
    peer = min(timed(naive_peer, args.model, scene, workdir / "peer.tif") for _ in range(2))
    model = planned_model(args.model, result)
    _, batches = decode_seconds(scene, model, 1)
    bare = min(model_seconds(lambda b: model.session.run(None, {model.input_names[0]: b}), batches) for _ in range(2))
    del batches
    task, _ = min((engine_seconds(scene, args.model, "cpu", workdir / "task.tif") for _ in range(2)),
                  key=lambda pair: pair[0])
    engine_seam, peer_seam = seam_error(model, scene, [workdir / "engine.tif", workdir / "peer.tif"])
    print(f"model {model.contract.name}, {args.size}x{args.size} px; engine tile plan: {result['tiles']} tiles of "
          f"{result['tile_size']} px, overlap {result['overlap']}, batch {result['batch_size']}, threads "
          f"{result['threads']} ({result['tuning']}); peer: tiles of {Model(args.model, 'cpu').contract.tile_size} "
          "px, no overlap, batch 1")
    print(f"engine run_onnx: {engine:.2f} s, {megapixels / engine:.3f} Mpx/s; naive peer: {peer:.2f} s, "
          f"{megapixels / peer:.3f} Mpx/s; engine / peer output rate {peer / engine:.2f} (goal >= 1.3)")
    print(f"largest difference to a whole-window run away from its edges: engine {engine_seam:.2e}, "
          f"peer {peer_seam:.2e} (model units x scale)")
    print(f"bare session.run over the engine's tiles: {bare:.2f} s; engine / bare {engine / bare:.3f} (goal <= 1.05)")
    print(f"estimate_bathymetry (same model, quality layers too): {task:.2f} s, {megapixels / task:.3f} Mpx/s")
    if model.contract.fully_convolutional:
        tile, rate = best_seamless_tile(model)
        print(f"bound: bare session.run at the best seamless tile ({tile} px, overlap {model.contract.overlap}) gives "
              f"{rate:.2f} Mpx/s of output: an engine with no overhead at all would reach {rate / (megapixels / peer):.2f}x "
              "the peer")


def best_seamless_tile(model: Model, tiles: tuple[int, ...] = (256, 384, 512, 768, 1024)) -> tuple[int, float]:
    """The tile of ``tiles`` at which bare ``session.run`` (batch 1, the plan's threads, random tiles) gives
    the most output Mpx/s once the overlap a seamless stitch needs is discounted, and that rate: the most
    any tiled engine can reach on this model and machine while seamless."""
    overlap, name = model.contract.overlap, model.input_names[0]
    rng = np.random.default_rng(0)
    rates = {}
    for tile in (tile for tile in tiles if tile > 2 * overlap):
        image = rng.standard_normal((1, len(model.contract.bands), tile, tile), np.float32)
        model.session.run(None, {name: image})
        runs = max(2, int(8e6 // tile ** 2))
        seconds = min(timed(lambda: [model.session.run(None, {name: image}) for _ in range(runs)]) for _ in range(2))
        rates[tile] = runs * (tile - overlap) ** 2 / seconds / 1e6
    best = max(rates, key=rates.get)
    return best, rates[best]


def timed(function, *args) -> float:
    began = time.perf_counter()
    function(*args)
    return time.perf_counter() - began


def tile_batches(model: Model) -> callable:
    """The engine's tile rows of a grid as (row, batch columns) pairs, in the pipeline's order."""
    contract = model.contract
    tile, overlap, aligned = contract.tile_size, contract.overlap, bool(contract.fully_convolutional)

    def batches(width: int, height: int) -> list[tuple[int, list[int]]]:
        cols = tile_origins(width, tile, overlap, aligned)
        return [(row, cols[start:start + contract.batch_size]) for row in tile_origins(height, tile, overlap, aligned)
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
    on_gpu = Model(args.model, "auto").provider == CUDA
    if not on_gpu:
        reason = ("this onnxruntime has no CUDA provider (a CPU-only package; onnxruntime-gpu has it)"
                  if CUDA not in providers else "the CUDA provider is listed but the session fell back to the CPU: "
                  + (why_not_cuda() or "no reason found"))
        print(f"CUDA NOT AVAILABLE: {reason.rstrip('.')}. No GPU figure: the rows below are onnxruntime's CPU "
              "provider in its place (bench/gpu_device_check.py is the check to run on a GPU machine).")
    device = "cuda" if on_gpu else "cpu"
    megapixels = args.size ** 2 / 1e6
    os.environ["RSAI_CACHE_DIR"] = str(workdir / "cache")  # a first use: tuned on the first run
    engine, result = min((engine_seconds(scene, args.model, device, workdir / f"{device}.tif", "run_onnx")
                          for _ in range(2)), key=lambda pair: pair[0])
    model = planned_model(args.model, result, device)  # the rows below run over the engine's own tiles
    _, batches = decode_seconds(scene, model, 1)
    model.run(batches[0])  # warm-up: CUDA context, kernels, the first pinned buffers
    bound = DeviceBatches(model.session, "cpu")  # on the CPU provider: the measurement behind its docstring
    timings = {  # each the best of three rounds, taken in turn so that a load that comes and goes hits all
        "bare": lambda: model_seconds(model.run, batches),
        "plain": lambda: model_seconds(lambda b: model.session.run(None, {model.input_names[0]: b}), batches),
        "decode_1": lambda: decode_seconds(scene, model, 1)[0],
        "decode_n": lambda: decode_seconds(scene, model, os.cpu_count())[0],
        "overlapped": lambda: overlapped_seconds(scene, model),
        **({} if on_gpu else {
            "cpu_binding": lambda: model_seconds(lambda b: bound.run(bound.stage({model.input_names[0]: b}, 0)),
                                                 batches)}),
    }
    best = {label: float("inf") for label in timings}
    for _ in range(3):
        for label, timed in timings.items():
            best[label] = min(best[label], timed())
    bare, plain, decode_1, decode_n, overlapped = (best[k] for k in ("bare", "plain", "decode_1", "decode_n",
                                                                     "overlapped"))
    print(f"model {model.contract.name} on {model.provider} ({model.precision}"
          f"{', IO binding, ' + model.device_batches.host_memory + ' host buffers' if on_gpu else ''}), "
          f"{args.size}x{args.size} px; the engine's tile plan: {result['tiles']} tiles of {result['tile_size']} px, "
          f"overlap {result['overlap']}, {len(batches)} batches of up to {result['batch_size']}, threads "
          f"{result['threads']}")
    rows = [("bare model (Model.run over decoded tiles)", bare),
            ("bare session.run, no IO binding", plain),
            ("decode alone, 1 thread", decode_1),
            (f"decode alone, {os.cpu_count()} threads", decode_n),
            ("decode (1 thread) overlapped with Model.submit", overlapped),
            ("engine run_onnx (read, run, blend, write)", engine)]
    for label, seconds in rows:
        print(f"  {label:<48} {seconds:7.2f} s  {megapixels / seconds:7.2f} Mpx/s")
    print(f"engine / bare model {engine / bare:.2f}; engine / parallel decode alone {engine / decode_n:.2f}; "
          f"overlapped / max(bare, decode 1 thread) {overlapped / max(bare, decode_1):.2f} (1.00: the slower "
          f"of the two hides the other)")
    if not on_gpu:
        print(f"CPU IO binding (preallocated buffers) / plain session.run: {best['cpu_binding'] / plain:.3f}")


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

    cpu_report(args, scene, workdir)
    megapixels = args.size ** 2 / 1e6
    if CUDA in Model(args.model, "auto").session.get_providers()[:1]:
        engine, _ = engine_seconds(scene, args.model, "cpu", workdir / "cpu.tif")
        engine_seconds(scene, args.model, "cuda", workdir / "warm.tif")  # CUDA context and kernels warm-up
        gpu, _ = engine_seconds(scene, args.model, "cuda", workdir / "gpu.tif")
        print(f"CUDA throughput: {megapixels / gpu:.2f} Mpx/s through the engine "
              f"({engine / gpu:.1f}x the CPU)")
    else:
        print("CUDA: not usable by onnxruntime on this machine; no GPU figure")


if __name__ == "__main__":
    main()

"""The tiling of one run: tile size, overlap, tiles per batch and onnxruntime threads.

A model of fixed tile size runs at its contract's tile size, overlap and batch size, blended
(engine/pipeline.py). A fully convolutional model (the contract's ``fully_convolutional`` record,
written at export by training/fully_convolutional.py) runs at the tile that computes the fewest
pixels among those that fit the memory budget (``max_memory`` MB; a tile's fixed cost counted as
``TILE_COST_PX``): tiles overlap by twice the receptive radius, rounded up to the model's size
multiple, and are stitched at the middle of each overlap (the overlap-tile strategy of Ronneberger,
Fischer & Brox, U-Net, MICCAI 2015), so that every output pixel comes from a tile that holds its
whole receptive field.

The budget counts the model's memory (``activation_bytes_per_px`` of the record) for each tile of a
batch and its views, the batches read ahead and the results, and the buffers as wide as the raster:
the blending accumulator, the finished rows and the strips waiting to be written, and GDAL's block
cache (bounded in engine/raster_io.py). By default it is ``PIPELINE_MB`` plus the model's memory for
a ``DEFAULT_TILE`` px tile: the budget, not the raster's size, bounds what a run adds, so memory
stays flat as rasters grow (bench/memory.py).

Tiles per batch and onnxruntime's threads are measured on the first run large enough to gain from
it (``TUNE_MIN_TILE_PX`` of tiles) for each model file (SHA-256), device and tile size, and kept in
``tuning.json`` in the user cache folder (``RSAI_CACHE_DIR`` or the platform's own).
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from engine.contract import ModelContract
from engine.errors import EngineError
from engine.model_catalogue import file_sha256, user_app_dir
from engine.output_files import partial_path
from engine.raster_io import GDAL_OPTIONS, OUTPUT_BLOCK
from engine.runtime import Model, thread_budget

PIPELINE_MB = 128  # default budget for the pipeline's own buffers and GDAL's block cache
LEAST_MAX_MEMORY_MB = 128
DEFAULT_TILE = 1024  # px: the default budget holds the model's memory for one such tile besides
READ_AHEAD_BATCHES = 4  # batches read and normalised ahead of the model (engine/pipeline.py)
WRITE_BEHIND_STRIPS = 2  # strips waiting for the writer thread (engine/raster_io.py)
TUNE_MIN_TILE_PX = 4_000_000  # tile pixels a run must hold for tuning to be worth a few seconds
BATCH_CANDIDATES = (1, 2, 4, 8, 16, 32)
TILE_COST_PX = 128 * 128  # a tile's fixed cost (its reads, model run and blending) counted as pixels computed
CACHE_DIR_ENV = "RSAI_CACHE_DIR"
TUNING_FILE = "tuning.json"


@dataclass(frozen=True)
class TilePlan:
    tile: int
    overlap: int
    batch_size: int
    threads: int | None  # None: onnxruntime's default
    tuning: str  # "measured", "cached", "given" (batch size from the run options) or "default"
    max_memory: int  # MB
    warnings: tuple[str, ...] = ()

    def report(self) -> dict:
        return {"tile_size": self.tile, "overlap": self.overlap, "batch_size": self.batch_size,
                "threads": self.threads or "default", "tuning": self.tuning, "max_memory": self.max_memory}


def default_max_memory(contract: ModelContract) -> int:
    """MB: ``PIPELINE_MB`` and the model's memory for a ``DEFAULT_TILE`` px tile."""
    model = contract.fully_convolutional.get("activation_bytes_per_px", 0.0) * DEFAULT_TILE ** 2
    return PIPELINE_MB + math.ceil(model / 2**20)


def check_max_memory(max_memory: int | None, contract: ModelContract) -> int:
    """The budget in MB: ``max_memory`` or the model's default; under ``LEAST_MAX_MEMORY_MB`` is refused."""
    if max_memory is None:
        return default_max_memory(contract)
    if max_memory < LEAST_MAX_MEMORY_MB:
        raise EngineError(f"max_memory is {max_memory} MB; give at least {LEAST_MAX_MEMORY_MB} (MB of memory a run may use for its "
                          f"tiles and buffers; default for {contract.name}: {default_max_memory(contract)})")
    return int(max_memory)


def plan_tiles(model: Model, width: int, height: int, channels: int, views: int = 1,
               max_memory: int | None = None, batch_size: int | None = None, layer_bytes: int = 0) -> TilePlan:
    """The plan of a run over a ``width`` x ``height`` grid writing ``channels`` blended channels,
    each tile run in ``views`` test-time augmentations; ``batch_size`` from the run options wins;
    ``layer_bytes``: what the run's extra layers (quality, out of distribution) hold beside the tiles."""
    contract = model.contract
    megabytes = check_max_memory(max_memory, contract)
    budget = megabytes * 2**20 - GDAL_OPTIONS["GDAL_CACHEMAX"] - layer_bytes
    per_tile_px = _tile_bytes_per_px(contract, channels, views)
    warnings = []
    if contract.fully_convolutional:
        tile, overlap, fits = _largest_useful_tile(contract, width, height, channels, per_tile_px, budget)
        if not fits:
            warnings.append(f"max_memory {megabytes} MB is less than the smallest tile of {contract.name} "
                            f"needs ({tile} px); running at that tile anyway: give a larger max_memory")
    else:
        tile, overlap = contract.tile_size, contract.overlap
    row_bytes = _row_bytes(width, tile, channels, weighted=not contract.fully_convolutional)
    fitting_batch = max(1, int((budget - row_bytes) // (per_tile_px * tile ** 2)))
    default_batch = 1 if contract.fully_convolutional else contract.batch_size
    tile_px = _tile_count(width, tile, overlap) * _tile_count(height, tile, overlap) * tile ** 2
    plan = TilePlan(tile, overlap, batch_size or default_batch, None, "given" if batch_size else "default",
                    megabytes, tuple(warnings))
    if contract.batch_size == 1 and not contract.fully_convolutional and model.session.get_inputs()[0].shape[0] == 1:
        return plan  # the graph takes one tile per run
    tuned = cached_tuning(model, tile)
    if tuned is None and tile_px >= TUNE_MIN_TILE_PX:
        tuned = tune(model, tile, fitting_batch if batch_size is None else batch_size, batch_size is None)
    if tuned is None:
        return plan
    return replace(plan, threads=tuned["threads"], batch_size=batch_size or min(tuned["batch_size"], fitting_batch),
                   tuning=tuned["source"] if batch_size is None else "given")


def planned_model(model: Model, plan: TilePlan, device: str) -> Model:
    """``model`` running by ``plan``: its contract's tile size, overlap and batch size replaced, and a
    session of its own when the plan sets the thread count."""
    contract = replace(model.contract, tile_size=plan.tile, overlap=plan.overlap, batch_size=plan.batch_size)
    if plan.threads is None:
        model.contract = contract
        return model
    return Model(model.path, device, threads=plan.threads, contract=lambda _: contract)


def _tile_bytes_per_px(contract: ModelContract, channels: int, views: int) -> float:
    """Memory per tile pixel of one tile in a batch: the model's (the views of a tile take the batch's
    places, engine/uncertainty.py), the tile read (raw and normalised, with its mask) for every batch
    read ahead, its views and their results."""
    model = contract.fully_convolutional.get("activation_bytes_per_px", 0.0)
    bands = len(contract.bands)
    return model + views * 4 * (bands + channels) + (READ_AHEAD_BATCHES + 1) * (8 * bands + 1)


def _row_bytes(width: int, tile: int, channels: int, weighted: bool) -> float:
    """The buffers as wide as the raster (engine/pipeline.py): the accumulator and its validity (and
    its weights where tiles are ``weighted``, not stitched) over a tile of rows, the finished rows (a
    tile and an output block), the strips queued for writing and the one being converted."""
    return width * (tile * (4 * channels + 1 + 4 * weighted) + (OUTPUT_BLOCK + tile) * (4 * channels + 1)
                    + (WRITE_BEHIND_STRIPS + 1) * OUTPUT_BLOCK * 4 * channels)


def fully_convolutional_overlap(contract: ModelContract) -> int:
    """Twice the receptive radius, rounded up to twice the size multiple (so that the stitch at the
    middle of each overlap keeps every tile origin a multiple of it)."""
    record = contract.fully_convolutional
    step = 2 * record["size_multiple"]
    return math.ceil(2 * record["receptive_radius"] / step) * step


def _largest_useful_tile(contract: ModelContract, width: int, height: int, channels: int, per_tile_px: float,
                         budget: int) -> tuple[int, int, bool]:
    """(tile, overlap, fits): of the tiles whose run at batch 1 fits the budget, the one computing
    the fewest pixels over the grid, each tile's fixed cost counted as ``TILE_COST_PX`` (the larger
    tile on a tie); the smallest useful tile, with a stride of at least the overlap (at most 4 times
    the pixels computed), when none fits."""
    multiple = contract.fully_convolutional["size_multiple"]
    overlap = fully_convolutional_overlap(contract)
    smallest = overlap + max(multiple, overlap)
    largest = max(smallest, math.ceil(max(width, height) / multiple) * multiple)
    best = None
    for tile in range(smallest, largest + 1, multiple):
        if tile ** 2 * per_tile_px + _row_bytes(width, tile, channels, weighted=False) > budget:
            break  # grows with the tile
        computed = _tile_count(width, tile, overlap) * _tile_count(height, tile, overlap) * (tile ** 2 + TILE_COST_PX)
        if best is None or computed <= best[0]:
            best = (computed, tile)
    return (best[1], overlap, True) if best else (smallest, overlap, False)


def _tile_count(length: int, tile: int, overlap: int) -> int:
    return 1 if length <= tile else 1 + math.ceil((length - tile) / (tile - overlap))


def user_cache_dir() -> Path:
    """``RSAI_CACHE_DIR``, else the platform's per-user cache folder (~/.cache or $XDG_CACHE_HOME on
    Linux, %LOCALAPPDATA% on Windows, ~/Library/Caches on macOS) / rsai-toolbox."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    return user_app_dir("cache")


def _tuning_key(model: Model, tile: int) -> str:
    return f"{file_sha256(Path(model.path))}:{model.provider}:{thread_budget() or os.cpu_count()}:{tile}"


def _read_tunings() -> dict:
    path = user_cache_dir() / TUNING_FILE
    try:
        tunings = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # none yet, or damaged: measured again
    return tunings if isinstance(tunings, dict) else {}


def cached_tuning(model: Model, tile: int) -> dict | None:
    entry = _read_tunings().get(_tuning_key(model, tile))
    if not (isinstance(entry, dict) and isinstance(entry.get("batch_size"), int)
            and (entry.get("threads") is None or isinstance(entry.get("threads"), int))):
        return None
    return {**entry, "source": "cached"}


def tune(model: Model, tile: int, largest_batch: int, batches: bool = True) -> dict:
    """Measure tiles per second of ``model`` at ``tile`` px over thread counts (powers of two up to
    the CPU count, and the CPU count) and, when ``batches``, batch sizes up to ``largest_batch``
    (growing while it gains more than 3 %), twice in turn (the best of the two: other work on the
    machine slows one or the other); keep the fastest in the cache. Thread counts stop at the process's
    thread budget (engine.runtime.thread_budget: a Ray worker's CPUs)."""
    cpus = thread_budget() or os.cpu_count() or 1
    thread_counts = sorted({min(2 ** k, cpus) for k in range(cpus.bit_length() + 1)}) if model.provider.startswith(
        "CPU") else [None]
    sizes = [b for b in BATCH_CANDIDATES if b <= max(1, largest_batch)] if batches else [largest_batch]
    tile_batch = np.random.default_rng(0).standard_normal((sizes[-1], len(model.contract.bands), tile, tile),
                                                          np.float32)
    runners = {threads: model if threads is None else Model(model.path, "cpu", threads=threads,
                                                             contract=lambda _: model.contract)
               for threads in thread_counts}
    rates: dict[tuple, float] = {}
    for threads, runner in runners.items():  # first pass: batch sizes while they gain
        for batch in sizes:
            rates[threads, batch] = _tiles_per_second(runner, tile_batch[:batch])
            if batch > sizes[0] and rates[threads, batch] < rates[threads, sizes[sizes.index(batch) - 1]] * 1.03:
                break
    for threads, batch in list(rates):  # second pass over what was measured
        rates[threads, batch] = max(rates[threads, batch], _tiles_per_second(runners[threads], tile_batch[:batch]))
    (threads, batch), rate = max(rates.items(), key=lambda item: item[1])
    best = {"tiles_per_s": round(rate, 3), "batch_size": batch, "threads": threads}
    _store_tuning(_tuning_key(model, tile), best)
    return {**best, "source": "measured"}


def _tiles_per_second(model: Model, batch: np.ndarray) -> float:
    model.run(batch)  # warm-up: the arena and kernels
    began, runs = time.perf_counter(), 0
    while runs < 2 or time.perf_counter() - began < 0.5:
        model.run(batch)
        runs += 1
    return runs * len(batch) / (time.perf_counter() - began)


def _store_tuning(key: str, entry: dict) -> None:
    """Add ``entry`` to the cache file, replaced whole (a run reading it meanwhile sees the old or new file)."""
    path = user_cache_dir() / TUNING_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tunings = _read_tunings()
        tunings[key] = entry
        partial = partial_path(path, ".json")
        partial.write_text(json.dumps(tunings, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(partial, path)
    except OSError:
        pass  # a read-only cache folder: the run goes on, tuned, and measures again next time

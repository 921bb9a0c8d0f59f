"""The one tiled inference pipeline every raster task uses.

read tiles (model band order, nodata-aware) -> normalise -> batch -> onnxruntime -> blend the
overlapping tiles with a weighted window -> hand finished strips of rows to the task, which writes them.

Memory is bounded by the raster WIDTH, never its area: only one row of tiles is held (an accumulator
of ``tile_size`` rows) plus the finished rows waiting to fill an output block row.
Blending: each tile's output is multiplied by a separable weight that ramps linearly over the overlap
and never reaches 0, accumulated, and divided by the accumulated weight, so a constant prediction
stays exactly constant across tile borders (no seams) and edge pixels with a single tile are exact.
With test-time augmentation (engine/uncertainty.py) each tile's output is the mean over its views,
and their spread is blended beside it in the same way.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from engine.errors import Cancelled
from engine.raster_io import OUTPUT_BLOCK, InputGrid
from engine.runtime import Model
from engine.uncertainty import TestTimeAugmentation

Progress = Callable[[float, str], None]
IsCancelled = Callable[[], bool]


def tile_origins(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets covering [0, length) with tiles of ``tile`` overlapping by at least ``overlap``."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    origins = list(range(0, length - tile, stride))
    origins.append(length - tile)  # the last tile ends exactly at the edge
    return origins


def blend_ramp(size: int, overlap: int) -> np.ndarray:
    """1-D weights: 1 in the middle, falling linearly to 1/(overlap+1) at both ends (never 0)."""
    if overlap == 0:
        return np.ones(size, np.float32)
    position = np.arange(size, dtype=np.float32)
    distance_to_edge = np.minimum(position, size - 1 - position) + 1
    return np.minimum(1.0, distance_to_edge / (overlap + 1)).astype(np.float32)


@dataclass
class Strip:
    """Finished output rows [row, row + height) of the grid: blended channels and input validity."""

    row: int
    values: np.ndarray  # float32 [channels, height, width]; a view, valid until the next strip
    valid: np.ndarray  # bool [height, width]
    spread: np.ndarray | None = None  # test-time augmentation of regression: [channels, height, width]


@dataclass
class RunStats:
    tiles: int = 0
    model_seconds: float = 0.0  # inside session.run, for the overhead benchmark


def infer_strips(
    model: Model, grid: InputGrid, progress: Progress, cancelled: IsCancelled, stats: RunStats,
    augmentation: TestTimeAugmentation | None = None,
) -> Iterator[Strip]:
    """Run ``model`` tile by tile over ``grid`` and yield blended strips, top to bottom; with
    ``augmentation``, every tile in each of its views, in the same batches."""
    contract = model.contract
    tile, overlap = contract.tile_size, contract.overlap
    tile_h, tile_w = min(tile, grid.height), min(tile, grid.width)
    rows = tile_origins(grid.height, tile, overlap)
    cols = tile_origins(grid.width, tile, overlap)
    weight = blend_ramp(tile_h, overlap)[:, None] * blend_ramp(tile_w, overlap)[None, :]
    channels = contract.outputs.channels + (augmentation.spread_channels if augmentation else 0)
    tiles_per_batch = augmentation.tiles_per_batch if augmentation else contract.batch_size
    total = len(rows) * len(cols)

    # Preallocated, reused buffers (no per-row allocations: RSS stays flat on huge rasters).
    acc = np.zeros((channels, tile_h, grid.width), np.float32)
    acc_weight = np.zeros((tile_h, grid.width), np.float32)
    acc_valid = np.zeros((tile_h, grid.width), bool)
    done = np.empty((channels, OUTPUT_BLOCK + tile_h, grid.width), np.float32)
    done_valid = np.empty((OUTPUT_BLOCK + tile_h, grid.width), bool)
    done_rows, done_first_row = 0, 0

    for row_index, row in enumerate(rows):
        for start in range(0, len(cols), tiles_per_batch):
            if cancelled():
                raise Cancelled("cancelled by the user; no output was written")
            batch_cols = cols[start:start + tiles_per_batch]
            tiles, valids = grid.read_tiles(model.contract, row, batch_cols, tile_h, tile_w)
            model_started = time.perf_counter()
            out = (augmentation.run(model, tiles) if augmentation else model.run(tiles))[:, :, :tile_h, :tile_w]
            stats.model_seconds += time.perf_counter() - model_started
            for col, prediction, valid in zip(batch_cols, out, valids):
                acc[:, :, col:col + tile_w] += prediction * weight
                acc_weight[:, col:col + tile_w] += weight
                acc_valid[:, col:col + tile_w] |= valid
            stats.tiles += len(batch_cols)
            count = row_index * len(cols) + start + len(batch_cols)
            progress(count / total, f"{count}/{total} tiles")

        # Rows above the next tile row's origin receive no more tiles: they are final.
        last = row_index + 1 == len(rows)
        finished = tile_h if last else rows[row_index + 1] - row
        np.divide(acc[:, :finished], acc_weight[:finished], out=done[:, done_rows:done_rows + finished])
        done_valid[done_rows:done_rows + finished] = acc_valid[:finished]
        done_rows += finished
        for buffer in (acc, acc_weight, acc_valid):
            _move_rows(buffer, finished, 0, tile_h - finished)
            buffer[..., tile_h - finished:, :] = 0
        if done_rows >= OUTPUT_BLOCK or last:  # hand over whole output block rows only
            flush = done_rows if last else done_rows - done_rows % OUTPUT_BLOCK
            outputs = contract.outputs.channels
            yield Strip(done_first_row, done[:outputs, :flush], done_valid[:flush],
                        done[outputs:, :flush] if channels > outputs else None)
            keep = done_rows - flush
            _move_rows(done, flush, 0, keep)
            _move_rows(done_valid, flush, 0, keep)
            done_rows, done_first_row = keep, done_first_row + flush


def _move_rows(buffer: np.ndarray, source: int, target: int, count: int) -> None:
    """Copy ``count`` rows of a [..., rows, width] buffer upwards, one row at a time: an overlapping
    slice assignment would make numpy allocate a temporary as large as the buffer."""
    for offset in range(count):
        buffer[..., target + offset, :] = buffer[..., source + offset, :]

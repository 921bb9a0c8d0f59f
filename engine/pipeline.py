"""The one tiled inference pipeline every raster task uses.

read tiles (model band order, nodata-aware) -> normalise -> batch -> onnxruntime -> blend the
overlapping tiles with a weighted window -> hand finished strips of rows to the task, which writes them.

Memory is bounded by the raster WIDTH, never its area: only one row of tiles is held (an accumulator
of ``tile_size`` rows) plus the finished rows waiting to fill an output block row.
Blending: each tile's output is multiplied by a separable weight that ramps linearly over the overlap
and never reaches 0, accumulated, and divided by the accumulated weight, so a constant prediction
stays exactly constant across tile borders (no seams) and edge pixels with a single tile are exact.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from engine.errors import Cancelled
from engine.raster_io import OUTPUT_BLOCK, InputGrid
from engine.runtime import Model

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
    values: np.ndarray  # float32 [channels, height, width]
    valid: np.ndarray  # bool [height, width]


@dataclass
class RunStats:
    tiles: int = 0
    model_seconds: float = 0.0  # inside session.run, for the overhead benchmark


def infer_strips(
    model: Model, grid: InputGrid, progress: Progress, cancelled: IsCancelled, stats: RunStats
) -> Iterator[Strip]:
    """Run ``model`` tile by tile over ``grid`` and yield blended strips, top to bottom."""
    contract = model.contract
    tile, overlap = contract.tile_size, contract.overlap
    tile_h, tile_w = min(tile, grid.height), min(tile, grid.width)
    rows = tile_origins(grid.height, tile, overlap)
    cols = tile_origins(grid.width, tile, overlap)
    weight = blend_ramp(tile_h, overlap)[:, None] * blend_ramp(tile_w, overlap)[None, :]
    mean, std = model.normalisation
    channels = contract.outputs.channels
    total = len(rows) * len(cols)

    acc = np.zeros((channels, tile_h, grid.width), np.float32)
    acc_weight = np.zeros((tile_h, grid.width), np.float32)
    acc_valid = np.zeros((tile_h, grid.width), bool)
    pending: list[Strip] = []
    pending_rows = 0

    for row_index, row in enumerate(rows):
        for start in range(0, len(cols), contract.batch_size):
            if cancelled():
                raise Cancelled("cancelled by the user; no output was written")
            batch_cols = cols[start:start + contract.batch_size]
            batch, valids = [], []
            for col in batch_cols:
                data, valid = grid.read(row, col, tile_h, tile_w)
                batch.append(np.where(valid, (data - mean) / std, 0.0))
                valids.append(valid)
            tiles = np.stack(batch).astype(np.float32, copy=False)
            tiles = _pad_to(tiles, tile)
            model_started = time.perf_counter()
            out = model.run(tiles)[:, :, :tile_h, :tile_w]
            stats.model_seconds += time.perf_counter() - model_started
            for col, prediction, valid in zip(batch_cols, out, valids):
                acc[:, :, col:col + tile_w] += prediction * weight
                acc_weight[:, col:col + tile_w] += weight
                acc_valid[:, col:col + tile_w] |= valid
            stats.tiles += len(batch_cols)
            done = row_index * len(cols) + start + len(batch_cols)
            progress(done / total, f"{done}/{total} tiles")

        finished = (rows[row_index + 1] - row) if row_index + 1 < len(rows) else tile_h
        pending.append(Strip(row, acc[:, :finished] / acc_weight[:finished], acc_valid[:finished].copy()))
        pending_rows += finished
        acc = np.concatenate([acc[:, finished:], np.zeros((channels, finished, grid.width), np.float32)], 1)
        acc_weight = np.concatenate([acc_weight[finished:], np.zeros((finished, grid.width), np.float32)])
        acc_valid = np.concatenate([acc_valid[finished:], np.zeros((finished, grid.width), bool)])
        last = row_index + 1 == len(rows)
        if pending_rows >= OUTPUT_BLOCK or last:
            flush = pending_rows if last else pending_rows - pending_rows % OUTPUT_BLOCK
            yield from _take_rows(pending, flush)
            pending_rows -= flush


def _take_rows(pending: list[Strip], count: int) -> Iterator[Strip]:
    """Merge the first ``count`` pending rows into one block-aligned strip; keep the rest pending."""
    merged_values = np.concatenate([s.values for s in pending], axis=1)
    merged_valid = np.concatenate([s.valid for s in pending], axis=0)
    first_row = pending[0].row
    pending.clear()
    if count < merged_valid.shape[0]:
        pending.append(Strip(first_row + count, merged_values[:, count:], merged_valid[count:]))
    yield Strip(first_row, merged_values[:, :count], merged_valid[:count])


def _pad_to(tiles: np.ndarray, tile: int) -> np.ndarray:
    """Zero-pad [N, C, h, w] to [N, C, tile, tile] (rasters smaller than one tile)."""
    n, c, h, w = tiles.shape
    if h == tile and w == tile:
        return tiles
    padded = np.zeros((n, c, tile, tile), np.float32)
    padded[:, :, :h, :w] = tiles
    return padded

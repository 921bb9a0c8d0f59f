"""The one tiled inference pipeline every raster task uses.

read tiles (model band order, nodata-aware) -> normalise -> batch -> onnxruntime -> blend the
overlapping tiles with a weighted window -> hand finished strips of rows to the task, which writes them.
Reading and normalising run on ``READ_THREADS`` threads of their own, each with its own handles
on the input files (GDAL datasets are not shared between threads), up to ``READ_AHEAD_BATCHES``
batches ahead of the model; batches reach the model in order, so the output is the same, byte for
byte, as read one after the other.

Memory is bounded by the raster WIDTH, never its area: only one row of tiles is held (an accumulator
of ``tile_size`` rows) plus the finished rows waiting to fill an output block row; the tile size of a
fully convolutional model is chosen within a memory budget (engine/tile_plan.py).
Blending (models of fixed tile size): each tile's output is multiplied by a separable weight that
ramps linearly over the overlap and never reaches 0, accumulated, and divided by the accumulated
weight, so a constant prediction stays exactly constant across tile borders (no seams) and edge
pixels with a single tile are exact.
Stitching (fully convolutional models): tile origins are multiples of the stride, itself a multiple
of the model's size multiple, and each pixel takes the value of the one tile in which it lies at
least half the overlap (>= the receptive radius) from every inner tile edge, copied, with no weights:
the result equals a whole-image run away from the raster's edges (overlap-tile strategy,
Ronneberger, Fischer & Brox, U-Net, MICCAI 2015). The last tile may reach past the raster's end,
read as invalid zeros, like the tiles of a raster smaller than one tile.
With test-time augmentation (engine/uncertainty.py) each tile's output is the mean over its views,
and their spread is blended beside it in the same way.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from engine.errors import Cancelled
from engine.raster_io import OUTPUT_BLOCK, InputGrid
from engine.runtime import Model
from engine.tile_plan import READ_AHEAD_BATCHES
from engine.uncertainty import TestTimeAugmentation

Progress = Callable[[float, str], None]
IsCancelled = Callable[[], bool]
READ_THREADS = 2  # 0: read on the model's thread


def tile_origins(length: int, tile: int, overlap: int, aligned: bool = False) -> list[int]:
    """Start offsets covering [0, length) with tiles of ``tile`` overlapping by at least ``overlap``;
    ``aligned``: every one a multiple of the stride (the last tile may then reach past ``length``)."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    if aligned:
        return list(range(0, length - overlap, stride))
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


def stitch_span(size: int, overlap: int, first: bool, last: bool) -> slice:
    """The part of a stitched tile that it gives the output: all but the outer half of each overlap
    with a neighbour (the spans of consecutive tiles on the stride meet exactly)."""
    return slice(0 if first else overlap // 2, size if last else size - overlap // 2)


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
    stitched = bool(contract.fully_convolutional)
    tile_h, tile_w = min(tile, grid.height), min(tile, grid.width)
    rows = tile_origins(grid.height, tile, overlap, stitched)
    cols = tile_origins(grid.width, tile, overlap, stitched)
    channels = contract.outputs.channels + (augmentation.spread_channels if augmentation else 0)
    tiles_per_batch = augmentation.tiles_per_batch if augmentation else contract.batch_size
    batches = [(row_index, cols[start:start + tiles_per_batch])
               for row_index in range(len(rows)) for start in range(0, len(cols), tiles_per_batch)]
    total = len(rows) * len(cols)

    # Preallocated, reused buffers (no per-row allocations: RSS stays flat on huge rasters).
    acc = np.zeros((channels, tile_h, grid.width), np.float32)
    acc_weight = None if stitched else np.zeros((tile_h, grid.width), np.float32)
    acc_valid = np.zeros((tile_h, grid.width), bool)
    done = np.empty((channels, OUTPUT_BLOCK + tile_h, grid.width), np.float32)
    done_valid = np.empty((OUTPUT_BLOCK + tile_h, grid.width), bool)
    done_rows, done_first_row, count = 0, 0, 0

    weight = None if stitched else blend_ramp(tile_h, overlap)[:, None] * blend_ramp(tile_w, overlap)[None, :]

    def add(prediction: np.ndarray, valid: np.ndarray, row_index: int, col: int, height: int, width: int) -> None:
        """One tile's output into the accumulator: its stitched span copied, or weighted and added."""
        if stitched:  # height and width are the tile's part inside the raster (the tile's own but at the end)
            span_rows = stitch_span(height, overlap, row_index == 0, row_index + 1 == len(rows))
            span_cols = stitch_span(width, overlap, col == 0, col == cols[-1])
            target = (span_rows, slice(col + span_cols.start, col + span_cols.stop))
            acc[(slice(None), *target)] = prediction[:, span_rows, span_cols]
            acc_valid[target] = valid[span_rows, span_cols]
            return
        acc[:, :height, col:col + width] += (prediction * weight)[:, :height, :width]
        acc_weight[:height, col:col + width] += weight[:height, :width]
        acc_valid[:height, col:col + width] |= valid[:height, :width]

    def predictions(reader: TileReader) -> Iterator[tuple[tuple[int, list[int]], list[np.ndarray], np.ndarray]]:
        """Each batch with its tiles' validity and the model's output, in order. On a device with
        its own batches (CUDA: ``Model.device_batches``) the next batch is submitted before this
        one's result is taken, so that the device runs while the reader threads decode."""
        def timed(run: Callable[[], np.ndarray]) -> np.ndarray:
            started = time.perf_counter()
            out = run()
            stats.model_seconds += time.perf_counter() - started
            return out

        ahead = augmentation is None and model.device_batches is not None
        pending = None
        for batch, (tiles, valids) in zip(batches, reader.batches(batches)):
            if cancelled():
                raise Cancelled("cancelled by the user; no output was written")
            if not ahead:
                yield batch, valids, timed(lambda: augmentation.run(model, tiles) if augmentation else model.run(tiles))
                continue
            submitted = (batch, valids, timed(lambda: model.submit(tiles)))
            if pending is not None:
                yield pending[0], pending[1], timed(pending[2].result)
            pending = submitted
        if pending is not None:
            yield pending[0], pending[1], timed(pending[2].result)

    with TileReader(grid, contract, rows, tile_h, tile_w) as reader:
        for (row_index, batch_cols), valids, out in predictions(reader):
            out = out[:, :, :tile_h, :tile_w]
            row = rows[row_index]
            height = min(tile_h, grid.height - row)  # a stitched last tile may reach past the raster
            for col, prediction, valid in zip(batch_cols, out, valids):
                add(prediction, valid, row_index, col, height, min(tile_w, grid.width - col))
            stats.tiles += len(batch_cols)
            count += len(batch_cols)
            progress(count / total, f"{count}/{total} tiles")
            if batch_cols[-1] != cols[-1]:
                continue

            # Rows above the next tile row's origin receive no more tiles: they are final.
            last = row_index + 1 == len(rows)
            finished = height if last else rows[row_index + 1] - row
            if stitched:
                done[:, done_rows:done_rows + finished] = acc[:, :finished]
            else:
                np.divide(acc[:, :finished], acc_weight[:finished], out=done[:, done_rows:done_rows + finished])
            done_valid[done_rows:done_rows + finished] = acc_valid[:finished]
            done_rows += finished
            for buffer in (acc, acc_valid) if stitched else (acc, acc_weight, acc_valid):
                _move_rows(buffer, finished, 0, tile_h - finished)
                buffer[..., tile_h - finished:, :] = 0
            if done_rows >= OUTPUT_BLOCK or last:  # hand over whole output block rows only, one block row a strip
                flush = done_rows if last else done_rows - done_rows % OUTPUT_BLOCK
                outputs = contract.outputs.channels
                for start in range(0, flush, OUTPUT_BLOCK):
                    block = slice(start, min(start + OUTPUT_BLOCK, flush))
                    yield Strip(done_first_row + start, done[:outputs, block], done_valid[block],
                                done[outputs:, block] if channels > outputs else None)
                release_freed_memory()
                keep = done_rows - flush
                _move_rows(done, flush, 0, keep)
                _move_rows(done_valid, flush, 0, keep)
                done_rows, done_first_row = keep, done_first_row + flush


@functools.cache
def _libc():
    with contextlib.suppress(OSError):
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6") if sys.platform.startswith("linux") else None


def release_freed_memory() -> None:
    """With glibc, give the memory freed since the last call back to the system (``malloc_trim``).
    Tiles allocated on the reader threads and freed on the model's thread (and strips the other way)
    leave free holes in glibc's per-thread heaps that it does not return by itself: the peak RSS of a
    16000^2 run was about 190 MB higher than on one thread (bench/memory.py). Called once per strip
    (every ``OUTPUT_BLOCK`` rows) it costs far less than mapping each array apart, which slowed runs by
    a third. Elsewhere, nothing to do."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


class TileReader:
    """Reads and normalises batches of tiles on ``READ_THREADS`` threads, each with its own handles
    on the input files (opened and closed on that thread, as rasterio requires), at most
    ``READ_AHEAD_BATCHES`` batches ahead, and gives them in order."""

    def __init__(self, grid: InputGrid, contract, rows: list[int], tile_h: int, tile_w: int):
        self.grid, self.contract, self.rows, self.tile_h, self.tile_w = grid, contract, rows, tile_h, tile_w
        self.jobs: queue.Queue = queue.Queue()
        self.threads = [threading.Thread(target=self._serve, name="rsai-read", daemon=True)
                        for _ in range(READ_THREADS)]
        for thread in self.threads:
            thread.start()

    def __enter__(self) -> TileReader:
        return self

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                self.jobs.get_nowait()[0].cancel()
        for thread in self.threads:
            self.jobs.put(None)
        for thread in self.threads:
            thread.join()

    def batches(self, batches: list[tuple[int, list[int]]]) -> Iterator[tuple[np.ndarray, list[np.ndarray]]]:
        if not self.threads:
            for row_index, batch_cols in batches:
                yield self._read(self.grid, row_index, batch_cols)
            return
        pending = deque()
        for row_index, batch_cols in batches:
            pending.append(Future())
            self.jobs.put((pending[-1], row_index, batch_cols))
            if len(pending) > READ_AHEAD_BATCHES:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def _serve(self) -> None:
        try:
            grid, close = self.grid.reopened()
        except BaseException as error:  # e.g. the file went away: every job this thread takes fails with it
            grid, close, failure = None, (lambda: None), error
        else:
            failure = None
        try:
            while (job := self.jobs.get()) is not None:
                future, row_index, batch_cols = job
                if future.set_running_or_notify_cancel():
                    try:
                        if failure:
                            raise failure
                        future.set_result(self._read(grid, row_index, batch_cols))
                    except BaseException as error:  # given to the model's thread by result()
                        future.set_exception(error)
        finally:
            close()

    def _read(self, grid: InputGrid, row_index: int, batch_cols: list[int]):
        return grid.read_tiles(self.contract, self.rows[row_index], batch_cols, self.tile_h, self.tile_w)


def _move_rows(buffer: np.ndarray, source: int, target: int, count: int) -> None:
    """Copy ``count`` rows of a [..., rows, width] buffer upwards, one row at a time: an overlapping
    slice assignment would make numpy allocate a temporary as large as the buffer."""
    for offset in range(count):
        buffer[..., target + offset, :] = buffer[..., source + offset, :]

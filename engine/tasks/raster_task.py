"""What every raster-to-raster task shares: open the model and input, run the tiled pipeline,
write the task's outputs atomically, and report what ran. A task only says how blended model
output becomes its output bands (``RasterTask.outputs`` and ``RasterTask.convert``).
"""
from __future__ import annotations

import contextlib
import functools
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace

import numpy as np

from engine.contract import ModelContract
from engine.errors import EngineError, ModelContractError
from engine.input_distribution import InputDistribution, input_distribution
from engine import pipeline
from engine.pipeline import IsCancelled, Progress, RunStats, Strip, infer_strips
from engine.quality import NO_DATA, REASON_COLOURS, REASONS, VALID, QualityLayer, nir_contract
from engine.raster_io import (
    OUTPUT_BLOCK,
    InputGrid,
    OutputGrid,
    OutputSpec,
    StripWriter,
    atomic_outputs,
    check_output_paths,
    open_input,
    present_bands,
)
from engine.runtime import MODELS_DIR, Model
from engine.tasks.parameters import EXTENT, PATH, DictOf, ListOf
from engine.tile_plan import WRITE_BEHIND_STRIPS, plan_tiles, planned_model
from engine.uncertainty import TestTimeAugmentation, UncertaintyLayer, check_uncertainty

RASTER_PARAMS = {
    "input": ((PATH, ListOf(PATH)), True),  # one raster, or several files of one area (e.g. one per band)
    "output": (PATH, True),
    "model": (PATH, False),
    "bands": ((str, DictOf(int)), False),  # 'B02=1,B03=2' or {"B02": 1, "B03": 2}
    "extent": (EXTENT, False),
    "resample": (bool, False),
    "device": (str, False),
    "strict": (bool, False),  # refuse input values implausible for the model (engine/radiometry.py)
    "batch_size": (int, False),  # tiles per model run instead of the contract's (less memory when smaller)
    "max_memory": (int, False),  # MB a run may use for tiles and buffers (engine/tile_plan.py); sets the tile size
}
LAYER_COLUMNS = 1024  # columns of a strip whose quality and out-of-distribution layers are made at once
# Peak memory of the quality and out-of-distribution tests per pixel of such a chunk, halo included:
# 97 bytes measured with tracemalloc on a simulated coastal chunk (8 % optically deep), rounded up for
# scenes with more optically deep candidates (the filter's arrays grow with them).
LAYER_BYTES_PER_PX = 128
WATER_PARAMS = {  # tasks over water: quality layers (engine/quality.py)
    "quality_layer": (PATH, False),  # GeoTIFF of the reason per pixel (valid, land, cloud, glint, deep, out of range)
    "keep_masked": (bool, False),  # keep the values of pixels the quality layer flags (default: nodata)
}
UNCERTAINTY_PARAMS = {  # tasks with a per-pixel prediction: test-time augmentation (engine/uncertainty.py)
    "uncertainty": (PATH, False),  # GeoTIFF of the spread (regression) or entropy and top probability (classes)
}


def as_list(paths: str | list[str]) -> list[str]:
    return [paths] if isinstance(paths, str) else list(paths)


class RasterTask(ABC):
    """A model that maps an input raster to output rasters on the same grid."""

    name: str
    default_model: str  # file name in models_onnx/
    output_kind: str  # the contract's outputs.kind this task can use
    over_water = False  # quality layers: land, cloud, glint, optically deep, out of range (WATER_PARAMS)
    params = RASTER_PARAMS

    def model_path(self, params: dict) -> str:
        return params.get("model") or str(MODELS_DIR / self.default_model)

    def load_model(self, params: dict) -> Model:
        """The model with the contract to run by (the one in its metadata by default)."""
        return Model(self.model_path(params), params.get("device", "auto"))

    def check_model(self, contract: ModelContract, params: dict) -> None:
        """Refuse a model this task cannot use (ModelContractError naming what is wrong)."""
        if contract.outputs.kind != self.output_kind:
            raise ModelContractError(
                f"model {contract.name} produces {contract.outputs.kind} output (task {contract.task!r}); "
                f"{self.name} needs a {self.output_kind} model"
            )

    @abstractmethod
    def outputs(self, contract: ModelContract, params: dict, grid: InputGrid) -> dict[str, OutputSpec]:
        """The GeoTIFFs this task writes, by result key (the parameter naming each path)."""

    @abstractmethod
    def convert(self, contract: ModelContract, strip: Strip, specs: list[OutputSpec]) -> list[np.ndarray]:
        """Blended model output of one strip -> one array [bands, h, w] per output spec.
        ``strip.values`` may be modified in place."""

    def input_paths(self, params: dict) -> list[str]:
        return as_list(params["input"])

    def open_grid(self, params: dict, contract: ModelContract):
        """Context manager giving the processing grid the pipeline reads tiles from."""
        return open_input(params["input"], contract, params.get("bands"), params.get("extent"),
                          params.get("resample", False), strict=params.get("strict", False))

    def report(self, params: dict, result: dict, progress: Progress, cancelled: IsCancelled) -> dict:
        """Task-specific figures added to the result once the outputs are in place; none by default."""
        return {}

    def run(self, params: dict, progress: Progress, cancelled: IsCancelled) -> dict:
        started = time.perf_counter()
        model = self.load_model(params)
        if params.get("batch_size") is not None:
            if params["batch_size"] < 1:
                raise EngineError(f"batch_size is {params['batch_size']}; give a whole number >= 1 (tiles per model "
                                  "run: smaller needs less memory)")
            model.contract = replace(model.contract, batch_size=params["batch_size"])
        contract = model.contract
        self.check_model(contract, params)
        if params.get("uncertainty"):
            check_uncertainty(contract)
        stats = RunStats()
        with self.open_grid(params, contract) as grid, contextlib.ExitStack() as stack:
            outputs = self.outputs(contract, params, grid)
            layers = ExtraLayers(
                input_distribution(contract.input_statistics, bool(contract.modalities))
                if contract.input_statistics else None,
                self.open_quality(params, contract, grid, stack) if self.over_water else None,
                TestTimeAugmentation(contract) if params.get("uncertainty") else None)
            if layers.quality and layers.quality.spec:
                outputs["quality_layer"] = layers.quality.spec
            if layers.augmentation:
                layers.uncertainty = UncertaintyLayer(contract, params["uncertainty"], bool(layers.distribution))
                outputs["uncertainty"] = layers.uncertainty.spec
            specs = list(outputs.values())
            check_output_paths({key: spec.path for key, spec in outputs.items()}, *self.input_paths(params))
            warnings = list(grid.warnings)
            grid_info = {"width": grid.width, "height": grid.height, "crs": grid.crs.to_string()}
            augmentation = layers.augmentation
            plan = plan_tiles(model, grid.width, grid.height,
                              contract.outputs.channels + (augmentation.spread_channels if augmentation else 0),
                              len(augmentation.views) if augmentation else 1, params.get("max_memory"),
                              params.get("batch_size"), layers.buffer_bytes(grid.width))
            model = planned_model(model, plan, params.get("device", "auto"))
            if augmentation:
                layers.augmentation = TestTimeAugmentation(model.contract)
            warnings += plan.warnings
            valid_pixels = self._write(model, grid, specs, progress, cancelled, stats, layers)
        if layers.distribution and (unlike_training := layers.distribution.warning(contract.name)):
            warnings.append(unlike_training)
        if valid_pixels == 0:
            warnings.append(
                "the input has no valid pixels (all nodata or masked) in the processed area: "
                "the output is entirely nodata"
            )
        result = {
            "outputs": {key: spec.path for key, spec in outputs.items()},
            "device": model.provider,
            "tiles": stats.tiles,
            "model_seconds": round(stats.model_seconds, 3),
            "model": contract.name,
            "kind": contract.outputs.kind,
            "names": list(contract.outputs.names),
            "colors": list(contract.outputs.colors),
            "units": contract.outputs.units,
            "nodata": specs[0].nodata,
            "grid": grid_info,
            **plan.report(),
            "warnings": warnings,
        }
        result.update(layers.report(contract, stats))
        result.update(self.report(params, result, progress, cancelled))
        result["seconds"] = round(time.perf_counter() - started, 3)
        return result

    def open_quality(self, params: dict, contract: ModelContract, grid: InputGrid, stack) -> WaterQuality:
        """The quality layer of this run, reading NIR beside the model's bands where the input has it."""
        paths = self.input_paths(params)
        has_nir = bool(present_bands(paths, nir_contract(contract).bands))
        nir = stack.enter_context(open_input(paths, nir_contract(contract), target=OutputGrid(
            grid.crs, grid.transform, grid.width, grid.height))) if has_nir else None
        spec = OutputSpec(params["quality_layer"], 1, "uint8", NO_DATA, band_names=("quality",),
                          colormap=REASON_COLOURS, tags={"model": contract.name, **{
                              f"reason_{code}": name for code, name in REASONS.items()}}) \
            if params.get("quality_layer") else None
        return WaterQuality(QualityLayer(contract, has_nir), nir, not params.get("keep_masked", False), spec)

    def _write(self, model, grid: InputGrid, specs, progress, cancelled, stats, layers: ExtraLayers) -> int:
        """``specs``: the task's outputs, then the quality and uncertainty rasters asked for. Each strip's
        layers, conversion and writing run on the writer thread (engine/raster_io.py StripWriter), on a
        copy of the strip: the pipeline reuses its buffers for the next one. The grid's own handles are
        the writer thread's alone while the pipeline reads through handles of its reading threads (with
        no reading threads, the strips are made and written on this thread too)."""
        behind = WRITE_BEHIND_STRIPS if pipeline.READ_THREADS else 0
        valid_pixels = [0]
        task_specs = specs[:len(specs) - layers.rasters]

        def make(strip: Strip):
            extra = layers.apply(model.contract, grid, strip)
            valid_pixels[0] += int(strip.valid.sum())
            window = ((strip.row, strip.row + strip.valid.shape[0]), (0, grid.width))
            return self.convert(model.contract, strip, task_specs) + extra, window

        with atomic_outputs(grid, specs) as datasets:
            writer = StripWriter(datasets, behind)
            try:
                for strip in infer_strips(model, grid, progress, cancelled, stats, layers.augmentation):
                    own = Strip(strip.row, strip.values.copy(), strip.valid.copy(),
                                None if strip.spread is None else strip.spread.copy()) if behind else strip
                    writer.write(functools.partial(make, own))
                writer.close()
            finally:
                writer.abandon()
        return valid_pixels[0]


@dataclass
class WaterQuality:
    """One run's quality layer: the NIR grid it reads beside the model's bands, whether masked
    pixels become nodata, and the quality raster to write (if asked for)."""

    layer: QualityLayer
    nir: InputGrid | None
    mask: bool
    spec: OutputSpec | None

    def apply(self, contract: ModelContract, values: np.ndarray, valid: np.ndarray, top: int, left: int,
              strip: Strip, cols: slice, unlike_training: np.ndarray | None) -> np.ndarray:
        """The reasons of the strip's columns ``cols`` from their raw input ``values`` [model bands, rows, w] and
        ``valid`` [rows, w], which begin ``top`` rows above the strip and ``left`` columns left of ``cols`` and
        may reach below and right of them (the layer's halo), and their pixels out of the training
        distribution; masked pixels leave ``strip.valid`` when masking."""
        if self.nir is not None:
            values = np.concatenate([values, self.nir.read(strip.row - top, cols.start - left, *values.shape[1:])[0]])
        depth = (strip.values[0, :, cols] * contract.outputs.scale + contract.outputs.offset
                 if contract.outputs.kind == "regression" else None)
        reasons = self.layer.reasons(values, valid, depth, unlike_training, slice(top, top + strip.valid.shape[0]),
                                     slice(left, left + cols.stop - cols.start))
        if self.mask:
            strip.valid[:, cols] &= reasons == VALID
        return reasons


@dataclass
class ExtraLayers:
    """What a run computes beside the task's outputs, strip by strip: the out-of-distribution
    distance (when the contract records the training inputs), the water quality reasons, and the
    uncertainty of test-time augmentation."""

    distribution: InputDistribution | None
    quality: WaterQuality | None
    augmentation: TestTimeAugmentation | None
    uncertainty: UncertaintyLayer | None = None

    @property
    def rasters(self) -> int:
        """How many of the run's output rasters are these layers' (after the task's own)."""
        return bool(self.quality and self.quality.spec) + bool(self.uncertainty)

    def buffer_bytes(self, width: int) -> int:
        """Memory the quality and out-of-distribution layers hold while a strip is made: their arrays
        as wide as the raster and one chunk's tests (for the tile plan's budget)."""
        if not (self.distribution or self.quality):
            return 0
        halo = self.quality.layer.halo if self.quality else 0
        chunk = (OUTPUT_BLOCK + 2 * halo) * (min(LAYER_COLUMNS, width) + 2 * halo)
        return chunk * LAYER_BYTES_PER_PX + width * OUTPUT_BLOCK * (4 * bool(self.distribution) + bool(self.quality))

    def apply(self, contract: ModelContract, grid: InputGrid, strip: Strip) -> list[np.ndarray]:
        """The layers' arrays for ``strip`` (before the task converts its values); may mask ``strip.valid``.
        The input is read again ``LAYER_COLUMNS`` columns at a time, with the quality layer's halo of rows
        and columns: the same arrays as from the whole strip at once, in memory that does not grow with
        the raster's width."""
        height = strip.valid.shape[0]
        halo = self.quality.layer.halo if self.quality else 0
        top, bottom = min(halo, strip.row), min(halo, grid.height - strip.row - height)
        distance = np.empty(strip.valid.shape, np.float32) if self.distribution else None
        reasons = np.empty(strip.valid.shape, np.uint8) if self.quality else None
        for start in range(0, grid.width, LAYER_COLUMNS) if self.distribution or self.quality else ():
            cols = slice(start, min(start + LAYER_COLUMNS, grid.width))
            left, right = min(halo, start), min(halo, grid.width - cols.stop)
            values, valid = grid.read(strip.row - top, start - left, top + height + bottom,
                                      cols.stop - start + left + right)
            window = (slice(top, top + height), slice(left, left + cols.stop - start))
            if self.distribution:
                distance[:, cols] = self.distribution.relative_distances(values, strip.valid[:, cols], *window)
            if self.quality:
                valid[window] &= strip.valid[:, cols]
                reasons[:, cols] = self.quality.apply(contract, values, valid, top, left, strip, cols,
                                                      None if distance is None else distance[:, cols] > 1)
        arrays = [reasons[None]] if self.quality and self.quality.spec else []
        if self.uncertainty:
            arrays.append(self.uncertainty.bands(strip.values, strip.spread, strip.valid, distance))
        return arrays

    def report(self, contract: ModelContract, stats: RunStats) -> dict:
        """Result entries: quality shares, the out-of-distribution share, the augmentation's cost."""
        report = {}
        if self.quality:
            layer = self.quality.layer
            report["quality"] = {"shares": layer.summary(), "not_checked": layer.notes(),
                                 "names": list(REASONS.values()),
                                 "colors": ["#{:02x}{:02x}{:02x}".format(*REASON_COLOURS[code][:3]) for code in REASONS]}
        if self.distribution:
            report["out_of_distribution"] = self.distribution.summary()
        if self.augmentation:
            views = len(self.augmentation.views)
            report["uncertainty"] = {"augmentations": views, "test_time_augmentations": contract.test_time_augmentations,
                                     "output": "mean over the augmentations",
                                     "model_seconds_per_augmentation": round(stats.model_seconds / views, 3)}
        return report

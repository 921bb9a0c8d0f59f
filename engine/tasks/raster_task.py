"""What every raster-to-raster task shares: open the model and input, run the tiled pipeline,
write the task's outputs atomically, and report what ran. A task only says how blended model
output becomes its output bands (``RasterTask.outputs`` and ``RasterTask.convert``).
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod

import numpy as np

from engine.contract import ModelContract
from engine.errors import ModelContractError
from engine.pipeline import IsCancelled, Progress, RunStats, Strip, infer_strips
from engine.raster_io import InputGrid, OutputSpec, atomic_outputs, check_output_paths, open_input
from engine.runtime import MODELS_DIR, Model
from engine.tasks.parameters import EXTENT, PATH, DictOf, ListOf

RASTER_PARAMS = {
    "input": ((PATH, ListOf(PATH)), True),  # one raster, or several files of one area (e.g. one per band)
    "output": (PATH, True),
    "model": (PATH, False),
    "bands": ((str, DictOf(int)), False),  # 'B02=1,B03=2' or {"B02": 1, "B03": 2}
    "extent": (EXTENT, False),
    "resample": (bool, False),
    "device": (str, False),
    "strict": (bool, False),  # refuse input values implausible for the model (engine/radiometry.py)
}


def as_list(paths: str | list[str]) -> list[str]:
    return [paths] if isinstance(paths, str) else list(paths)


class RasterTask(ABC):
    """A model that maps an input raster to output rasters on the same grid."""

    name: str
    default_model: str  # file name in models_onnx/
    output_kind: str  # the contract's outputs.kind this task can use
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
        contract = model.contract
        self.check_model(contract, params)
        stats = RunStats()
        with self.open_grid(params, contract) as grid:
            outputs = self.outputs(contract, params, grid)
            specs = list(outputs.values())
            check_output_paths({key: spec.path for key, spec in outputs.items()}, *self.input_paths(params))
            warnings = list(grid.warnings)
            grid_info = {"width": grid.width, "height": grid.height, "crs": grid.crs.to_string()}
            valid_pixels = self._write(model, grid, specs, progress, cancelled, stats)
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
            "warnings": warnings,
        }
        result.update(self.report(params, result, progress, cancelled))
        result["seconds"] = round(time.perf_counter() - started, 3)
        return result

    def _write(self, model, grid: InputGrid, specs, progress, cancelled, stats) -> int:
        valid_pixels = 0
        with atomic_outputs(grid, specs) as datasets:
            for strip in infer_strips(model, grid, progress, cancelled, stats):
                valid_pixels += int(strip.valid.sum())
                window = ((strip.row, strip.row + strip.valid.shape[0]), (0, grid.width))
                for dataset, array in zip(datasets, self.convert(model.contract, strip, specs)):
                    dataset.write(array, window=window)
        return valid_pixels

"""What every per-pixel regression task writes: one float32 band per output channel, in the
contract's physical units (network output * scale + offset), nodata where the input is invalid."""
from __future__ import annotations

import numpy as np

from engine.contract import ModelContract
from engine.pipeline import Strip
from engine.raster_io import InputGrid, OutputSpec
from engine.tasks.raster_task import RasterTask

VALUE_NODATA = -9999.0


class ValueMapTask(RasterTask):
    output_kind = "regression"

    def outputs(self, contract: ModelContract, params: dict, grid: InputGrid) -> dict[str, OutputSpec]:
        out = contract.outputs
        return {"output": OutputSpec(
            params["output"], out.channels, "float32", VALUE_NODATA,
            band_names=tuple(f"{name} ({out.units})" if out.units else name for name in out.names),
            tags={"model": contract.name, "units": out.units, "description": out.description},
        )}

    def convert(self, contract: ModelContract, strip: Strip, specs: list[OutputSpec]) -> list[np.ndarray]:
        values = strip.values  # converted in place: no copy of a raster-wide strip
        values *= contract.outputs.scale
        values += contract.outputs.offset
        values[:, ~strip.valid] = VALUE_NODATA
        return [values]

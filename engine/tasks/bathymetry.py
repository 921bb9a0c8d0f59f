"""Bathymetry estimation: depth in metres from multispectral shallow-water imagery.

Models follow MagicBathyNet (Agrafiotis et al., "MagicBathyNet: A Multimodal Remote Sensing Dataset
for Bathymetry Prediction and Pixel-based Classification in Shallow Waters", IGARSS 2024): a network
output multiplied by the contract's scale gives depth below the surface, positive down.
"""
from __future__ import annotations

import numpy as np

from engine.contract import ModelContract
from engine.pipeline import Strip
from engine.raster_io import InputGrid, OutputSpec
from engine.tasks.raster_task import RasterTask

DEPTH_NODATA = -9999.0


class EstimateBathymetry(RasterTask):
    name = "estimate_bathymetry"
    default_model = "bathymetry_s2_sim.onnx"
    output_kind = "regression"

    def outputs(self, contract: ModelContract, params: dict, grid: InputGrid) -> dict[str, OutputSpec]:
        out = contract.outputs
        return {"output": OutputSpec(
            params["output"], out.channels, "float32", DEPTH_NODATA,
            band_names=tuple(f"{name} ({out.units})" if out.units else name for name in out.names),
            tags={"model": contract.name, "units": out.units, "description": out.description},
        )}

    def convert(self, contract: ModelContract, strip: Strip, specs: list[OutputSpec]) -> list[np.ndarray]:
        values = strip.values  # converted in place: no copy of a raster-wide strip
        values *= contract.outputs.scale
        values += contract.outputs.offset
        values[:, ~strip.valid] = DEPTH_NODATA
        return [values]

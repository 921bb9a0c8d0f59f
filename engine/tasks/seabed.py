"""Seabed classification: a class per pixel (and optionally per-class probabilities).

Models follow MagicBathyNet's pixel-based seabed classification (Agrafiotis et al., IGARSS 2024):
softmax probabilities per class, blended across tiles before the arg-max so that tile borders
leave no seams.
"""
from __future__ import annotations

import numpy as np

from engine.contract import ModelContract
from engine.pipeline import Strip
from engine.raster_io import InputGrid, OutputSpec
from engine.tasks.raster_task import RASTER_PARAMS, RasterTask

CLASS_NODATA = 255
PROBABILITY_NODATA = -1.0


def _rgba(hex_colour: str) -> tuple[int, int, int, int]:
    value = hex_colour.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16), 255


class ClassifySeabed(RasterTask):
    name = "classify_seabed"
    default_model = "seabed_s2_sim.onnx"
    output_kind = "classes"
    params = {**RASTER_PARAMS, "probabilities": (str, False)}

    def outputs(self, contract: ModelContract, params: dict, grid: InputGrid) -> dict[str, OutputSpec]:
        names = contract.outputs.names
        tags = {"model": contract.name, "class_names": ",".join(names)}
        tags.update({f"class_{index}": name for index, name in enumerate(names)})
        specs = {"output": OutputSpec(
            params["output"], 1, "uint8", CLASS_NODATA, band_names=("seabed class",),
            colormap={i: _rgba(c) for i, c in enumerate(contract.outputs.colors)} or None, tags=tags,
        )}
        if params.get("probabilities"):
            specs["probabilities"] = OutputSpec(
                params["probabilities"], len(names), "float32", PROBABILITY_NODATA,
                band_names=tuple(f"P({name})" for name in names), tags=tags,
            )
        return specs

    def convert(self, contract: ModelContract, strip: Strip, specs: list[OutputSpec]) -> list[np.ndarray]:
        classes = strip.values.argmax(axis=0).astype(np.uint8)
        classes[~strip.valid] = CLASS_NODATA
        if len(specs) == 1:
            return [classes[None]]
        strip.values[:, ~strip.valid] = PROBABILITY_NODATA
        return [classes[None], strip.values]

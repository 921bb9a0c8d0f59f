"""What every per-pixel classification task writes: a class map (UInt8, the model's colours as a
palette, class names in the tags) and optionally the per-class probabilities, both blended across
tiles before the arg-max so that tile borders leave no seams."""
from __future__ import annotations

import numpy as np

from engine.contract import ModelContract
from engine.pipeline import Strip
from engine.raster_io import OutputSpec
from engine.tasks.raster_task import RasterTask

CLASS_NODATA = 255
PROBABILITY_NODATA = -1.0


def _rgba(hex_colour: str) -> tuple[int, int, int, int]:
    value = hex_colour.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16), 255


class ClassMapTask(RasterTask):
    output_kind = "classes"
    output_description = "class"

    def outputs(self, contract: ModelContract, params: dict, grid) -> dict[str, OutputSpec]:
        names = contract.outputs.names
        tags = {"model": contract.name, "class_names": ",".join(names)}
        tags.update({f"class_{index}": name for index, name in enumerate(names)})
        specs = {"output": OutputSpec(
            params["output"], 1, "uint8", CLASS_NODATA, band_names=(self.output_description,),
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

"""Run any per-pixel ONNX model: segmentation (class map), regression, or per-pixel embeddings.

The model takes one float32 ``[batch, bands, height, width]`` input and gives one
``[batch, channels, height, width]`` output. Its contract (ours or Deepness's) says how to feed it;
options complete or override it, and a model without any contract runs on options alone
(``engine.tasks.contract_options``). Outputs are those of the task for the output kind: a UInt8
class map and optional probabilities (``ClassMapTask``), or one float32 band per channel
(``ValueMapTask``: regression values, or the embedding's vector components).
"""
from __future__ import annotations

import numpy as np

from engine.contract import ModelContract
from engine.errors import EngineError, ModelContractError
from engine.pipeline import Strip
from engine.raster_io import InputGrid, OutputSpec
from engine.runtime import NAMED_INPUTS, Model, static
from engine.tasks.class_map import ClassMapTask
from engine.tasks.contract_options import CONTRACT_OPTIONS, contract_with_options
from engine.tasks.parameters import PATH
from engine.tasks.raster_task import RASTER_PARAMS, UNCERTAINTY_PARAMS, RasterTask
from engine.tasks.value_map import ValueMapTask

WRITERS = {"classes": ClassMapTask(), "regression": ValueMapTask(), "embedding": ValueMapTask()}


class RunOnnx(RasterTask):
    name = "run_onnx"
    params = {**RASTER_PARAMS, **UNCERTAINTY_PARAMS, "model": (PATH, True), "probabilities": (PATH, False),
              **CONTRACT_OPTIONS}

    def model_path(self, params: dict) -> str:
        if not params.get("model"):
            raise EngineError("run_onnx has no default model: give the model's .onnx file")
        return params["model"]

    def load_model(self, params: dict) -> Model:
        model = Model(self.model_path(params), params.get("device", "auto"),
                      contract=lambda model: contract_with_options(model, params))
        spatial = [static(size) for size in model.session.get_outputs()[0].shape[2:4]]
        if len(model.session.get_inputs()) == 1 and spatial == [1, 1] and model.contract.tile_size > 1:
            raise ModelContractError(
                f"{model.name} gives one value per {model.contract.tile_size} px tile ([batch, channels, 1, 1]), "
                "not one per pixel: run_onnx maps per-pixel outputs. Such a model (a search encoder, scene "
                "labels) runs in its own algorithm (Build search index, Classify scenes)")
        return model

    def check_model(self, contract: ModelContract, params: dict) -> None:
        if contract.modalities or contract.task in NAMED_INPUTS:
            raise ModelContractError(f"model {contract.name} takes several inputs ({contract.task}); run_onnx "
                                     "runs models of one image input: use the toolbox's algorithm for it")
        if contract.outputs.kind not in WRITERS:
            raise ModelContractError(f"model {contract.name} has {contract.outputs.kind} output; "
                                     f"run_onnx writes {', '.join(WRITERS)} outputs")
        if params.get("probabilities") and contract.outputs.kind != "classes":
            raise EngineError(f"probabilities are written for classes output only; model {contract.name} "
                              f"has {contract.outputs.kind} output")

    def outputs(self, contract: ModelContract, params: dict, grid: InputGrid) -> dict[str, OutputSpec]:
        return WRITERS[contract.outputs.kind].outputs(contract, params, grid)

    def convert(self, contract: ModelContract, strip: Strip, specs: list[OutputSpec]) -> list[np.ndarray]:
        return WRITERS[contract.outputs.kind].convert(contract, strip, specs)

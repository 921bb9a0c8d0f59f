"""Crop mapping from Sentinel-2 (and Sentinel-1) image time series with a multi-temporal model.

TSViT: Tarasiou et al., "ViTs for SITS: Vision Transformers for Satellite Image Time Series",
CVPR 2023, and its multi-modal S1 + S2 fusions (early, cross-attention, synchronized class token;
IGARSS 2024). The model gets each modality's dates as day of year, so the number and the dates of
acquisitions may differ between modalities and from training; clouds and nodata are masked per
pixel and date (engine.time_series_io). Output: a class map on the grid of the first Sentinel-2
date, with the class palette, and optionally per-class probabilities.
"""
from __future__ import annotations

from engine.contract import ModelContract
from engine.errors import ModelContractError
from engine.tasks.class_map import ClassMapTask
from engine.tasks.parameters import EXTENT, PATH, ListOf
from engine.tasks.raster_task import UNCERTAINTY_PARAMS, as_list
from engine.time_series_io import open_time_series


class MapCrops(ClassMapTask):
    name = "map_crops"
    default_model = "crop_tsvit_s1s2_sim.onnx"
    output_description = "crop class"
    params = {
        "s2": ((PATH, ListOf(PATH)), True),
        "s1": ((PATH, ListOf(PATH)), False),
        "dates_s2": (ListOf(str), False),
        "dates_s1": (ListOf(str), False),
        "output": (PATH, True),
        "probabilities": (PATH, False),
        "model": (PATH, False),
        "extent": (EXTENT, False),
        "resample": (bool, False),
        "device": (str, False),
        "strict": (bool, False),
        **UNCERTAINTY_PARAMS,
    }

    def check_model(self, contract: ModelContract, params: dict) -> None:
        super().check_model(contract, params)
        if not contract.modalities:
            raise ModelContractError(f"model {contract.name} is not a time-series model (no modalities)")

    def input_paths(self, params: dict) -> list[str]:
        return as_list(params["s2"]) + as_list(params.get("s1", []))

    def open_grid(self, params: dict, contract: ModelContract):
        inputs = {name: as_list(params[name]) for name in ("s2", "s1") if params.get(name)}
        dates = {name: params.get(f"dates_{name}") for name in ("s2", "s1")}
        return open_time_series(contract, inputs, dates, params.get("extent"), params.get("resample", False),
                                params.get("strict", False))

"""Bathymetry estimation: depth in metres from multispectral shallow-water imagery.

Models follow MagicBathyNet (Agrafiotis et al., "MagicBathyNet: A Multimodal Remote Sensing Dataset
for Bathymetry Prediction and Pixel-based Classification in Shallow Waters", IGARSS 2024): a network
output multiplied by the contract's scale gives depth below the surface, positive down. Land, clouds,
glint, optically deep water and depths outside the training range are masked (engine/quality.py).
"""
from __future__ import annotations

from engine.tasks.raster_task import RASTER_PARAMS, UNCERTAINTY_PARAMS, WATER_PARAMS
from engine.tasks.value_map import ValueMapTask


class EstimateBathymetry(ValueMapTask):
    name = "estimate_bathymetry"
    default_model = "bathymetry_s2_sim.onnx"
    over_water = True
    params = {**RASTER_PARAMS, **WATER_PARAMS, **UNCERTAINTY_PARAMS}

"""Seabed classification: a class per pixel (and optionally per-class probabilities).

Models follow MagicBathyNet's pixel-based seabed classification (Agrafiotis et al., "MagicBathyNet:
A Multimodal Remote Sensing Dataset for Bathymetry Prediction and Pixel-based Classification in
Shallow Waters", IGARSS 2024). Land, clouds, glint and optically deep water are masked
(engine/quality.py).
"""
from __future__ import annotations

from engine.tasks.class_map import ClassMapTask
from engine.tasks.parameters import PATH
from engine.tasks.raster_task import RASTER_PARAMS, UNCERTAINTY_PARAMS, WATER_PARAMS


class ClassifySeabed(ClassMapTask):
    name = "classify_seabed"
    default_model = "seabed_s2_sim.onnx"
    output_description = "seabed class"
    over_water = True
    params = {**RASTER_PARAMS, **WATER_PARAMS, **UNCERTAINTY_PARAMS, "probabilities": (PATH, False)}

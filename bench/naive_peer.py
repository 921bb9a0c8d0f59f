"""A naive peer of the engine, for bench/throughput.py: it works the way the most-used QGIS ONNX
plugin's simplest setting does. It reads the whole raster into memory, cuts non-overlapping tiles of
the model's contract size (edge tiles padded with zeros), runs them one at a time through a plain
onnxruntime session, places each tile's output without blending, and writes an uncompressed
GeoTIFF of the model's values (network output * scale + offset). No nodata handling, no quality
layers, no memory bound.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime
import rasterio

from engine.contract import contract_from_metadata


def naive_peer(model_path: str | Path, image_path: str | Path, out_path: str | Path) -> int:
    """Write the peer's output for ``image_path`` to ``out_path``; returns the tiles run."""
    session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    contract = contract_from_metadata(session.get_modelmeta().custom_metadata_map, str(model_path))
    tile, name = contract.tile_size, session.get_inputs()[0].name
    mean = np.asarray(contract.mean, np.float32)[:, None, None]
    std = np.asarray(contract.std, np.float32)[:, None, None]
    with rasterio.open(image_path) as source:
        image = source.read(out_dtype="float32")
        profile = dict(driver="GTiff", width=source.width, height=source.height, count=contract.outputs.channels,
                       dtype="float32", crs=source.crs, transform=source.transform)
    height, width = image.shape[1:]
    output = np.empty((contract.outputs.channels, height, width), np.float32)
    tiles = 0
    for row in range(0, height, tile):
        for col in range(0, width, tile):
            part = (image[:, row:row + tile, col:col + tile] - mean) / std
            batch = np.zeros((1, len(mean), tile, tile), np.float32)
            batch[0, :, :part.shape[1], :part.shape[2]] = part
            result = session.run(None, {name: batch})[0][0]
            output[:, row:row + tile, col:col + tile] = result[:, :part.shape[1], :part.shape[2]]
            tiles += 1
    output = output * contract.outputs.scale + contract.outputs.offset
    with rasterio.open(out_path, "w", **profile) as target:
        target.write(output)
    return tiles

"""Small real GeoTIFFs and ONNX models for engine tests (real CRSs, real onnxruntime)."""
from __future__ import annotations

import numpy as np
import onnx
import rasterio
from rasterio.transform import from_origin

from engine.contract import Band, ModelContract, Outputs
from training.pointwise_onnx import pointwise_model

UTM36N = "EPSG:32636"
ORIGIN = (580000.0, 3870000.0)  # off Agia Napa, Cyprus
RGB_BANDS = (Band("B02", ("blue",)), Band("B03", ("green",)), Band("B04", ("red",)))


def write_raster(path, data, crs=UTM36N, pixel=10.0, nodata=None, descriptions=None, origin=ORIGIN):
    """data [bands, h, w] -> GeoTIFF (crs=None writes a raster with no georeferencing)."""
    count, height, width = data.shape
    profile = dict(driver="GTiff", width=width, height=height, count=count, dtype=data.dtype, nodata=nodata)
    if crs is not None:
        profile.update(crs=crs, transform=from_origin(*origin, pixel, pixel))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for index, name in enumerate(descriptions or (), start=1):
            dst.set_band_description(index, name)
    return str(path)


def contract(kind="regression", channels=1, tile=64, overlap=16, gsd=10.0, bands=RGB_BANDS,
             mean=(500.0, 400.0, 300.0), std=(100.0, 80.0, 60.0), scale=1.0):
    names = tuple(f"class{i}" for i in range(channels)) if kind == "classes" else ("depth",)
    return ModelContract(
        task="test", name=f"test-{kind}", bands=bands, mean=mean, std=std,
        outputs=Outputs(kind=kind, names=names, units="m" if kind == "regression" else "",
                        colors=tuple("#%02x0000" % (40 * i) for i in range(channels)) if kind == "classes" else (),
                        scale=scale),
        tile_size=tile, overlap=overlap, gsd_m=gsd, batch_size=4,
    )


def write_model(path, model_contract, weights, bias):
    onnx.save(pointwise_model(model_contract, np.asarray(weights, float), np.asarray(bias, float)), path)
    return str(path)


def scene(height=150, width=170, seed=0, dtype="uint16"):
    rng = np.random.default_rng(seed)
    return rng.integers(100, 1000, size=(3, height, width)).astype(dtype)

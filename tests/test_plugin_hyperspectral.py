"""HyCoT compress/decompress algorithms in real QGIS (processing.run) and qgis_process."""
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from test_hycot_engine import BANDS, WAVELENGTHS, codec, cube
from raster_fixtures import write_raster

SHIPPED = Path(__file__).resolve().parents[1] / "models_onnx"


@pytest.fixture
def cube_tif(tmp_path):
    return write_raster(tmp_path / "cube.tif", cube(), crs="EPSG:32633", pixel=30.0, nodata=-1,
                        descriptions=WAVELENGTHS)


def test_compress_and_decompress_round_trip_through_processing(rsai_provider, cube_tif, tmp_path):
    import processing

    encoder, decoder = codec(tmp_path, cube(), ratio=4)
    compressed = processing.run("rsai:compress_hyperspectral", {
        "INPUT": cube_tif, "MODEL": encoder, "QUALITY": True, "DEVICE": 1, "OUTPUT": str(tmp_path / "c.tif")})
    assert compressed["BITS_PER_PIXEL_PER_CHANNEL"] == 8.0 and compressed["SIZE_RATIO"] > 3
    assert compressed["PSNR_DB"] > 60 and compressed["SPECTRAL_ANGLE_DEG"] < 0.1
    restored = processing.run("rsai:decompress_hyperspectral", {
        "INPUT": compressed["OUTPUT"], "MODEL": decoder, "DEVICE": 1, "OUTPUT": str(tmp_path / "r.tif")})
    with rasterio.open(restored["OUTPUT"]) as out, rasterio.open(cube_tif) as src:
        assert (out.count, out.dtypes[0], out.nodata) == (BANDS, "int16", -1)
        assert out.crs == src.crs and out.transform == src.transform
        assert np.abs(out.read().astype(int) - src.read().astype(int)).max() <= 20


@pytest.mark.slow
def test_qgis_process_round_trip_with_a_shipped_model(qgis_process, tmp_path):
    from training.simulation.hyperspectral import simulate_scene, write_scene_geotiff

    scene = str(tmp_path / "enmap_sim.tif")
    write_scene_geotiff(simulate_scene(48, 40, seed=11), scene)
    run = qgis_process("run", "rsai:compress_hyperspectral", "--", f"INPUT={scene}", "RATIO=1",
                       "QUALITY=true", f"OUTPUT={tmp_path / 'c.tif'}")
    assert run.returncode == 0, run.log
    results = run.output["results"]
    assert results["BITS_PER_PIXEL_PER_CHANNEL"] == pytest.approx(26 * 32 / 202, abs=1e-3)  # CR 8, paper convention
    assert results["PSNR_DB"] > 30
    assert results["OUT_OF_DISTRIBUTION"] < 0.05  # a new scene of the simulator the model was trained on
    run = qgis_process("run", "rsai:decompress_hyperspectral", "--", f"INPUT={tmp_path / 'c.tif'}",
                       f"OUTPUT={tmp_path / 'r.tif'}")
    assert run.returncode == 0, run.log
    with rasterio.open(tmp_path / "r.tif") as out, rasterio.open(scene) as src, \
            rasterio.open(tmp_path / "c.tif") as compressed:
        assert (out.count, out.dtypes[0]) == (202, src.dtypes[0])
        assert out.crs == src.crs and out.transform == src.transform
        assert json.loads(compressed.tags()["original_band_names"]) == list(src.descriptions)

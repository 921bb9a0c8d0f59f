"""Engine scene-labels task: patch grid, multi-file S1 + S2 input, GeoPackage and probability raster."""
from __future__ import annotations

import sqlite3

import numpy as np
import onnx
import pytest
import rasterio
from osgeo import ogr

from engine.contract import Band, ModelContract, Outputs
from engine.errors import EngineError
from engine.tasks import run_task
from engine.tasks.scene_labels import probability_field
from raster_fixtures import ORIGIN, write_raster
from training.pointwise_onnx import patch_classifier_model

S2 = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
CLASSES = ("Urban fabric", "Arable land", "Marine waters")
MEAN, STD = 1000.0, 500.0


@pytest.fixture
def model(tmp_path):
    contract = ModelContract(
        task="scene_labels", name="test-scenes", bands=(Band("VV"), Band("VH"), *(Band(b) for b in S2)),
        mean=(MEAN,) * 12, std=(STD,) * 12, outputs=Outputs("classes", CLASSES), tile_size=120,
        overlap=0, gsd_m=10.0, batch_size=2)
    weights = np.zeros((3, 12))
    weights[0, 2], weights[1, 3], weights[2, 0] = 4.0, 4.0, 4.0  # classes <- patch means of B02, B03, VV
    path = tmp_path / "scenes.onnx"
    onnx.save(patch_classifier_model(contract, weights, np.zeros(3)), path)
    return str(path)


def expected_probabilities(band_means):
    return 1 / (1 + np.exp(-4.0 * (np.asarray(band_means) - MEAN) / STD))


def s1_s2_files(tmp_path, height=250, width=370):
    rng = np.random.default_rng(0)
    s2 = rng.integers(500, 1500, size=(10, height, width)).astype("uint16")
    s2[:, :120, :120] = 0  # patch (0, 0) has no data
    s2_path = write_raster(tmp_path / "s2.tif", s2, nodata=0, descriptions=S2)
    vv = rng.integers(500, 1500, size=(1, height // 2, width // 2)).astype("uint16")  # 20 m
    vv_path = write_raster(tmp_path / "S1_VV_20m.tif", vv, pixel=20.0)
    vh_path = write_raster(tmp_path / "S1_VH.tif", rng.integers(500, 1500, size=(1, height, width)).astype("uint16"))
    return s2, vv, [s2_path, vv_path, vh_path]


def test_patch_grid_labels_and_probabilities(tmp_path, model):
    s2, vv, files = s1_s2_files(tmp_path)
    result = run_task("classify_scenes", {"input": files, "output": str(tmp_path / "p.gpkg"), "model": model,
                                          "probabilities": str(tmp_path / "p.tif"), "threshold": 0.5},
                      lambda f, m: None, lambda: False)
    # 250 x 370 px -> 3 x 4 patches; the bottom row and right column stick out: marked nodata
    assert result["patches"] == {"classified": 5, "nodata": 7}
    source = ogr.Open(str(tmp_path / "p.gpkg"))  # kept in a name: GDAL 3.6 crashes if a layer outlives it
    layer = source.GetLayer("scene_labels")
    assert layer.GetFeatureCount() == 12 and layer.GetSpatialRef().GetAuthorityCode(None) == "32636"
    features = {(f.GetField("patch_row"), f.GetField("patch_col")): f for f in layer}
    assert features[(0, 0)].GetField("status") == "nodata" and features[(0, 0)].GetField("top_label") is None
    assert features[(2, 1)].GetField("status") == "nodata"  # only 10 of 120 rows inside the area
    patch = features[(1, 2)]
    assert patch.GetField("status") == "classified"
    minx, maxx, miny, maxy = patch.GetGeometryRef().GetEnvelope()
    assert (minx, maxy) == (ORIGIN[0] + 2 * 1200, ORIGIN[1] - 1200) and (maxx - minx, maxy - miny) == (1200, 1200)
    window = (slice(120, 240), slice(240, 360))
    vv_10m = np.repeat(np.repeat(vv[0], 2, 0), 2, 1)
    expected = expected_probabilities([s2[0][window].mean(), s2[1][window].mean(), vv_10m[window].mean()])
    got = [patch.GetField(probability_field(name)) for name in CLASSES]
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert patch.GetField("top_label") == CLASSES[int(np.argmax(expected))]
    assert patch.GetField("labels") == "; ".join(CLASSES[i] for i in np.argsort(-expected) if expected[i] >= 0.5)
    with rasterio.open(tmp_path / "p.tif") as raster:
        assert raster.shape == (3, 4) and raster.count == 3 and raster.transform.a == 1200.0
        assert raster.transform.c == ORIGIN[0] and raster.transform.f == ORIGIN[1]
        np.testing.assert_allclose(raster.read()[:, 1, 2], expected, atol=1e-4)
        assert raster.read(1)[0, 0] == -1.0
    with sqlite3.connect(tmp_path / "p.gpkg") as db:  # a GeoPackage per the standard's header
        assert db.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47


def test_missing_sentinel1_is_a_clear_error(tmp_path, model):
    _, _, files = s1_s2_files(tmp_path)
    with pytest.raises(EngineError, match="cannot tell which band is VV, VH"):
        run_task("classify_scenes", {"input": files[0], "output": str(tmp_path / "p.gpkg"), "model": model},
                 lambda f, m: None, lambda: False)
    assert not (tmp_path / "p.gpkg").exists()


def test_sentinel1_in_another_crs_is_reprojected(tmp_path, model):
    s2, _, files = s1_s2_files(tmp_path, height=120, width=120)
    with rasterio.open(files[2]) as vh, rasterio.vrt.WarpedVRT(vh, crs="EPSG:4326") as geographic:
        profile = {**geographic.profile, "driver": "GTiff"}
        with rasterio.open(tmp_path / "S1_VH_wgs84.tif", "w", **profile) as out:
            out.write(geographic.read())
    s2_full = s2.copy()
    s2_full[:] = 1000
    write_raster(tmp_path / "s2.tif", s2_full, nodata=0, descriptions=S2)
    result = run_task("classify_scenes", {"input": [files[0], files[1], str(tmp_path / "S1_VH_wgs84.tif")],
                                          "output": str(tmp_path / "p.gpkg"), "model": model, "min_valid": 0.5},
                      lambda f, m: None, lambda: False)
    assert any("reprojected to EPSG:32636" in w for w in result["warnings"])
    assert result["patches"]["classified"] == 1


def test_patches_carry_their_uncertainty_and_their_share_unlike_the_training_inputs(tmp_path, model):
    from dataclasses import replace

    from engine.contract import contract_from_metadata
    from engine.onnx_metadata import write_metadata
    from training.input_statistics import input_statistics

    rng = np.random.default_rng(5)  # training inputs: every band uniform in 500-1500, as s1_s2_files draws
    statistics = input_statistics([rng.integers(500, 1500, size=(12, 4000)).astype(float) for _ in range(8)])
    graph = onnx.load(model)
    contract = contract_from_metadata({p.key: p.value for p in graph.metadata_props}, "scenes")
    known = tmp_path / "known.onnx"
    write_metadata(model, replace(contract, input_statistics=statistics).to_onnx_metadata(), known, lambda _: None)
    _, _, files = s1_s2_files(tmp_path)

    def patches(inputs, name):
        result = run_task("classify_scenes", {"input": inputs, "output": str(tmp_path / name), "model": str(known)},
                          lambda f, m: None, lambda: False)
        with sqlite3.connect(tmp_path / name) as db:
            rows = db.execute(f"SELECT uncertainty, unlike_training, {', '.join(probability_field(c) for c in CLASSES)}"
                              " FROM scene_labels WHERE status = 'classified'").fetchall()
        return result, np.array(rows, float)

    result, rows = patches(files, "same.gpkg")
    p = rows[:, 2:]
    entropy = -(p * np.log2(p) + (1 - p) * np.log2(1 - p)).mean(axis=1)
    assert np.allclose(rows[:, 0], entropy, atol=1e-4) and 0 < rows[:, 0].min()
    assert rows[:, 1].max() < 0.05 and result["out_of_distribution"]["share"] < 0.05
    scaled = []
    for path in files:  # the same scene divided by 10: another product's scaling
        with rasterio.open(path) as source:
            data, profile, descriptions = source.read(), source.profile, source.descriptions
        scaled.append(str(tmp_path / f"tenth_{path.rsplit('/', 1)[-1]}"))  # keeps S1_VV_20m.tif's band name
        with rasterio.open(scaled[-1], "w", **profile) as target:
            target.write((data // 10).astype(data.dtype))
            target.descriptions = descriptions
    result, rows = patches(scaled, "tenth.gpkg")
    assert rows[:, 1].min() > 0.95 and any("unlike the training inputs" in w for w in result["warnings"])

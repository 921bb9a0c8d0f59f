"""Engine crop-mapping task: dated rasters (per-date files or a stack) of two modalities, masked
dates, unequal date counts, and a class map on the first Sentinel-2 date's grid."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import rasterio

from engine.contract import Band, ModelContract, Modality, Outputs
from engine.errors import EngineError
from engine.tasks import run_task
from raster_fixtures import write_raster
from training.pointwise_onnx import time_series_classifier_model

S2_BANDS = ("B04", "B08")
CLASSES = ("wheat", "maize", "fallow")
MEAN, STD = 1000.0, 500.0


def crop_model(path, test_time_augmentations="none") -> str:
    contract = ModelContract(
        task="crop_map", name="test-crops", bands=(), mean=(), std=(),
        outputs=Outputs("classes", CLASSES, colors=("#f0d000", "#20a020", "#a08060")),
        tile_size=16, overlap=4, gsd_m=10.0, batch_size=4,
        modalities=(Modality("s2", tuple(Band(b) for b in S2_BANDS), (MEAN,) * 2, (STD,) * 2, 6),
                    Modality("s1", (Band("VV"), Band("VH")), (-12.0, -19.0), (5.0, 5.0), 10)),
        test_time_augmentations=test_time_augmentations)
    weights = np.array([[1.0, -1.0], [-1.0, 1.0], [0.0, 0.0]])  # red-ish -> wheat, nir-ish -> maize
    onnx.save(time_series_classifier_model(contract, weights, np.zeros(3)), path)
    return str(path)


@pytest.fixture
def model(tmp_path):
    return crop_model(tmp_path / "crops.onnx")


def s2_series(tmp_path, dates=("2023-04-15", "2023-06-01", "2023-07-20"), shape=(40, 50)):
    rng = np.random.default_rng(0)
    series, paths = [], []
    for date in dates:
        data = rng.integers(300, 1700, size=(2, *shape)).astype("uint16")
        series.append(data)
        paths.append(write_raster(tmp_path / f"S2_{date.replace('-', '')}.tif", data, nodata=0,
                                  descriptions=S2_BANDS))
    return np.stack(series), paths


def s1_series(tmp_path, count=5):
    rng = np.random.default_rng(1)
    return [write_raster(tmp_path / f"S1_2023-05-{10 + i:02d}.tif", rng.normal(-12, 3, (2, 20, 25)).astype("float32"),
                         pixel=20.0, descriptions=("VV", "VH")) for i in range(count)]


def assert_classes(output, values, valid):
    """The test model: masked temporal mean of the normalised S2 bands, then W (float32 ties aside)."""
    normalised = np.where(valid[:, None], (values - MEAN) / STD, 0.0)
    mean = normalised.sum(0) / np.maximum(valid.sum(0), 1)
    logits = np.stack([mean[0] - mean[1], mean[1] - mean[0], np.zeros_like(mean[0])])
    decisive = np.abs(mean[0] - mean[1]) > 1e-4
    assert decisive.mean() > 0.99
    np.testing.assert_array_equal(output[decisive], logits.argmax(0)[decisive])


def run(**params):
    return run_task("map_crops", params, lambda f, m: None, lambda: False)


def test_per_date_files_with_a_cloud_masked_per_pixel(tmp_path, model):
    values, s2 = s2_series(tmp_path)
    with rasterio.open(s2[1], "r+") as clouded:  # a cloud (nodata) over part of the second date
        clouded.write(np.zeros((2, 10, 20), "uint16"), window=((5, 15), (5, 25)))
    values[1, :, 5:15, 5:25] = 0
    result = run(s2=s2, s1=s1_series(tmp_path), output=str(tmp_path / "crops.tif"), model=model,
                 probabilities=str(tmp_path / "p.tif"))
    valid = values[:, 0] != 0
    with rasterio.open(tmp_path / "crops.tif") as out, rasterio.open(s2[0]) as first:
        assert out.crs == first.crs and out.transform == first.transform
        assert out.colormap(1)[1][:3] == (0x20, 0xA0, 0x20) and out.tags()["class_0"] == "wheat"
        assert_classes(out.read(1), values.astype(float), valid)
    with rasterio.open(tmp_path / "p.tif") as probabilities:
        assert probabilities.count == 3
    assert result["names"] == list(CLASSES)


def test_a_stack_with_dates_in_band_descriptions_and_more_dates_than_the_model_takes(tmp_path, model):
    dates = [f"2023-{m:02d}-01" for m in range(3, 11)]  # 8 dates; the model takes at most 6
    values, _ = s2_series(tmp_path, dates=dates)
    stack = values.reshape(-1, *values.shape[2:])
    descriptions = [f"{d} {b}" for d in dates for b in S2_BANDS]
    path = write_raster(tmp_path / "s2_stack.tif", stack, nodata=0, descriptions=descriptions)
    result = run(s2=path, s1=s1_series(tmp_path, count=2), output=str(tmp_path / "crops.tif"), model=model)
    assert any("at most 6" in w for w in result["warnings"])
    kept = np.unique(np.round(np.linspace(0, 7, 6)).astype(int))
    with rasterio.open(tmp_path / "crops.tif") as out:
        assert_classes(out.read(1), values[kept].astype(float), np.ones((6, 40, 50), bool))


def test_missing_dates_and_missing_modalities_are_clear_errors(tmp_path, model):
    _, s2 = s2_series(tmp_path)
    undated = write_raster(tmp_path / "scene.tif", np.ones((2, 40, 50), "uint16"), descriptions=S2_BANDS)
    with pytest.raises(EngineError, match="no acquisition date for .*scene.tif"):
        run(s2=[*s2, undated], s1=s1_series(tmp_path), output=str(tmp_path / "o.tif"), model=model)
    with pytest.raises(EngineError, match="needs the s1 time series"):
        run(s2=s2, output=str(tmp_path / "o.tif"), model=model)
    result = run(s2=[*s2, undated], dates_s2=["2023-04-15", "2023-06-01", "2023-07-20", "2023-08-30"],
                 s1=s1_series(tmp_path), output=str(tmp_path / "o.tif"), model=model)
    assert result["tiles"] > 0
    wrong = write_raster(tmp_path / "S2_20230901.tif", np.ones((3, 40, 50), "uint16"))
    with pytest.raises(EngineError, match="the input has 3 band"):
        run(s2=[*s2, wrong], s1=s1_series(tmp_path), output=str(tmp_path / "w.tif"), model=model)
    assert not (tmp_path / "w.tif").exists()


def test_time_series_views_give_the_plain_classes_and_their_uncertainty(tmp_path):
    """Every date, mask and modality of a tile is flipped and rotated alike; the dates are not: the
    per-pixel test model gives each view the same probabilities."""
    values, s2 = s2_series(tmp_path)
    inputs = dict(s2=s2, s1=s1_series(tmp_path))
    run(**inputs, output=str(tmp_path / "plain.tif"), probabilities=str(tmp_path / "p.tif"),
        model=crop_model(tmp_path / "plain.onnx"))
    result = run(**inputs, output=str(tmp_path / "mean.tif"), uncertainty=str(tmp_path / "u.tif"),
                 model=crop_model(tmp_path / "dihedral.onnx", "dihedral"))
    assert result["uncertainty"]["augmentations"] == 8
    with rasterio.open(tmp_path / "plain.tif") as plain, rasterio.open(tmp_path / "mean.tif") as mean, \
            rasterio.open(tmp_path / "u.tif") as uncertainty, rasterio.open(tmp_path / "p.tif") as probabilities:
        np.testing.assert_array_equal(mean.read(1), plain.read(1))
        np.testing.assert_allclose(uncertainty.read(2), probabilities.read().max(axis=0), atol=1e-6)

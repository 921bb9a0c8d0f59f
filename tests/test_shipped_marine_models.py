"""The shipped bathymetry and seabed models through real QGIS on a simulated scene with known truth:
georeferencing, nodata, and accuracy above trivial baselines (mean depth, majority class)."""
import numpy as np
import pytest
import rasterio

from engine.quality import NO_DATA, VALID
from training.simulation.shallow_water import UNDEFINED, simulate_scene, write_scene_geotiffs


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A held-out simulated scene (seed unused in training) with a nodata hole in the image."""
    folder = tmp_path_factory.mktemp("scene")
    simulated = simulate_scene(256, 256, seed=2024)
    paths = {name: str(folder / f"{name}.tif") for name in ("image", "depth", "classes")}
    write_scene_geotiffs(simulated, paths["image"], paths["depth"], paths["classes"])
    with rasterio.open(paths["image"], "r+") as image:  # nodata = 0 in every band
        image.write(np.zeros((3, 20, 30), "uint16"), window=((100, 120), (100, 130)))
    return paths


def assert_on_input_grid_with_nodata_hole(output, image, quality):
    """The output has the input's grid; it is nodata in the image's hole and where the quality
    layer flags a pixel (land, optically deep water, ...), and only there."""
    with rasterio.open(output) as out, rasterio.open(image) as src, rasterio.open(quality) as reasons_file:
        assert out.crs == src.crs and out.transform == src.transform and out.shape == src.shape
        values, reasons = out.read(1), reasons_file.read(1)
        assert (values[100:120, 100:130] == out.nodata).all() and (reasons[100:120, 100:130] == NO_DATA).all()
        assert np.array_equal(values == out.nodata, reasons != VALID)
        return values


def test_shipped_bathymetry_beats_the_mean_depth_baseline(rsai_provider, scene, tmp_path):
    import processing

    result = processing.run("rsai:estimate_bathymetry", {"INPUT": scene["image"], "OUTPUT": str(tmp_path / "d.tif"),
                                                          "QUALITY_LAYER": str(tmp_path / "q.tif")})
    depth = assert_on_input_grid_with_nodata_hole(result["OUTPUT"], scene["image"], result["QUALITY_LAYER"])
    with rasterio.open(scene["depth"]) as truth_file:
        truth = truth_file.read(1)
    known = np.isfinite(truth) & (depth != -9999.0)
    assert known.sum() > 0.8 * (np.isfinite(truth).sum() - 20 * 30), "the quality layer masked surveyed water"
    rmse = np.sqrt(np.mean((depth[known] - truth[known]) ** 2))
    baseline = np.sqrt(np.mean((truth[known] - truth[known].mean()) ** 2))
    assert rmse < 0.5 * baseline, f"RMSE {rmse:.2f} m vs mean-depth baseline {baseline:.2f} m"


@pytest.mark.slow
def test_shipped_seabed_model_through_qgis_process_beats_the_majority_class(qgis_process, scene, tmp_path):
    output = tmp_path / "seabed.tif"
    run = qgis_process("run", "rsai:classify_seabed", "--", f"INPUT={scene['image']}", f"OUTPUT={output}",
                       f"QUALITY_LAYER={tmp_path / 'q.tif'}")
    assert run.returncode == 0, run.log
    assert run.output["results"]["DEVICE_USED"] == "CPUExecutionProvider"
    classes = assert_on_input_grid_with_nodata_hole(output, scene["image"], tmp_path / "q.tif")
    with rasterio.open(scene["classes"]) as truth_file:
        truth = truth_file.read(1)
    known = (truth != UNDEFINED) & (classes != 255)
    accuracy = np.mean(classes[known] == truth[known])
    majority = np.bincount(truth[known]).max() / known.sum()
    assert accuracy > majority + 0.1, f"overall accuracy {accuracy:.3f} vs majority class {majority:.3f}"

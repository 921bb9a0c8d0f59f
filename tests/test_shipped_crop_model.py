"""The shipped TSViT crop model on an independently simulated season (GeoTIFF stacks, other year
and seed), through qgis_process: the class map beats the majority class by a wide margin; its
out-of-distribution flag (per-modality training statistics) passes that season and flags it
rescaled."""
import numpy as np
import pytest
import rasterio

from engine.runtime import Model
from engine.tasks.crop_map import MapCrops
from training.simulation.crop_geotiffs import write_crop_time_series

VOID = 19  # PASTIS code of parcels not to be scored


@pytest.mark.slow
def test_shipped_crop_model_from_dated_stacks_through_qgis_process(qgis_process, tmp_path):
    files = write_crop_time_series(tmp_path, size=64, seed=77, year=2022, stack=True)
    output = tmp_path / "crops.tif"
    run = qgis_process("run", "rsai:map_crops", "--", f"S2={files.s2_stack}", f"S1={files.s1_stack}",
                       f"OUTPUT={output}")
    assert run.returncode == 0, run.log
    codes = np.array(Model(MapCrops().model_path({}), "cpu").contract.provenance["class_codes"])
    with rasterio.open(output) as out, rasterio.open(files.labels) as truth:
        assert out.transform == truth.transform and out.crs == truth.crs
        predicted, labels = out.read(1), truth.read(1)
    scored = (labels != VOID) & (predicted != 255)
    accuracy = np.mean(codes[predicted[scored]] == labels[scored])
    majority = np.bincount(labels[scored]).max() / scored.sum()
    assert accuracy > majority + 0.2, f"overall accuracy {accuracy:.3f} vs majority class {majority:.3f}"


@pytest.mark.slow
def test_shipped_crop_model_flags_a_rescaled_sentinel2_series(tmp_path):
    from engine.tasks import run_task

    files = write_crop_time_series(tmp_path, size=48, seed=77, year=2022, stack=True)
    with rasterio.open(files.s2_stack) as source:
        data, profile, descriptions = source.read(), source.profile, source.descriptions
    tenth = tmp_path / "s2_tenth.tif"  # reflectance / 10 instead of reflectance x 10000
    with rasterio.open(tenth, "w", **profile) as target:
        target.write(np.maximum(data // 10, 1))
        target.descriptions = descriptions

    def run(s2, name):
        result = run_task("map_crops", {"s2": str(s2), "s1": str(files.s1_stack), "output": str(tmp_path / f"{name}.tif"),
                                        "uncertainty": str(tmp_path / f"{name}_u.tif")}, lambda f, m: None, lambda: False)
        with rasterio.open(tmp_path / f"{name}_u.tif") as layer:
            assert layer.descriptions[-1] == "input distance (1 = out-of-distribution threshold)"
            distance = layer.read(layer.count)
        return result, distance

    result, distance = run(files.s2_stack, "season")
    assert result["out_of_distribution"]["share"] < 0.05 and not any("unlike" in w for w in result["warnings"])
    assert np.mean(distance > 1) == pytest.approx(result["out_of_distribution"]["share"], abs=1e-3)
    result, distance = run(tenth, "tenth")
    shares = result["out_of_distribution"]["modalities"]
    assert shares["s2"]["share"] > 0.95 and shares["s1"]["share"] < 0.05 and np.mean(distance > 1) > 0.95
    assert any("unlike the training inputs" in w for w in result["warnings"])

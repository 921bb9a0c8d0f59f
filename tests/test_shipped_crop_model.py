"""The shipped TSViT crop model on an independently simulated season (GeoTIFF stacks, other year
and seed), through qgis_process: the class map beats the majority class by a wide margin."""
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

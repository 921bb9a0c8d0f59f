"""Crop-mapping algorithm in real QGIS (processing.run) and qgis_process: per-date layers and a stack."""
import numpy as np
import rasterio

from test_crop_engine import CLASSES, model, s1_series, s2_series  # noqa: F401  (fixture)


def test_map_crops_with_per_date_layers_loads_a_styled_class_map(rsai_provider, model, tmp_path):  # noqa: F811
    import processing
    from qgis.core import QgsProject

    _, s2 = s2_series(tmp_path)
    output = tmp_path / "crops.tif"
    result = processing.runAndLoadResults("rsai:map_crops", {
        "S2": s2, "S1": s1_series(tmp_path), "MODEL": model, "DEVICE": 1, "OUTPUT": str(output)})
    layers = {layer.source(): layer for layer in QgsProject.instance().mapLayers().values()}
    try:
        assert result["DEVICE_USED"] == "CPUExecutionProvider" and result["TILES"] > 0
        renderer = layers[str(output)].renderer()
        assert renderer.type() == "paletted" and [c.label for c in renderer.classes()] == list(CLASSES)
        with rasterio.open(output) as out, rasterio.open(s2[0]) as first:
            assert out.transform == first.transform and out.crs == first.crs
    finally:
        QgsProject.instance().removeAllMapLayers()


def test_qgis_process_maps_crops_from_a_dated_stack_with_dates_given(qgis_process, model, tmp_path):  # noqa: F811
    values, _ = s2_series(tmp_path)
    stack = tmp_path / "undated_stack.tif"
    with rasterio.open(tmp_path / "S2_20230415.tif") as first:
        profile = {**first.profile, "count": 6}
    with rasterio.open(stack, "w", **profile) as dst:
        dst.write(values.reshape(6, *values.shape[2:]))
        for index, description in enumerate(["2023-04-15 B04", "2023-04-15 B08", "2023-06-01 B04",
                                             "2023-06-01 B08", "2023-07-20 B04", "2023-07-20 B08"], start=1):
            dst.set_band_description(index, description)
    s1 = s1_series(tmp_path, count=3)
    run = qgis_process("run", "rsai:map_crops", "--", f"S2={stack}", *(f"S1={p}" for p in s1),
                       "DATES_S1=2023-05-01,2023-06-10,2023-08-01", f"MODEL={model}",
                       f"OUTPUT={tmp_path / 'crops.tif'}")
    assert run.returncode == 0, run.log
    with rasterio.open(tmp_path / "crops.tif") as out:
        classes = out.read(1)
    assert set(np.unique(classes)) <= {0, 1, 2}


def test_qgis_process_maps_crops_from_per_date_layers(qgis_process, model, tmp_path):  # noqa: F811
    _, s2 = s2_series(tmp_path)
    s1 = s1_series(tmp_path, count=4)
    output = tmp_path / "crops.tif"
    run = qgis_process("run", "rsai:map_crops", "--", *(f"S2={p}" for p in s2), *(f"S1={p}" for p in s1),
                       f"MODEL={model}", f"OUTPUT={output}")
    assert run.returncode == 0, run.log
    assert run.output["results"]["DEVICE_USED"] == "CPUExecutionProvider"
    with rasterio.open(output) as out, rasterio.open(s2[0]) as first:
        assert out.transform == first.transform and out.crs == first.crs
        assert set(np.unique(out.read(1))) <= {0, 1, 2}

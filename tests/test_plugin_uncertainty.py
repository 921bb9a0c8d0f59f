"""The uncertainty layer (engine/uncertainty.py) loaded by Processing in real QGIS: styled with a
legend that says what its values mean, for class and regression models."""
from pathlib import Path

import numpy as np
import rasterio

from test_plugin import scene_tif, seabed_model  # noqa: F401  (fixtures)
from training.simulation.shallow_water import simulate_scene, write_scene_geotiffs


def loaded_layers():
    from qgis.core import QgsProject

    return {Path(layer.source()): layer for layer in QgsProject.instance().mapLayers().values()}


def legend(layer) -> list[tuple[float, str]]:
    renderer = layer.renderer()
    assert renderer.type() == "singlebandpseudocolor" and renderer.band() == 1
    return [(item.value, item.label) for item in renderer.shader().rasterShaderFunction().colorRampItemList()]


def test_class_uncertainty_loads_as_an_entropy_ramp_with_its_legend(rsai_provider, scene_tif, seabed_model,  # noqa: F811
                                                                      tmp_path):
    import processing
    from qgis.core import QgsProject

    uncertainty = tmp_path / "uncertainty.tif"
    result = processing.runAndLoadResults("rsai:classify_seabed", {
        "INPUT": scene_tif, "MODEL": seabed_model, "OUTPUT": str(tmp_path / "seabed.tif"),
        "UNCERTAINTY": str(uncertainty)})
    try:
        assert result["UNCERTAINTY"] == str(uncertainty)
        items = legend(loaded_layers()[uncertainty])
        assert (items[0][0], items[-1][0]) == (0.0, 1.0)  # the entropy's whole range, whatever the scene
        assert items[0][1] == "0.00 entropy (one class certain)" and items[-1][1] == "1.00 entropy (every class alike)"
        with rasterio.open(uncertainty) as layer:
            assert layer.descriptions[0] == "entropy (0-1)" and layer.count == 2
    finally:
        QgsProject.instance().removeAllMapLayers()


def test_shipped_bathymetry_spread_loads_as_a_ramp_in_metres(rsai_provider, tmp_path):
    """The shipped bathymetry model allows its 8 dihedral views: the spread's legend is in metres
    over the layer's range, and the last band is the input's distance to the training data."""
    import processing
    from qgis.core import QgsProject

    scene = simulate_scene(128, 128, seed=2025)
    image = tmp_path / "image.tif"
    write_scene_geotiffs(scene, image, tmp_path / "depth_truth.tif", tmp_path / "classes_truth.tif")
    uncertainty = tmp_path / "spread.tif"
    result = processing.runAndLoadResults("rsai:estimate_bathymetry", {
        "INPUT": str(image), "OUTPUT": str(tmp_path / "depth.tif"), "UNCERTAINTY": str(uncertainty)})
    try:
        assert result["AUGMENTATIONS"] == 8 and 0 <= result["OUT_OF_DISTRIBUTION"] < 0.05
        items = legend(loaded_layers()[uncertainty])
        with rasterio.open(uncertainty) as layer:
            spread = layer.read(1, masked=True)
            assert layer.descriptions[-1] == "input distance (1 = out-of-distribution threshold)"
        assert items[0][0] == np.ma.min(spread) and items[-1][0] == np.ma.max(spread) > 0
        assert items[0][1].endswith(" m (views agree)") and items[-1][1].endswith(" m (views disagree most)")
    finally:
        QgsProject.instance().removeAllMapLayers()

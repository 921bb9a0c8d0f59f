"""Scene-labels algorithm in real QGIS: multi-file S1 + S2 layers, styled GeoPackage output."""
from pathlib import Path

import pytest

from test_scene_labels_engine import CLASSES, model, s1_s2_files  # noqa: F401  (fixture)


def test_classify_scenes_loads_a_styled_patch_layer(rsai_provider, model, tmp_path):  # noqa: F811
    import processing
    from qgis.core import QgsProject

    _, _, (s2, vv, vh) = s1_s2_files(tmp_path)
    output = tmp_path / "scenes.gpkg"
    result = processing.runAndLoadResults("rsai:classify_scenes", {
        "S2": [s2], "S1": [vv, vh], "MODEL": model, "DEVICE": 1, "OUTPUT": str(output),
        "PROBABILITIES": str(tmp_path / "p.tif")})
    loaded = {Path(layer.source().split("|")[0]): layer for layer in QgsProject.instance().mapLayers().values()}
    try:
        assert result["PATCHES"] == 5 and result["DEVICE_USED"] == "CPUExecutionProvider"
        layer = loaded[output]
        assert layer.featureCount() == 12
        renderer = layer.renderer()
        assert renderer.type() == "categorizedSymbol" and renderer.classAttribute() == "top_label"
        assert [c.label() for c in renderer.categories()][:3] == list(CLASSES)
        assert layer.labelsEnabled() and layer.labeling().settings().fieldName == "labels"
        assert Path(result["PROBABILITIES"]).exists()
    finally:
        QgsProject.instance().removeAllMapLayers()


def test_sentinel2_is_required(rsai_provider, model, tmp_path):  # noqa: F811
    import processing
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException):
        processing.run("rsai:classify_scenes", {"S2": [], "MODEL": model, "OUTPUT": str(tmp_path / "s.gpkg")})
    assert not (tmp_path / "s.gpkg").exists()

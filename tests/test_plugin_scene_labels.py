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


def patch_files(root: Path, patch_id: str, s1_name: str) -> tuple[list[str], list[str]]:
    """The 12 Sentinel-2 band files and the 2 Sentinel-1 files of one patch in BigEarthNet v2's tree."""
    s2 = sorted(str(p) for p in root.glob(f"BigEarthNet-S2/*/{patch_id}/*.tif"))
    s1 = sorted(str(p) for p in root.glob(f"BigEarthNet-S1/*/{s1_name}/*.tif"))
    return s2, s1


@pytest.mark.slow
def test_shipped_model_labels_fixture_patches_from_their_band_files(tmp_path, qgis_process):
    from osgeo import ogr

    from engine.tasks import run_task
    from training.simulation.bigearthnet_fixture import write_bigearthnet_fixture

    patches = write_bigearthnet_fixture(tmp_path / "ben", 6, seed=123)
    hits = 0
    for index, patch in enumerate(patches.itertuples()):
        s2, s1 = patch_files(tmp_path / "ben", patch.patch_id, patch.s1_name)
        assert len(s2) == 12 and len(s1) == 2
        output = tmp_path / f"patch{index}.gpkg"
        result = run_task("classify_scenes", {"input": s2 + s1, "output": str(output), "device": "cpu"},
                          lambda f, m: None, lambda: False)
        assert result["patches"] == {"classified": 1, "nodata": 0}
        # new patches from the generator the model was trained on: like its recorded training inputs
        assert result["out_of_distribution"]["share"] < 0.05
        source = ogr.Open(str(output))
        feature = source.GetLayer(0).GetNextFeature()
        hits += feature.GetField("top_label") in list(patch.labels)
    assert hits >= 4, f"top label among the true labels for only {hits} of 6 patches"  # chance: ~1 in 6

    s2, s1 = patch_files(tmp_path / "ben", patches.patch_id[0], patches.s1_name[0])
    output = tmp_path / "qgis_process.gpkg"
    run = qgis_process("run", "rsai:classify_scenes", "--", *(f"S2={p}" for p in s2), *(f"S1={p}" for p in s1),
                       f"OUTPUT={output}")
    assert run.returncode == 0, run.log
    assert run.output["results"]["PATCHES"] == 1
    source = ogr.Open(str(output))
    layer = source.GetLayer(0)
    minx, maxx, miny, maxy = layer.GetExtent()
    assert (maxx - minx, maxy - miny) == (1200.0, 1200.0)
    feature = layer.GetNextFeature()
    probabilities = [feature.GetField(i) for i in range(feature.GetFieldCount())
                     if feature.GetFieldDefnRef(i).GetName().startswith("p_")]
    assert len(probabilities) == 19 and all(0.0 <= p <= 1.0 for p in probabilities)

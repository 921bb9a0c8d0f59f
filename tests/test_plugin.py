"""The QGIS plugin in a real, headless QGIS: provider and help, engine settings, rendering of
layers that are not files, output styles, packaging, and end-to-end runs through the engine worker
with processing.run and qgis_process (small ONNX models written by the tests, and the shipped ones)."""
import os
import subprocess
import sys
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from engine.contract import Outputs
from raster_fixtures import contract, scene, write_model, write_raster

REPO_ROOT = Path(__file__).resolve().parent.parent
BAND_NAMES = ("B02", "B03", "B04")
ALGORITHM_IDS = ("rsai:classify_seabed", "rsai:estimate_bathymetry")
HYPERSPECTRAL_IDS = ("rsai:compress_hyperspectral", "rsai:decompress_hyperspectral")
SCENE_IDS = ("rsai:classify_scenes", "rsai:map_crops")
SEARCH_IDS = ("rsai:build_search_index", "rsai:search_text", "rsai:search_similar", "rsai:search_changes")
GENERIC_IDS = ("rsai:run_onnx_model",)
MODEL_STORE_IDS = ("rsai:download_model", "rsai:import_model")
BATCH_IDS = ("rsai:batch_over_files",)
ENGINE_IDS = ("rsai:setup_engine",)
SEABED_CLASSES = ("sand", "seagrass", "rock")
SEABED_COLORS = ("#e8d8a0", "#2e8b57", "#555555")


def grid_of(path) -> tuple[str, tuple, tuple]:
    """CRS (WKT), geotransform and size of a raster file."""
    dataset = gdal.Open(str(path))
    return dataset.GetProjection(), dataset.GetGeoTransform(), (dataset.RasterXSize, dataset.RasterYSize)


def read(path, band: int | None = None) -> np.ndarray:
    """Pixels of a raster file (one band, or all). The dataset is kept in a name while reading:
    GDAL 3.6's bindings crash when a band outlives its dataset."""
    dataset = gdal.Open(str(path))
    return (dataset.GetRasterBand(band) if band else dataset).ReadAsArray()


def same_crs(path_a, path_b) -> bool:
    from osgeo import osr

    crs_a, crs_b = (osr.SpatialReference(wkt=grid_of(p)[0]) for p in (path_a, path_b))
    return bool(crs_a.IsSame(crs_b))


@pytest.fixture
def scene_tif(tmp_path) -> str:
    """3-band uint16 GeoTIFF (B02, B03, B04) in UTM 36N with 10 m pixels."""
    return write_raster(tmp_path / "scene.tif", scene(), descriptions=BAND_NAMES)


@pytest.fixture
def depth_model(tmp_path) -> str:
    return write_model(tmp_path / "depth.onnx", contract(), [[1.0, 0.0, 0.0]], [0.0])


@pytest.fixture
def seabed_model(tmp_path) -> str:
    classes = Outputs(kind="classes", names=SEABED_CLASSES, colors=SEABED_COLORS)
    seabed = replace(contract(kind="classes", channels=len(SEABED_CLASSES)), outputs=classes)
    return write_model(tmp_path / "seabed.onnx", seabed, np.eye(3), np.zeros(3))


# --- provider, parameters, settings --------------------------------------------------------------

def test_provider_registers_the_algorithms_with_help_for_every_parameter(rsai_provider):
    algorithms = {algorithm.id(): algorithm for algorithm in rsai_provider.algorithms()}
    assert sorted(algorithms) == sorted(ALGORITHM_IDS + HYPERSPECTRAL_IDS + SCENE_IDS + SEARCH_IDS + GENERIC_IDS
                                   + MODEL_STORE_IDS + ENGINE_IDS + BATCH_IDS)
    expected = {
        "rsai:estimate_bathymetry": {"INPUT", "MODEL", "BANDS", "EXTENT", "RESAMPLE", "DEVICE", "STRICT", "OUTPUT", "KEEP_MASKED", "QUALITY_LAYER",
                                     "UNCERTAINTY"},
        "rsai:classify_seabed": {"INPUT", "MODEL", "BANDS", "EXTENT", "RESAMPLE", "DEVICE", "STRICT", "OUTPUT", "KEEP_MASKED", "QUALITY_LAYER",
                                 "PROBABILITIES", "UNCERTAINTY"},
        "rsai:compress_hyperspectral": {"INPUT", "MODEL", "BANDS", "EXTENT", "DEVICE", "STRICT", "OUTPUT", "RATIO",
                                        "QUALITY"},
        "rsai:decompress_hyperspectral": {"INPUT", "MODEL", "DEVICE", "OUTPUT"},
        "rsai:classify_scenes": {"S2", "S1", "MODEL", "BANDS", "EXTENT", "THRESHOLD", "MIN_VALID", "DEVICE", "STRICT",
                                 "OUTPUT", "PROBABILITIES"},
        "rsai:map_crops": {"S2", "S1", "DATES_S2", "DATES_S1", "MODEL", "EXTENT", "RESAMPLE", "DEVICE", "STRICT", "OUTPUT",
                           "PROBABILITIES", "UNCERTAINTY"},
        "rsai:run_onnx_model": {"INPUT", "MODEL", "BANDS", "EXTENT", "RESAMPLE", "DEVICE", "STRICT", "OUTPUT", "OUTPUT_KIND",
                                "CLASSES", "ACTIVATION", "SCALE", "MEAN", "STD", "TILE_SIZE", "OVERLAP",
                                "PROBABILITIES", "UNCERTAINTY"},
        "rsai:download_model": {"MODEL", "FOLDER"},
        "rsai:import_model": {"SOURCE", "CHECKPOINT", "SHA256", "AREA", "MODALITY", "NORM_PARAM", "TILE_SIZE",
                              "OPTIONS", "OUTPUT"},
        "rsai:build_search_index": {"LAYERS", "INDEX", "MODEL", "BANDS", "EXTENT", "TILE_SIZE", "OVERLAP", "DEVICE", "STRICT"},
        "rsai:search_text": {"QUERY", "INDEX", "TOP_K", "OUTPUT", "HEATMAP", "DEVICE"},
        "rsai:search_similar": {"INDEX", "LAYER_NAME", "TILE", "POINT", "TOP_K", "OUTPUT", "HEATMAP"},
        "rsai:search_changes": {"BEFORE", "AFTER", "QUERY", "INDEX", "FUSION", "MODEL", "TOP_K", "OUTPUT", "HEATMAP",
                                "DEVICE", "STRICT"},
        "rsai:setup_engine": {"PYTHON", "FLAVOUR", "WHEELHOUSE"},
        "rsai:batch_over_files": {"FOLDER", "PATTERN", "LIST", "TASK", "MODEL", "ASSET_BANDS", "PARAMETERS", "DEVICE",
                                  "OUTPUT_DIR", "RAY_ADDRESS", "WORKERS", "GPUS_PER_TASK", "MAX_IN_FLIGHT", "SKIP_FAILED"},
    }
    for algorithm_id, algorithm in algorithms.items():
        assert algorithm.shortHelpString()
        assert {parameter.name() for parameter in algorithm.parameterDefinitions()} == expected[algorithm_id]
        for parameter in algorithm.parameterDefinitions():
            assert parameter.help(), f"{algorithm.id()} {parameter.name()} has no help"


def test_engine_interpreter_defaults_to_the_repository_environment(rsai_provider, monkeypatch):
    from processing.core.ProcessingConfig import ProcessingConfig

    from rs_qgis_plugin.settings import ENGINE_PYTHON_SETTING, engine_python

    monkeypatch.delenv("RSAI_PYTHON", raising=False)
    assert ProcessingConfig.getSetting(ENGINE_PYTHON_SETTING) == str(REPO_ROOT / ".venv" / "bin" / "python")
    assert engine_python() == str(REPO_ROOT / ".venv" / "bin" / "python")
    monkeypatch.setenv("RSAI_PYTHON", "/opt/other/python")
    assert engine_python() == "/opt/other/python"


def test_a_missing_interpreter_is_a_clear_error(rsai_provider, scene_tif, tmp_path, monkeypatch):
    import processing
    from qgis.core import QgsProcessingException

    monkeypatch.setenv("RSAI_PYTHON", str(tmp_path / "no-such-python"))
    with pytest.raises(QgsProcessingException, match="Cannot start the engine .*RSAI_PYTHON"):
        processing.run("rsai:estimate_bathymetry", {"INPUT": scene_tif, "OUTPUT": str(tmp_path / "d.tif")})


def test_an_interpreter_without_the_engines_packages_is_a_clear_error(
        rsai_provider, scene_tif, tmp_path, monkeypatch):
    import processing
    from qgis.core import QgsProcessingException

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    monkeypatch.setenv("RSAI_PYTHON", str(tmp_path / "bare" / "bin" / "python"))
    with pytest.raises(QgsProcessingException, match="(?s)stopped unexpectedly.*No module named"):
        processing.run("rsai:estimate_bathymetry", {"INPUT": scene_tif, "OUTPUT": str(tmp_path / "d.tif")})


def test_extent_is_sent_in_the_layers_crs(rsai_provider, scene_tif, tmp_path):
    from qgis.core import (
        QgsApplication,
        QgsCoordinateReferenceSystem,
        QgsCoordinateTransform,
        QgsProcessingContext,
        QgsProject,
        QgsRasterLayer,
        QgsRectangle,
    )

    layer = QgsRasterLayer(scene_tif, "scene")
    wanted = QgsRectangle(580200, 3869200, 581000, 3869800)
    to_wgs84 = QgsCoordinateTransform(
        layer.crs(), QgsCoordinateReferenceSystem("EPSG:4326"), QgsProject.instance()
    )
    geographic = to_wgs84.transformBoundingBox(wanted)
    algorithm = QgsApplication.processingRegistry().createAlgorithmById("rsai:estimate_bathymetry")
    parameters = {
        "INPUT": scene_tif,
        "EXTENT": f"{geographic.xMinimum()},{geographic.xMaximum()},"
                  f"{geographic.yMinimum()},{geographic.yMaximum()} [EPSG:4326]",
        "BANDS": " B02=1,B03=2,B04=3 ",
        "DEVICE": 1,
        "OUTPUT": str(tmp_path / "depth.tif"),
    }
    request = algorithm.engine_request(parameters, QgsProcessingContext(), layer)
    xmin, ymin, xmax, ymax = request["extent"]
    assert xmin <= wanted.xMinimum() and ymin <= wanted.yMinimum()
    assert xmax >= wanted.xMaximum() and ymax >= wanted.yMaximum()
    assert xmax - xmin < wanted.width() + 20 and ymax - ymin < wanted.height() + 20
    assert request["input"] == scene_tif and request["bands"] == "B02=1,B03=2,B04=3"
    assert request["device"] == "cpu" and request["resample"] is False and "model" not in request


# --- layers that are not files -----------------------------------------------------------------

def test_a_gdal_file_is_read_directly_and_other_layers_are_not(qgis_app, scene_tif, tmp_path):
    from qgis.core import QgsRasterLayer

    from rs_qgis_plugin.raster_input import layer_file

    assert layer_file(QgsRasterLayer(scene_tif, "file")) == scene_tif
    gdal.FileFromMemBuffer("/vsimem/scene.tif", Path(scene_tif).read_bytes())
    try:
        in_memory = QgsRasterLayer("/vsimem/scene.tif", "in memory")
        assert in_memory.isValid() and in_memory.providerType() == "gdal"
        assert layer_file(in_memory) is None
    finally:
        gdal.Unlink("/vsimem/scene.tif")


def test_a_virtual_raster_layer_is_rendered_to_a_geotiff(qgis_app, scene_tif, tmp_path):
    from qgis.core import QgsCoordinateTransformContext, QgsRasterDataProvider, QgsRasterLayer

    from rs_qgis_plugin.raster_input import layer_file, render_pixel_size, render_to_geotiff

    source = QgsRasterLayer(scene_tif, "scene")
    definition = QgsRasterDataProvider.VirtualRasterParameters()
    definition.crs, definition.extent = source.crs(), source.extent()
    definition.width, definition.height = source.width(), source.height()
    definition.formula = '"scene@2" * 2'
    band_source = QgsRasterDataProvider.VirtualRasterInputLayers()
    band_source.name, band_source.uri, band_source.provider = "scene", scene_tif, "gdal"
    definition.rInputLayers = [band_source]
    uri = QgsRasterDataProvider.encodeVirtualRasterProviderUri(definition)
    virtual = QgsRasterLayer(uri, "doubled green", "virtualraster")
    assert virtual.isValid() and layer_file(virtual) is None

    pixel_size = render_pixel_size(virtual, 10.0, source.extent(), QgsCoordinateTransformContext())
    assert pixel_size == pytest.approx((10.0, 10.0))
    rendered = render_to_geotiff(virtual, source.extent(), pixel_size, str(tmp_path / "rendered.tif"),
                                 QgsCoordinateTransformContext())

    assert same_crs(rendered, scene_tif) and grid_of(rendered)[1:] == grid_of(scene_tif)[1:]
    assert np.array_equal(read(rendered, 1), 2.0 * read(scene_tif, 2))


def test_an_xyz_tile_layer_is_rendered_to_an_rgba_geotiff(qgis_app, tmp_path):
    from qgis.core import QgsCoordinateTransformContext, QgsRasterLayer, QgsRectangle
    from qgis.PyQt.QtGui import QColor, QImage

    from rs_qgis_plugin.raster_input import layer_file, render_pixel_size, render_to_geotiff

    for zoom in range(3):  # a local tile set: tile column x is painted red = 50 * x
        for x in range(2**zoom):
            for y in range(2**zoom):
                tile = QImage(256, 256, QImage.Format_ARGB32)
                tile.fill(QColor(50 * x, 100, 200))
                (tmp_path / "tiles" / str(zoom) / str(x)).mkdir(parents=True, exist_ok=True)
                assert tile.save(str(tmp_path / "tiles" / str(zoom) / str(x) / f"{y}.png"))
    uri = f"type=xyz&url=file://{tmp_path}/tiles/{{z}}/{{x}}/{{y}}.png&zmin=0&zmax=2"
    tiles = QgsRasterLayer(uri, "tiles", "wms")
    assert tiles.isValid() and tiles.crs().authid() == "EPSG:3857" and layer_file(tiles) is None

    extent = QgsRectangle(-1_000_000, -1_000_000, 1_000_000, 1_000_000)
    pixel_size = render_pixel_size(tiles, 10_000.0, extent, QgsCoordinateTransformContext())
    rendered = render_to_geotiff(tiles, extent, pixel_size, str(tmp_path / "rendered.tif"),
                                 QgsCoordinateTransformContext())

    _, transform, size = grid_of(rendered)
    assert size == (200, 200) and transform == (-1_000_000, 10_000, 0, 1_000_000, 0, -10_000)
    red, green, blue, alpha = read(rendered)
    assert (green == 100).all() and (blue == 200).all() and (alpha == 255).all()
    assert red[:, :100].max() < red[:, 100:].min()  # the tile columns west and east of 0


def test_rendering_a_whole_web_sized_extent_is_refused(qgis_app, scene_tif, tmp_path):
    from qgis.core import QgsCoordinateTransformContext, QgsProcessingException, QgsRasterLayer, QgsRectangle

    from rs_qgis_plugin.raster_input import render_to_geotiff

    world = QgsRectangle(-20_037_508, -20_037_508, 20_037_508, 20_037_508)
    with pytest.raises(QgsProcessingException, match="choose a smaller extent"):
        render_to_geotiff(QgsRasterLayer(scene_tif, "scene"), world, (10.0, 10.0),
                          str(tmp_path / "world.tif"), QgsCoordinateTransformContext())
    assert not (tmp_path / "world.tif").exists()


def test_geographic_layers_are_rendered_at_the_ground_distance(qgis_app, tmp_path):
    from qgis.core import QgsCoordinateTransformContext, QgsRasterLayer

    from rs_qgis_plugin.raster_input import render_pixel_size

    path = write_raster(tmp_path / "wgs84.tif", scene(20, 20), crs="EPSG:4326", pixel=0.0001,
                        origin=(33.0, 60.0))
    layer = QgsRasterLayer(path, "wgs84")
    step_x, step_y = render_pixel_size(layer, 10.0, layer.extent(), QgsCoordinateTransformContext())
    assert step_x == pytest.approx(10.0 / 55_800, rel=0.01)  # a degree of longitude at 60° N
    assert step_y == pytest.approx(10.0 / 111_400, rel=0.01)


# --- output styles -----------------------------------------------------------------------------

def test_regression_output_gets_a_colour_ramp_in_metres(qgis_app, tmp_path):
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsRasterLayer

    from rs_qgis_plugin.output_styles import style_for

    depth = np.linspace(0.5, 12.0, 40 * 30, dtype=np.float32).reshape(1, 30, 40)
    layer = QgsRasterLayer(write_raster(tmp_path / "depth.tif", depth), "depth")
    style = style_for({"kind": "regression", "names": ["depth"], "colors": [], "units": "m"})
    style.postProcessLayer(layer, QgsProcessingContext(), QgsProcessingFeedback())
    renderer = layer.renderer()
    assert renderer.type() == "singlebandpseudocolor"
    items = renderer.shader().rasterShaderFunction().colorRampItemList()
    assert items[0].value == pytest.approx(0.5) and items[-1].value == pytest.approx(12.0)
    assert all(item.label.endswith(" m") for item in items)


def test_class_output_gets_the_models_names_and_colours(qgis_app, tmp_path):
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsRasterLayer

    from rs_qgis_plugin.output_styles import style_for

    classes = np.arange(3, dtype=np.uint8).repeat(100).reshape(1, 10, 30)
    layer = QgsRasterLayer(write_raster(tmp_path / "classes.tif", classes), "classes")
    result = {"kind": "classes", "names": list(SEABED_CLASSES), "colors": list(SEABED_COLORS)}
    style_for(result).postProcessLayer(layer, QgsProcessingContext(), QgsProcessingFeedback())
    renderer = layer.renderer()
    assert renderer.type() == "paletted"
    assert [(c.value, c.label, c.color.name()) for c in renderer.classes()] == [
        (value, name, color) for value, (name, color) in enumerate(zip(SEABED_CLASSES, SEABED_COLORS))
    ]


# --- packaging ---------------------------------------------------------------------------------

def package(dist: Path) -> Path:
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "package_plugin.py"), "--dist", str(dist)],
        capture_output=True, text=True, check=True,
    )
    return Path(completed.stdout.strip())


def test_package_holds_the_plugin_with_real_metadata(tmp_path):
    archive = package(tmp_path)
    assert archive.name == "rs_qgis_plugin-0.1.0.zip"
    with zipfile.ZipFile(archive) as bundle:
        names = bundle.namelist()
        metadata = bundle.read("rs_qgis_plugin/metadata.txt").decode()
        readme = bundle.read("rs_qgis_plugin/README.txt").decode()
        link_info = bundle.getinfo("rs_qgis_plugin/metadata.txt")
    assert "hasProcessingProvider=yes" in metadata and "version=0.1.0" in metadata
    assert (link_info.external_attr >> 16) & 0o170000 != 0o120000  # a file, not a symlink
    assert "Processing" in readme and "RSAI_PYTHON" in readme and "Engine set-up" in readme
    engine_wheel = next(name for name in names if name.startswith("rs_qgis_plugin/engine_wheel/"))
    with zipfile.ZipFile(archive) as bundle, zipfile.ZipFile(bundle.open(engine_wheel)) as wheel:
        carried = set(wheel.namelist())
    assert {"engine/worker.py", "engine/published_models.json", "models_onnx/bathymetry_s2_sim.onnx",
            "models_onnx/bathymetry_s2_sim.md"} <= carried  # what the engine needs that PyPI does not have
    assert all(name.startswith("rs_qgis_plugin/") for name in names)
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)
    for module in ("__init__.py", "plugin.py", "provider.py", "worker_client.py",
                   "algorithms/estimate_bathymetry.py", "algorithms/classify_seabed.py"):
        assert f"rs_qgis_plugin/{module}" in names


@pytest.mark.slow
def test_packaged_plugin_loads_in_qgis_process(tmp_path, qgis_process):
    with zipfile.ZipFile(package(tmp_path / "dist")) as bundle:
        bundle.extractall(tmp_path / "plugins")
    run = qgis_process("list", plugin_folder=tmp_path / "plugins")
    assert run.returncode == 0, run.log
    algorithms = run.output["providers"]["rsai"]["algorithms"]
    assert set(algorithms) == set(ALGORITHM_IDS + HYPERSPECTRAL_IDS + SCENE_IDS + SEARCH_IDS + GENERIC_IDS
                                   + MODEL_STORE_IDS + ENGINE_IDS + BATCH_IDS)


def test_plugin_never_imports_the_engines_libraries():
    code = (
        "import sys; sys.path.append('/usr/share/qgis/python/plugins');"
        "from qgis.core import QgsApplication; app = QgsApplication([], False); app.initQgis();"
        "from processing.core.Processing import Processing; Processing.initialize();"
        "from rs_qgis_plugin.provider import RemoteSensingAIProvider;"
        "QgsApplication.processingRegistry().addProvider(RemoteSensingAIProvider());"
        "print(sorted(m for m in ('torch', 'onnxruntime', 'rasterio', 'onnx') if m in sys.modules))"
    )
    completed = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                               text=True, timeout=120, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert completed.stdout.strip().splitlines()[-1] == "[]", completed.stderr


# --- end to end through the engine worker --------------------------------------------------------

def normalised_blue(path) -> np.ndarray:
    """What the test depth model outputs: B02 normalised with the test contract's mean and std."""
    return (read(path, 1) - 500.0) / 100.0


def test_depth_output_has_the_inputs_grid(rsai_provider, scene_tif, depth_model, tmp_path):
    import processing

    output = str(tmp_path / "depth.tif")
    result = processing.run(
        "rsai:estimate_bathymetry",
        {"INPUT": scene_tif, "MODEL": depth_model, "DEVICE": 1, "OUTPUT": output},
    )
    assert result["OUTPUT"] == output and result["DEVICE_USED"] == "CPUExecutionProvider"
    assert same_crs(output, scene_tif) and grid_of(output)[1:] == grid_of(scene_tif)[1:]
    assert np.allclose(read(output), normalised_blue(scene_tif), atol=1e-4)


def test_depth_layer_loads_with_a_colour_ramp_in_metres(rsai_provider, scene_tif, depth_model, tmp_path):
    import processing
    from qgis.core import QgsProject

    output = tmp_path / "depth.tif"
    processing.runAndLoadResults("rsai:estimate_bathymetry",
                                 {"INPUT": scene_tif, "MODEL": depth_model, "OUTPUT": str(output)})
    loaded = {Path(layer.source()): layer for layer in QgsProject.instance().mapLayers().values()}
    try:
        renderer = loaded[output].renderer()
        assert renderer.type() == "singlebandpseudocolor"
        labels = [item.label for item in renderer.shader().rasterShaderFunction().colorRampItemList()]
        assert labels and all(label.endswith(" m") for label in labels)
    finally:
        QgsProject.instance().removeAllMapLayers()


def test_seabed_layers_load_styled_with_the_models_classes(rsai_provider, scene_tif, seabed_model, tmp_path):
    import processing
    from qgis.core import QgsProject

    output, probabilities = tmp_path / "seabed.tif", tmp_path / "probabilities.tif"
    processing.runAndLoadResults("rsai:classify_seabed", {
        "INPUT": scene_tif, "MODEL": seabed_model, "OUTPUT": str(output),
        "PROBABILITIES": str(probabilities),
    })
    loaded = {Path(layer.source()): layer for layer in QgsProject.instance().mapLayers().values()}
    try:
        renderer = loaded[output].renderer()
        assert renderer.type() == "paletted"
        assert [c.label for c in renderer.classes()] == list(SEABED_CLASSES)
        assert [c.color.name() for c in renderer.classes()] == list(SEABED_COLORS)
        assert probabilities in loaded
        assert read(probabilities).shape[0] == len(SEABED_CLASSES)
        assert grid_of(output)[1:] == grid_of(scene_tif)[1:] and same_crs(output, scene_tif)
    finally:
        QgsProject.instance().removeAllMapLayers()


def test_a_layer_that_is_not_a_file_is_rendered_then_run(rsai_provider, scene_tif, depth_model, tmp_path):
    import processing
    from qgis.core import QgsRasterLayer

    gdal.FileFromMemBuffer("/vsimem/scene_in_memory.tif", Path(scene_tif).read_bytes())
    try:
        in_memory = QgsRasterLayer("/vsimem/scene_in_memory.tif", "in memory")
        output = str(tmp_path / "depth.tif")
        processing.run("rsai:estimate_bathymetry",
                       {"INPUT": in_memory, "MODEL": depth_model, "OUTPUT": output})
    finally:
        gdal.Unlink("/vsimem/scene_in_memory.tif")
    assert same_crs(output, scene_tif) and grid_of(output)[1:] == grid_of(scene_tif)[1:]
    assert np.allclose(read(output), normalised_blue(scene_tif), atol=1e-4)


def test_an_engine_error_reaches_the_user_and_writes_nothing(rsai_provider, scene_tif, depth_model, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    output = tmp_path / "depth.tif"
    with pytest.raises(QgsProcessingException, match=r"band\(s\) \[9\].*bands 1\.\.3"):
        processing.run("rsai:estimate_bathymetry", {
            "INPUT": scene_tif, "MODEL": depth_model, "BANDS": "B02=9", "OUTPUT": str(output),
        })
    assert not output.exists()


def test_cancel_stops_the_engine_and_leaves_no_output(rsai_provider, tmp_path):
    import processing
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    from rs_qgis_plugin.worker_client import CANCEL_GRACE_S

    large = write_raster(tmp_path / "large.tif", scene(1024, 1024), descriptions=BAND_NAMES)
    small_tiles = write_model(tmp_path / "small_tiles.onnx", contract(tile=16, overlap=4),
                              [[1.0, 0.0, 0.0]], [0.0])
    feedback = QgsProcessingFeedback()
    feedback.progressChanged.connect(lambda progress: feedback.cancel())
    started = time.monotonic()
    with pytest.raises(QgsProcessingException, match="Cancelled"):
        processing.run("rsai:estimate_bathymetry", {
            "INPUT": large, "MODEL": small_tiles, "OUTPUT": str(tmp_path / "depth.tif"),
        }, feedback=feedback)
    assert time.monotonic() - started < CANCEL_GRACE_S + 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["large.tif", "small_tiles.onnx"]


@pytest.mark.slow
def test_qgis_process_classifies_seabed_on_the_inputs_grid(qgis_process, scene_tif, seabed_model, tmp_path):
    output = tmp_path / "seabed.tif"
    run = qgis_process("run", "rsai:classify_seabed", "--", f"INPUT={scene_tif}",
                       f"MODEL={seabed_model}", "DEVICE=1", f"OUTPUT={output}")
    assert run.returncode == 0, run.log
    assert run.output["results"]["OUTPUT"] == str(output)
    assert run.output["results"]["DEVICE_USED"] == "CPUExecutionProvider"
    assert same_crs(output, scene_tif) and grid_of(output)[1:] == grid_of(scene_tif)[1:]


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ALGORITHM_IDS)
def test_qgis_process_runs_the_shipped_models(qgis_process, scene_tif, tmp_path, algorithm):
    output = tmp_path / "output.tif"
    run = qgis_process("run", algorithm, "--", f"INPUT={scene_tif}", f"OUTPUT={output}")
    assert run.returncode == 0, run.log
    assert same_crs(output, scene_tif) and grid_of(output)[1:] == grid_of(scene_tif)[1:]

"""The text-search dock driven offscreen on a real QgsMapCanvas and project, with the real engine
worker and the shipped search models, on the Olinda Landsat 7 sample."""
import time
from pathlib import Path

import pytest
from test_model_selector import grouped_entries, wait_for_listing

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE = REPO_ROOT / "sample_data" / "olinda_landsat7.tif"
SAMPLE_TILES = 121
JOB_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def sample_index(rsai_provider, tmp_path_factory) -> Path:
    import processing

    index = tmp_path_factory.mktemp("dock") / "index"
    processing.run("rsai:build_search_index", {"LAYERS": [str(SAMPLE)], "INDEX": str(index), "DEVICE": 1})
    return index


@pytest.fixture
def dock(qgis_app, tmp_path_factory, monkeypatch):
    """The dock on a web-mercator canvas of the global project, with an empty user models folder;
    its worker and layers go afterwards."""
    from qgis.core import QgsCoordinateReferenceSystem, QgsProject, QgsRectangle
    from qgis.gui import QgsMapCanvas

    from rs_qgis_plugin.search_dock import SearchDock

    monkeypatch.setenv("RSAI_MODELS_DIR", str(tmp_path_factory.mktemp("no_user_models")))
    canvas = QgsMapCanvas()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
    canvas.setExtent(QgsRectangle(0, 0, 1000, 1000))
    dock = SearchDock(canvas, QgsProject.instance())
    yield dock
    dock.close()
    QgsProject.instance().removeAllMapLayers()


def wait_for(dock) -> None:
    """Process Qt events until the dock's engine request has finished and its results are shown."""
    from qgis.PyQt.QtCore import QCoreApplication

    deadline = time.monotonic() + JOB_TIMEOUT_S
    while dock.is_busy():
        assert time.monotonic() < deadline, f"the dock's request did not finish: {dock.status_label.text()}"
        QCoreApplication.processEvents()
        time.sleep(0.01)


def listed(dock) -> list[tuple[int, float, str, int]]:
    table = dock.results_table
    return [(int(table.item(row, 0).text()), float(table.item(row, 1).text()), table.item(row, 2).text(),
             int(table.item(row, 3).text())) for row in range(table.rowCount())]


def search(dock, index: Path, query: str, top_k: int = 10) -> None:
    """Type the query and press Enter, as a user would."""
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtTest import QTest

    dock.index_widget.setFilePath(str(index))
    dock.top_k_spin.setValue(top_k)
    dock.query_edit.clear()
    QTest.keyClicks(dock.query_edit, query)
    QTest.keyClick(dock.query_edit, Qt.Key_Return)
    wait_for(dock)


def search_layers(project) -> list:
    return [layer for layer in project.mapLayers().values() if layer.name().startswith("Search")]


def test_search_lists_ranked_tiles_and_shows_them_on_the_map(dock, sample_index):
    from qgis.core import QgsProject

    search(dock, sample_index, "the sea", top_k=10)
    rows = listed(dock)
    assert [rank for rank, *_ in rows] == list(range(1, 11))
    scores = [score for _, score, *_ in rows]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) > 1
    assert {layer for *_, layer, _ in rows} == {"olinda_landsat7"}
    assert "10 best of 121 tiles for 'the sea'" in dock.status_label.text()
    assert "Device: CPUExecutionProvider" in dock.status_label.text()  # the device that ran the text model

    (layer,) = search_layers(QgsProject.instance())
    assert layer.name() == "Search: the sea" and layer.featureCount() == 10
    assert layer.crs().authid() == "EPSG:31985"
    assert [f["tile"] for f in layer.getFeatures()] == [tile for *_, tile in rows]
    assert layer.renderer().type() == "graduatedSymbol" and layer.renderer().classAttribute() == "score"
    assert layer.labelsEnabled() and layer.labeling().settings().fieldName == "rank"


def test_selecting_a_result_zooms_the_canvas_to_its_tile(dock, sample_index):
    from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsProject, QgsRectangle

    search(dock, sample_index, "the sea", top_k=5)
    before = dock.canvas.extent()
    dock.results_table.selectRow(2)
    tile = dock.results[2]
    to_canvas = QgsCoordinateTransform(QgsCoordinateReferenceSystem("EPSG:31985"),
                                       QgsCoordinateReferenceSystem("EPSG:3857"), QgsProject.instance())
    tile_on_canvas = to_canvas.transformBoundingBox(QgsRectangle(*tile["bounds"]))
    extent = dock.canvas.extent()
    assert extent != before and extent.contains(tile_on_canvas)
    assert extent.width() < 3 * tile_on_canvas.width() or extent.height() < 3 * tile_on_canvas.height()
    assert -3_900_000 < extent.center().x() < -3_800_000  # Olinda, about 34.8 degrees west


def test_find_similar_lists_tiles_like_the_selected_one_and_replaces_the_results_layer(dock, sample_index):
    from qgis.core import QgsProject

    search(dock, sample_index, "the sea", top_k=5)
    query_tile = dock.results[0]["tile"]
    dock.results_table.selectRow(0)
    dock.similar_button.click()
    wait_for(dock)
    rows = listed(dock)
    assert len(rows) == 5 and query_tile not in [tile for *_, tile in rows]
    assert [score for _, score, *_ in rows] == sorted((score for _, score, *_ in rows), reverse=True)
    (layer,) = search_layers(QgsProject.instance())
    assert layer.name() == f"Search: tiles like olinda_landsat7 tile {query_tile}" and layer.featureCount() == 5


def test_one_worker_serves_every_search_until_the_dock_closes(dock, sample_index):
    search(dock, sample_index, "the sea")
    worker = dock.worker
    search(dock, sample_index, "a city")
    assert dock.worker is worker and worker.is_running()
    dock.close()
    assert dock.worker is None and not worker.is_running()


def test_the_heatmap_is_added_as_a_styled_raster_and_kept_out_of_the_layers_to_index(dock, sample_index):
    from qgis.core import QgsProject

    dock.heatmap_check.setChecked(True)
    search(dock, sample_index, "dense green vegetation, forest", top_k=3)
    heatmaps = [layer for layer in search_layers(QgsProject.instance()) if layer.name().startswith("Search heatmap")]
    assert len(heatmaps) == 1 and heatmaps[0].isValid()
    assert (heatmaps[0].width(), heatmaps[0].height()) == (11, 11)
    assert heatmaps[0].renderer().type() == "singlebandpseudocolor"
    assert dock.layers_list.count() == 0


def test_the_build_button_indexes_the_checked_layers(dock, tmp_path):
    from qgis.core import QgsProject, QgsRasterLayer

    layer = QgsRasterLayer(str(SAMPLE), "Olinda 2001")
    QgsProject.instance().addMapLayer(layer)
    assert dock.layers_list.count() == 1 and dock.layers_list.item(0).text() == "Olinda 2001"
    dock.index_widget.setFilePath(str(tmp_path / "index"))
    dock.build_button.click()
    assert not dock.build_button.isEnabled() and not dock.progress_bar.isHidden()
    progress = []
    dock.job.feedback.progressChanged.connect(progress.append)
    wait_for(dock)
    assert progress and progress[-1] == pytest.approx(100.0) and dock.progress_bar.isHidden()
    assert dock.status_label.text().startswith(f"Indexed {SAMPLE_TILES} tiles of 1 layer(s)")
    assert dock.build_button.isEnabled() and (tmp_path / "index" / "manifest.json").is_file()

    search(dock, tmp_path / "index", "the sea", top_k=3)
    assert {layer for *_, layer, _ in listed(dock)} == {"Olinda 2001"}


@pytest.mark.parametrize("query, index, message", [
    ("", "index", "Type what to look for"),
    ("the sea", "", "Choose the index folder"),
    ("the sea", "missing", "is not a search index"),
])
def test_bad_input_is_reported_in_the_dock(dock, sample_index, tmp_path, query, index, message):
    folder = {"index": str(sample_index), "": "", "missing": str(tmp_path / "missing")}[index]
    dock.index_widget.setFilePath(folder)
    dock.query_edit.setText(query)
    dock.search_button.click()
    wait_for(dock)
    assert message in dock.status_label.text() and dock.results_table.rowCount() == 0
    assert dock.search_button.isEnabled()


def test_find_similar_without_a_selected_result_says_what_to_do(dock, sample_index):
    dock.index_widget.setFilePath(str(sample_index))
    dock.similar_button.click()
    assert "Select a result first" in dock.status_label.text() and not dock.is_busy()


def test_the_index_folder_is_offered_again_in_a_new_dock(dock, sample_index):
    from qgis.core import QgsProject

    from rs_qgis_plugin.search_dock import SearchDock

    dock.index_widget.setFilePath(str(sample_index))
    later = SearchDock(dock.canvas, QgsProject.instance())
    try:
        assert later.index_widget.filePath() == str(sample_index)
    finally:
        later.close()


def test_the_build_button_embeds_with_the_chosen_installed_encoder(dock, tmp_path):
    import json

    from qgis.core import QgsProject, QgsRasterLayer

    QgsProject.instance().addMapLayer(QgsRasterLayer(str(SAMPLE), "Olinda 6 bands"))
    dock.index_widget.setFilePath(str(tmp_path / "index"))
    wait_for_listing(dock.encoder_selector)
    models = REPO_ROOT / "models_onnx"
    assert grouped_entries(dock.encoder_selector) == [
        ("", [("Default: search_image_rgb.onnx", "")]),
        ("Image encoders (search)", [
            ("search_image_ms (B02, B03, B04, B08, B11, B12)", str(models / "search_image_ms.onnx")),
            ("search_image_rgb (red, green, blue)", str(models / "search_image_rgb.onnx")),
            ("search_image_s1_sim (VV, VH)", str(models / "search_image_s1_sim.onnx"))])]
    dock.encoder_selector.combo.setCurrentIndex(dock.encoder_selector.find(str(models / "search_image_ms.onnx")))
    dock.build_button.click()
    wait_for(dock)
    entries = json.loads((tmp_path / "index" / "manifest.json").read_text())["entries"]
    assert [(e["name"], e["model_name"], e["tiles"]) for e in entries] == [("Olinda 6 bands", "search_image_ms",
                                                                             SAMPLE_TILES)]

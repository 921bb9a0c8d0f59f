"""The MODEL parameter's selector in real Processing dialogs (standard, batch, modeler) offscreen:
the installed models listed by the real engine worker from a temporary user models folder holding
real ONNX models of two tasks, grouped by task with the algorithm's own first."""
import shutil
import time
from pathlib import Path

import pytest
from test_run_onnx import conv_graph

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED = REPO_ROOT / "models_onnx"
SAMPLE = REPO_ROOT / "sample_data" / "agia_napa_sim_s2.tif"
LISTING_TIMEOUT_S = 60
ALGORITHMS_WITH_MODEL = {  # id -> (first group, the shipped models it lists)
    "rsai:estimate_bathymetry": ("Bathymetry", {"bathymetry_s2_sim"}),
    "rsai:classify_seabed": ("Seabed classes", {"seabed_s2_sim"}),
    "rsai:compress_hyperspectral": ("HyCoT encoders (compression)",
                                    {f"hycot_cr{ratio}_enmap_sim_encoder" for ratio in (4, 8, 16, 32)}),
    "rsai:decompress_hyperspectral": ("HyCoT decoders (decompression)",
                                      {f"hycot_cr{ratio}_enmap_sim_decoder" for ratio in (4, 8, 16, 32)}),
    "rsai:classify_scenes": ("Scene labels", {"scene_labels_s1s2_fixture"}),
    "rsai:map_crops": ("Crop maps (time series)", {"crop_tsvit_s1s2_sim"}),
    "rsai:build_search_index": ("Image encoders (search)", {"search_image_rgb", "search_image_ms", "search_image_s1_sim"}),
    "rsai:search_changes": ("Change encoders (search)", {"search_change_rgb_gff", "search_change_rgb_tff"}),
}


@pytest.fixture(scope="module")
def user_models(tmp_path_factory):
    """RSAI_MODELS_DIR with a depth model (with a card), in a subfolder a seabed model, and a
    Deepness-format segmentation model."""
    folder = tmp_path_factory.mktemp("user_models")
    conv_graph(folder / "deepness_classes.onnx", metadata={"model_type": '"Segmentor"', "tiles_size": "32"})
    shutil.copy(SHIPPED / "bathymetry_s2_sim.onnx", folder / "my_depth.onnx")
    (folder / "my_depth.md").write_text("# my_depth\n\nRetrained on our own soundings.\n")
    (folder / "imported").mkdir()
    shutil.copy(SHIPPED / "seabed_s2_sim.onnx", folder / "imported" / "my_seabed.onnx")
    with pytest.MonkeyPatch.context() as environment:
        environment.setenv("RSAI_MODELS_DIR", str(folder))
        yield folder


def wait_for_listing(selector) -> None:
    """Process Qt events until the engine's listing has reached the selector."""
    from qgis.PyQt.QtCore import QCoreApplication

    deadline = time.monotonic() + LISTING_TIMEOUT_S
    while not selector.listing.done:
        assert time.monotonic() < deadline, "the engine did not list the installed models"
        QCoreApplication.processEvents()
        time.sleep(0.01)
    QCoreApplication.processEvents()  # the listing's ready signal


def grouped_entries(selector) -> list[tuple[str, list[tuple[str, object]]]]:
    """The combo box as (group header, [(label, value)]); entries before any header under ''."""
    from qgis.PyQt.QtCore import Qt

    model, groups = selector.combo.model(), [("", [])]
    for row in range(model.rowCount()):
        item = model.item(row)
        if item.isSelectable():
            groups[-1][1].append((item.text(), item.data(Qt.ItemDataRole.UserRole)))
        else:
            groups.append((item.text(), []))
    return groups


def stems(choices) -> set[str]:
    return {Path(value).stem for _, value in choices}


def choose(selector, value) -> None:
    """Pick the entry of ``value`` in the combo box, as a user would."""
    index = selector.find(value)
    assert index >= 0, f"{value} is not offered"
    selector.combo.setCurrentIndex(index)


@pytest.fixture
def dialogs(rsai_provider):
    """Opens dialogs (a dialog class, an algorithm id): deleted after the test, as QGIS deletes a
    closed dialog (left to Python's exit, their widgets outlive the application)."""
    from qgis.core import QgsApplication
    from qgis.PyQt import sip

    opened = []

    def open_dialog(dialog_class, algorithm_id: str, *args):
        opened.append(dialog_class(QgsApplication.processingRegistry().createAlgorithmById(algorithm_id), *args))
        return opened[-1]

    yield open_dialog
    for dialog in opened:
        sip.delete(dialog)


@pytest.fixture
def dialog_wrapper(dialogs):
    """A real algorithm dialog and its MODEL wrapper, once the installed models are listed."""
    from processing.gui.AlgorithmDialog import AlgorithmDialog

    def open_dialog(algorithm_id: str):
        dialog = dialogs(AlgorithmDialog, algorithm_id)
        wrapper = dialog.mainWidget().wrappers["MODEL"]
        wait_for_listing(wrapper.widget)
        return dialog, wrapper

    return open_dialog


def test_estimate_bathymetry_offers_the_bathymetry_models_and_returns_the_chosen_path(dialog_wrapper, user_models):
    from qgis.core import QgsProcessingContext

    from rs_qgis_plugin.model_parameter_widget import ModelSelectorWrapper

    dialog, wrapper = dialog_wrapper("rsai:estimate_bathymetry")
    assert isinstance(wrapper, ModelSelectorWrapper)
    selector = wrapper.widget
    groups = grouped_entries(selector)
    assert groups[0] == ("", [("Default: bathymetry_s2_sim.onnx", "")]) and wrapper.value() == ""
    assert [title for title, _ in groups[1:]] == ["Bathymetry"]  # no seabed or other task's model
    my_depth = str(user_models / "my_depth.onnx")
    assert groups[1][1] == [("bathymetry_s2_sim (B04, B03, B02)", str(SHIPPED / "bathymetry_s2_sim.onnx")),
                            ("my_depth (B04, B03, B02)", my_depth)]
    tooltip = selector.combo.model().item(selector.find(my_depth)).toolTip()
    assert tooltip == f"bathymetry_s2_sim: in the user models folder\nmy_depth Retrained on our own soundings.\n{my_depth}"
    shipped_tooltip = selector.combo.model().item(selector.find(str(SHIPPED / "bathymetry_s2_sim.onnx"))).toolTip()
    assert "shipped with the toolbox" in shipped_tooltip and "shallow-water depth" in shipped_tooltip

    changes = []
    wrapper.widgetValueHasChanged.connect(lambda changed: changes.append(changed.value()))
    choose(selector, my_depth)
    assert wrapper.value() == my_depth and changes == [my_depth]
    dialog.mainWidget().wrappers["INPUT"].setParameterValue(str(SAMPLE), QgsProcessingContext())
    assert dialog.mainWidget().createProcessingParameters()["MODEL"] == my_depth  # what the dialog runs


@pytest.mark.parametrize("algorithm_id", ALGORITHMS_WITH_MODEL)
def test_each_algorithm_lists_its_own_task_first(dialog_wrapper, user_models, algorithm_id):
    first_group, shipped = ALGORITHMS_WITH_MODEL[algorithm_id]
    _, wrapper = dialog_wrapper(algorithm_id)
    groups = grouped_entries(wrapper.widget)
    assert groups[1][0] == first_group and shipped <= stems(groups[1][1])
    offered = {stem for _, choices in groups for stem in stems(choice for choice in choices if choice[1])}
    expected = shipped | ({"my_depth"} if first_group == "Bathymetry" else set()) | (
        {"my_seabed"} if first_group == "Seabed classes" else set())
    assert offered == expected


def test_run_onnx_model_offers_every_per_pixel_model_and_needs_a_choice(dialog_wrapper, user_models):
    _, wrapper = dialog_wrapper("rsai:run_onnx_model")
    groups = grouped_entries(wrapper.widget)
    assert groups[0] == ("", [("Choose a model…", "")]) and wrapper.value() == ""
    assert groups[1] == ("Deepness segmentation", [("deepness_classes (band1, band2, band3)",
                                                    str(user_models / "deepness_classes.onnx"))])
    assert {title for title, _ in groups[2:]} == {"Bathymetry", "Seabed classes", "HyCoT encoders (compression)",
                                                  "HyCoT decoders (decompression)"}  # no time series, text, pairs
    assert stems(dict(groups)["Seabed classes"]) == {"seabed_s2_sim", "my_seabed"}  # found in a subfolder too


def test_a_free_path_round_trips_beside_the_installed_models(dialog_wrapper, user_models, tmp_path):
    _, wrapper = dialog_wrapper("rsai:classify_seabed")
    elsewhere = str(tmp_path / "elsewhere" / "their_seabed.onnx")
    wrapper.setValue(elsewhere)
    assert wrapper.value() == elsewhere
    assert grouped_entries(wrapper.widget)[-1] == ("Other files", [("their_seabed.onnx", elsewhere)])
    my_seabed = str(user_models / "imported" / "my_seabed.onnx")
    wrapper.setValue(my_seabed)  # an installed model selects its own entry, not another 'other file'
    assert wrapper.value() == my_seabed and len(grouped_entries(wrapper.widget)[-1][1]) == 1
    wrapper.setValue(elsewhere)
    assert wrapper.value() == elsewhere
    wrapper.setValue(None)
    assert wrapper.value() == ""  # the default model


def test_a_path_set_while_the_engine_lists_lands_on_its_installed_entry(dialogs, tmp_path, monkeypatch):
    from processing.gui.AlgorithmDialog import AlgorithmDialog

    monkeypatch.setenv("RSAI_MODELS_DIR", str(tmp_path))  # a folder not listed yet
    fresh_depth = str(tmp_path / "fresh_depth.onnx")
    shutil.copy(SHIPPED / "bathymetry_s2_sim.onnx", fresh_depth)
    wrapper = dialogs(AlgorithmDialog, "rsai:estimate_bathymetry").mainWidget().wrappers["MODEL"]
    wrapper.setValue(fresh_depth)
    assert [title for title, _ in grouped_entries(wrapper.widget)] == ["", "Other files", "Installed models: listing…"]
    assert wrapper.value() == fresh_depth
    wait_for_listing(wrapper.widget)
    groups = dict(grouped_entries(wrapper.widget))
    assert list(groups) == ["", "Bathymetry"]  # no longer under 'Other files'
    assert ("fresh_depth (B04, B03, B02)", fresh_depth) in groups["Bathymetry"] and wrapper.value() == fresh_depth

def test_dialogs_opened_together_share_one_listing(dialog_wrapper, user_models):
    _, first = dialog_wrapper("rsai:estimate_bathymetry")
    _, second = dialog_wrapper("rsai:map_crops")
    assert second.widget.listing is first.widget.listing


def test_without_an_engine_only_browse_remains_and_says_why(dialog_wrapper, user_models, tmp_path, monkeypatch):
    missing = tmp_path / "no-engine" / "python"
    monkeypatch.setenv("RSAI_PYTHON", str(missing))
    _, wrapper = dialog_wrapper("rsai:estimate_bathymetry")
    selector = wrapper.widget
    assert grouped_entries(selector) == [("", [("Default: bathymetry_s2_sim.onnx", "")]),
                                         ("Installed models: unavailable", [])]
    for explained in (selector.combo, selector.browse_button):
        assert explained.toolTip().startswith("The installed models cannot be listed, so only Browse… chooses a model")
        assert f"Cannot start the engine with the Python interpreter '{missing}'" in explained.toolTip()
    assert selector.browse_button.isEnabled() and not selector.browse_button.isHidden()
    chosen = str(tmp_path / "depth.onnx")
    wrapper.setValue(chosen)
    assert wrapper.value() == chosen


def test_the_batch_dialog_takes_the_chosen_model_per_row(dialogs, user_models):
    from processing.gui.BatchAlgorithmDialog import BatchAlgorithmDialog

    panel = dialogs(BatchAlgorithmDialog, "rsai:estimate_bathymetry").mainWidget()
    wrapper = panel.wrappers[0][panel.parameter_to_column["MODEL"]]
    wait_for_listing(wrapper.widget)
    my_depth = str(user_models / "my_depth.onnx")
    choose(wrapper.widget, my_depth)
    assert wrapper.parameterValue() == my_depth  # what the batch panel reads


def test_the_modeler_still_takes_the_model_from_a_model_input(dialogs, user_models):
    from processing.modeler.ModelerParametersDialog import ModelerParametersDialog
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelParameter,
        QgsProcessingParameterFile,
    )
    from qgis.gui import QgsProcessingModelerParameterWidget

    model = QgsProcessingModelAlgorithm("Depth workflow", "tests")
    model.addModelParameter(QgsProcessingParameterFile("depth_model", "Depth model", extension="onnx"),
                            QgsProcessingModelParameter("depth_model"))
    dialog = dialogs(ModelerParametersDialog, "rsai:estimate_bathymetry", model)
    widget = dialog.widget.widget.wrappers["MODEL"]
    assert isinstance(widget, QgsProcessingModelerParameterWidget)  # the modeler's own, with input choices
    widget.setWidgetValue(QgsProcessingModelChildParameterSource.fromModelParameter("depth_model"))
    assert widget.value().parameterName() == "depth_model"


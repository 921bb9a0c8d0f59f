"""The model selector of the Processing dialogs' MODEL parameters (model_parameter_widget.py) and
of the search dock: the installed ONNX models grouped by task, the algorithm's own task first, and
Browse… for any file.

The list comes from the engine (worker task ``installed_models``: the shipped models and the user
models folder, RSAI_MODELS_DIR), fetched off the GUI thread and shared by the selectors opened in the
next LISTING_TTL_S; the plugin opens no model itself. The parameter stays a file path, so
qgis_process, batch runs and scripts are unchanged: only the dialog's widget differs. Without an
engine the selector still browses for files, and its tooltips say why nothing is listed.
"""
import os
import time
from pathlib import Path

from qgis.PyQt.QtCore import QCoreApplication, QObject, Qt, pyqtSignal, pyqtSlot
from qgis.PyQt.QtGui import QStandardItem, QStandardItemModel
from qgis.PyQt.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QToolButton, QWidget

from rs_qgis_plugin.engine_job import EngineJob
from rs_qgis_plugin.settings import engine_python
from rs_qgis_plugin.worker_client import EngineWorker

LISTING_TTL_S = 60.0  # selectors opened within this of a listing reuse it
MODELS_DIR_ENV = "RSAI_MODELS_DIR"  # the engine's user models folder; the worker inherits this environment
MAX_NAMED_INPUTS = 6  # an entry names up to this many input bands, else counts them
TASK_TITLES = {  # contract task -> group header; other tasks are shown by their name
    "bathymetry": "Bathymetry",
    "seabed": "Seabed classes",
    "hycot_encoder": "HyCoT encoders (compression)",
    "hycot_decoder": "HyCoT decoders (decompression)",
    "scene_labels": "Scene labels",
    "crop_map": "Crop maps (time series)",
    "image_embedding": "Image encoders (search)",
    "change_embedding": "Change encoders (search)",
    "text_embedding": "Text encoders (search)",
    "run_onnx": "Models with options stored by 'engine contract set'",
    "deepness-segmentor": "Deepness segmentation",
    "deepness-regressor": "Deepness regression",
}
MODEL_FILES = "ONNX models (*.onnx);;All files (*)"


def list_installed_models(feedback) -> dict:
    with EngineWorker() as worker:
        return worker.run("installed_models", {}, feedback)


class ModelListing(QObject):
    """One listing of the installed models by the engine, fetched on a thread; ``ready`` is emitted
    once ``listing`` (the engine's answer) or ``problem`` (why there is none) is set. The application
    owns it, so that it outlives the dialog that asked and is deleted on the GUI thread."""

    ready = pyqtSignal()

    def __init__(self):
        super().__init__(QCoreApplication.instance())
        self.started = time.monotonic()
        self.listing, self.problem, self.done = None, "", False
        self.job = EngineJob(list_installed_models, self)
        self.job.succeeded.connect(self.store)
        self.job.failed.connect(self.fail)
        self.job.start()

    @pyqtSlot(object)
    def store(self, listing: dict) -> None:
        self.listing, self.done = listing, True
        self.ready.emit()

    @pyqtSlot(str)
    def fail(self, problem: str) -> None:
        self.problem, self.done = problem, True
        self.ready.emit()

    def is_stale(self) -> bool:
        return self.done and time.monotonic() - self.started > LISTING_TTL_S


_listings: dict[tuple[str, str], ModelListing] = {}  # by engine interpreter and user models folder


def current_listing() -> ModelListing:
    """The listing of the engine and models folder in use now: a recent one, else a new one."""
    key = (engine_python(), os.environ.get(MODELS_DIR_ENV, ""))
    if key in _listings and _listings[key].is_stale():
        _listings.pop(key).deleteLater()  # selectors showing it keep what it listed
    if key not in _listings:
        _listings[key] = ModelListing()
    return _listings[key]


def entry_label(entry: dict) -> str:
    """The file's name and what it reads: 'bathymetry_s2_sim (B04, B03, B02)', 'x (202 bands)'."""
    inputs = entry["inputs"]
    named = ", ".join(inputs) if len(inputs) <= MAX_NAMED_INPUTS else f"{len(inputs)} bands"
    return f"{Path(entry['path']).stem} ({named})"


def entry_tooltip(entry: dict) -> str:
    origin = "shipped with the toolbox" if entry["origin"] == "shipped" else "in the user models folder"
    return "\n".join(part for part in (f"{entry['name']}: {origin}", entry["summary"], entry["path"]) if part)


class ModelSelector(QWidget):
    """A combo box of the installed models of ``tasks`` (one group each, in that order; with
    ``other_tasks_except`` every other task's group too, but those) and a Browse… button. Its value
    is a model file path, '' for the algorithm's default model (``default_model`` says which; none:
    the parameter is required)."""

    valueChanged = pyqtSignal()  # noqa: N815 (Qt naming)

    def __init__(self, tasks, other_tasks_except=None, default_model: str = "", parent=None):
        super().__init__(parent)
        self.tasks, self.other_tasks_except, self.default_model = list(tasks), other_tasks_except, default_model
        self.other_files = []  # paths chosen by Browse… or set, that are not installed models
        self.combo = QComboBox()
        self.combo.setModel(QStandardItemModel(self.combo))
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.combo.setMinimumContentsLength(20)
        self.browse_button = QToolButton()
        self.browse_button.setText("Browse…")
        layout = QHBoxLayout()
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.combo, 1)
        layout.addWidget(self.browse_button)
        self.setLayout(layout)
        self.browse_button.clicked.connect(self.browse)
        self.combo.currentIndexChanged.connect(self.valueChanged)
        self.listing = current_listing()
        self.listing.ready.connect(self.show_listing)
        self.show_listing()

    # ------------------------------------------------------------------ value
    def value(self) -> str:
        """The chosen model's path; '' for the default model (or none chosen)."""
        return self.combo.currentData(Qt.ItemDataRole.UserRole) or ""

    def set_value(self, value) -> None:
        """Choose ``value``: an installed model's path selects its entry; any other path is listed
        under 'Other files'; None or '' selects the default model (or no model)."""
        path = str(value or "")
        if path and self.find(path) < 0:
            self.other_files.append(path)
            self.rebuild(path)
        self.combo.setCurrentIndex(self.find(path))

    def find(self, path: str) -> int:
        """The row of the entry of ``path`` ('': the default), -1 when none."""
        model = self.combo.model()
        for row in range(model.rowCount()):
            item = model.item(row)
            if item.isSelectable() and item.data(Qt.ItemDataRole.UserRole) == path:
                return row
        return -1

    @pyqtSlot()
    def browse(self) -> None:
        current = self.value()
        folder = str(Path(current).parent) if current else self.user_models_folder()
        path, _ = QFileDialog.getOpenFileName(self, "Choose an ONNX model", folder, MODEL_FILES)
        if path:
            self.set_value(path)

    def user_models_folder(self) -> str:
        return self.listing.listing["folders"]["user"] if self.listing.listing else ""

    # ------------------------------------------------------------------ entries
    @pyqtSlot()
    def show_listing(self) -> None:
        """(Re)list the entries from the engine's listing, keeping the chosen value."""
        listing, problem = self.listing.listing, self.listing.problem
        if not self.listing.done:
            why = "The engine is listing the installed models…"
        elif problem:
            why = f"The installed models cannot be listed, so only Browse… chooses a model: {problem}"
        else:
            why = (f"Installed models grouped by task: shipped ({listing['folders']['shipped']}) and yours "
                   f"({listing['folders']['user']}, the {MODELS_DIR_ENV} folder). Browse… for any other file.")
            if listing["warnings"]:
                why += "\nSkipped: " + "\n".join(listing["warnings"])
        self.combo.setToolTip(why)
        self.browse_button.setToolTip("Choose any ONNX model file." if not problem else why)
        self.rebuild(self.value())

    def offered_groups(self) -> list[tuple[str, list[dict]]]:
        """(task, its installed models) of the tasks offered that have models, in their order."""
        listed = self.listing.listing["tasks"] if self.listing.listing else {}
        others = [] if self.other_tasks_except is None else [
            task for task in listed if task not in self.tasks and task not in self.other_tasks_except]
        return [(task, listed[task]) for task in [*self.tasks, *others] if listed.get(task)]

    def rebuild(self, value) -> None:
        model = self.combo.model()
        self.combo.blockSignals(True)
        model.clear()
        if self.default_model:
            model.appendRow(choice(f"Default: {self.default_model}", "",
                                   "Leave MODEL empty: the algorithm runs its default model."))
        else:
            model.appendRow(choice("Choose a model…", "", "This algorithm needs a model: choose one or Browse…"))
        offered = self.offered_groups()
        groups = [(TASK_TITLES.get(task, task), [(entry_label(entry), entry["path"], entry_tooltip(entry))
                                                 for entry in entries]) for task, entries in offered]
        installed = {path for _, choices in groups for _, path, _ in choices}
        groups.append(("Other files", [(Path(path).name, path, path) for path in self.other_files
                                       if path not in installed]))  # set before the listing came
        for title, choices in groups:
            if choices:
                model.appendRow(header(title))
                for entry in choices:
                    model.appendRow(choice(*entry))
        if not self.listing.done:
            model.appendRow(header("Installed models: listing…", self.combo.toolTip()))
        elif self.listing.problem:
            model.appendRow(header("Installed models: unavailable", self.combo.toolTip()))
        elif not offered:
            model.appendRow(header("No installed model for this algorithm", self.combo.toolTip()))
        self.combo.setCurrentIndex(max(self.find(value), 0))
        self.combo.blockSignals(False)
        if self.value() != value:
            self.valueChanged.emit()


def header(title: str, tooltip: str = "") -> QStandardItem:
    """A group title: shown in bold, not choosable."""
    item = QStandardItem(title)
    font = item.font()
    font.setBold(True)
    item.setFont(font)
    item.setFlags(Qt.ItemFlag.NoItemFlags)
    item.setToolTip(tooltip)
    return item


def choice(label: str, value, tooltip: str) -> QStandardItem:
    item = QStandardItem(label)
    item.setData(value, Qt.ItemDataRole.UserRole)
    item.setToolTip(tooltip)
    return item

"""The search dock: type what to look for, see the best matching tiles of the indexed layers on the map.

One engine worker serves the dock for as long as it is open: the worker keeps the encoders and the
index loaded, so every search after the first takes milliseconds. Engine requests run on a QThread
(the map stays responsive while an index is built); one at a time, the buttons wait meanwhile.
The map canvas and the project are given to the dock, so that it runs on any canvas (tests drive
it offscreen).
"""
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCsException,
    QgsFeature,
    QgsGeometry,
    QgsPointXY,
    QgsProcessingContext,
    QgsProcessingUtils,
    QgsRasterLayer,
    QgsRectangle,
    QgsSettings,
    QgsVectorLayer,
)
from qgis.gui import QgsDockWidget, QgsFileWidget
from qgis.PyQt.QtCore import Qt, pyqtSlot
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from rs_qgis_plugin.algorithms.build_search_index import BuildSearchIndex
from rs_qgis_plugin.algorithms.search_algorithm import BUILD_TASK, DEFAULT_TOP_K, MAX_TOP_K, indexed_layers
from rs_qgis_plugin.engine_job import EngineJob
from rs_qgis_plugin.model_selector import ModelSelector
from rs_qgis_plugin.output_styles import style_search_results, style_similarity_heatmap
from rs_qgis_plugin.worker_client import CANCEL_GRACE_S, EngineWorker, device_text

RESULT_COLUMNS = ("Rank", "Score", "Layer", "Tile")
SEARCH_OUTPUT = "rsai/search_output"  # custom property of the dock's own temporary layers
INDEX_SETTING = "rsai/search_index"  # the index folder last chosen, offered again next session
DEFAULT_ENCODER = "search_image_rgb.onnx"  # what the engine indexes with when no encoder is chosen
ZOOM_MARGIN = 1.5  # the map shows the selected tile with half a tile of surroundings
STOP_WAIT_MS = int((CANCEL_GRACE_S + 5) * 1000)  # a cancelled request ends within this


class SearchDock(QgsDockWidget):
    def __init__(self, canvas, project, parent=None):
        super().__init__("Text search", parent)
        self.setObjectName("RsaiSearchDock")
        self.canvas, self.project = canvas, project
        self.worker = None  # started by the first request, closed with the dock
        self.job = None  # the request running now
        self.results = []  # the engine's hits in the table, best first
        self.results_crs = QgsCoordinateReferenceSystem()
        self.results_layer_id = self.heatmap_layer_id = None  # the temporary layers of the last search
        self.build_widgets()
        self.refresh_layers()
        project.layersAdded.connect(self.refresh_layers)
        project.layersRemoved.connect(self.refresh_layers)

    # ------------------------------------------------------------------ widgets
    def build_widgets(self) -> None:
        self.query_edit = QLineEdit()
        self.query_edit.setPlaceholderText("What to look for, e.g. the sea")
        self.query_edit.setToolTip("A description in English of the tiles to find; Enter searches.")
        self.search_button = QPushButton("Search")
        self.index_widget = QgsFileWidget()
        self.index_widget.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.index_widget.setToolTip("The folder of a search index (made by the build button below or by "
                                     "'Build search index' in the Processing Toolbox).")
        self.index_widget.setFilePath(QgsSettings().value(INDEX_SETTING, "", type=str))
        self.top_k_spin = QSpinBox()
        self.top_k_spin.setRange(1, MAX_TOP_K)
        self.top_k_spin.setValue(DEFAULT_TOP_K)
        self.top_k_spin.setToolTip("How many of the best matching tiles to list.")
        self.heatmap_check = QCheckBox("Similarity heatmap")
        self.heatmap_check.setToolTip("Also add a raster of every tile's score on the best result's layer.")
        self.results_table = QTableWidget(0, len(RESULT_COLUMNS))
        self.results_table.setHorizontalHeaderLabels(RESULT_COLUMNS)
        self.results_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.results_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.results_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.results_table.verticalHeader().hide()
        self.results_table.setToolTip("Select a result to zoom the map to its tile.")
        self.similar_button = QPushButton("Find similar")
        self.similar_button.setToolTip("Search the tiles that look like the selected result.")
        self.layers_list = QListWidget()
        self.layers_list.setToolTip("The project's raster layers; the checked ones are indexed.")
        self.encoder_selector = ModelSelector(BuildSearchIndex.model_tasks, default_model=DEFAULT_ENCODER)
        self.encoder_selector.setToolTip("The image encoder for what the checked layers hold (its bands are "
                                         "listed). One index holds layers of every encoder of one embedding "
                                         "space (the shipped ones): one query searches them together.")
        self.build_button = QPushButton("Build index from checked layers")
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 100)
        self.progress_bar.hide()
        self.status_label = QLabel("Choose an index folder, then type what to look for.")
        self.status_label.setWordWrap(True)

        query_row = QHBoxLayout()
        query_row.addWidget(self.query_edit)
        query_row.addWidget(self.search_button)
        options = QFormLayout()
        options.addRow("Index folder", self.index_widget)
        options.addRow("Results", self.top_k_spin)
        options.addRow("", self.heatmap_check)
        layout = QVBoxLayout()
        for part in (query_row, options):
            layout.addLayout(part)
        for widget in (self.results_table, self.similar_button, QLabel("Raster layers to index"), self.layers_list,
                       self.encoder_selector, self.build_button, self.progress_bar, self.status_label):
            layout.addWidget(widget)
        content = QWidget()
        content.setLayout(layout)
        self.setWidget(content)

        self.search_button.clicked.connect(self.search)
        self.query_edit.returnPressed.connect(self.search)
        self.similar_button.clicked.connect(self.find_similar)
        self.build_button.clicked.connect(self.build_index)
        self.results_table.itemSelectionChanged.connect(self.zoom_to_selected_result)
        self.index_widget.fileChanged.connect(lambda path: QgsSettings().setValue(INDEX_SETTING, path))

    @pyqtSlot()
    def refresh_layers(self) -> None:
        """List the project's raster layers; a new one is checked unless it is hidden in the layer tree
        (a layer just added has no tree node yet)."""
        checked = {self.layers_list.item(row).data(Qt.ItemDataRole.UserRole): self.layers_list.item(row).checkState()
                   for row in range(self.layers_list.count())}
        self.layers_list.clear()
        for layer in self.project.mapLayers().values():
            if not isinstance(layer, QgsRasterLayer) or layer.customProperty(SEARCH_OUTPUT):
                continue
            node = self.project.layerTreeRoot().findLayer(layer.id())
            visible = Qt.CheckState.Checked if node is None or node.isVisible() else Qt.CheckState.Unchecked
            item = QListWidgetItem(layer.name())
            item.setData(Qt.ItemDataRole.UserRole, layer.id())
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(checked.get(layer.id(), visible))
            self.layers_list.addItem(item)

    def checked_layers(self) -> list:
        items = (self.layers_list.item(row) for row in range(self.layers_list.count()))
        return [self.project.mapLayer(item.data(Qt.ItemDataRole.UserRole)) for item in items
                if item.checkState() == Qt.CheckState.Checked]

    def show_status(self, message: str, error: bool = False) -> None:
        self.status_label.setStyleSheet("color: #b00020;" if error else "")
        self.status_label.setText(message)

    # ------------------------------------------------------------------ requests
    @pyqtSlot()
    def search(self) -> None:
        query = self.query_edit.text().strip()
        if not query:
            self.show_status("Type what to look for, e.g. 'the sea' or 'dense green vegetation, forest'.", error=True)
            return
        self.start_search("search_text", {"query": query})

    @pyqtSlot()
    def find_similar(self) -> None:
        hit = self.selected_result()
        if hit is None:
            self.show_status("Select a result first: Find similar searches tiles like it.", error=True)
            return
        self.start_search("search_similar", {"layer": hit["layer"], "tile": hit["tile"]})

    @pyqtSlot()
    def build_index(self) -> None:
        layers, index, model = self.checked_layers(), self.index_widget.filePath(), self.encoder_selector.value()
        if not layers or not index:
            self.show_status("Check the raster layers to index and choose the index folder.", error=True)
            return
        context = QgsProcessingContext()
        context.setProject(self.project)

        def build(feedback):
            worker = self.engine()
            request = {"index": index, **({"model": model} if model else {})}  # none chosen: the default
            request.update(indexed_layers(layers, request, context, feedback, worker))
            return worker.run(BUILD_TASK, request, feedback)

        self.start_job(build, self.show_index_built, f"Indexing {len(layers)} layer(s)…")

    def start_search(self, task: str, params: dict) -> None:
        index = self.index_widget.filePath()
        if not index:
            self.show_status("Choose the index folder to search (or build one below).", error=True)
            return
        request = {**params, "index": index, "top_k": self.top_k_spin.value()}
        if self.heatmap_check.isChecked():
            request["heatmap"] = QgsProcessingUtils.generateTempFilename("search_heatmap.tif")
        self.start_job(lambda feedback: self.engine().run(task, request, feedback), self.show_results,
                       "Searching… (the first search loads the models)" if self.worker is None else "Searching…")

    def start_job(self, work, on_success, message: str) -> None:
        if self.is_busy():
            self.show_status("Wait for the running request to finish.", error=True)
            return
        self.job = EngineJob(work, self)
        self.job.feedback.progressChanged.connect(self.show_progress)
        self.job.succeeded.connect(on_success)
        self.job.failed.connect(self.show_failure)
        self.job.finished.connect(self.job_finished)
        self.set_busy(True)
        self.show_status(message)
        self.job.start()

    def engine(self) -> EngineWorker:
        """The dock's worker, started on first use (and again after it stopped)."""
        if self.worker is None:
            self.worker = EngineWorker()
        return self.worker

    def is_busy(self) -> bool:
        return self.job is not None

    def set_busy(self, busy: bool) -> None:
        for button in (self.search_button, self.similar_button, self.build_button):
            button.setEnabled(not busy)
        self.progress_bar.setValue(0)
        self.progress_bar.setVisible(busy)

    @pyqtSlot(float)
    def show_progress(self, percent: float) -> None:
        self.progress_bar.setValue(round(percent))

    @pyqtSlot()
    def job_finished(self) -> None:
        self.job.deleteLater()
        self.job = None
        self.set_busy(False)

    @pyqtSlot(str)
    def show_failure(self, message: str) -> None:
        if self.worker is not None and not self.worker.is_running():  # killed or crashed: start anew next time
            self.worker.close()
            self.worker = None
        self.show_status(message, error=True)

    def close_engine(self) -> None:
        """Stop the running request and the worker (the dock was closed or the plugin unloaded)."""
        if self.job is not None:
            self.job.feedback.cancel()
            self.job.wait(STOP_WAIT_MS)
        if self.worker is not None:
            self.worker.close()
            self.worker = None

    def closeEvent(self, event):  # noqa: N802 (Qt API)
        self.close_engine()
        super().closeEvent(event)

    # ------------------------------------------------------------------ results
    @pyqtSlot(object)
    def show_index_built(self, result: dict) -> None:
        reused = f", {result['reused']} unchanged layer(s) reused" if result["reused"] else ""
        self.show_status(f"Indexed {result['tiles']} tiles of {len(result['layers'])} layer(s) in "
                         f"{result['seconds']:.1f} s{reused}: type what to look for. {device_text(result)}".strip())

    @pyqtSlot(object)
    def show_results(self, result: dict) -> None:
        self.results = result["results"]
        self.results_crs = QgsCoordinateReferenceSystem.fromWkt(result["crs"])
        self.results_table.clearSelection()
        self.results_table.setRowCount(len(self.results))
        for row, hit in enumerate(self.results):
            cells = (str(hit["rank"]), f"{hit['score']:.3f}", hit["layer"], str(hit["tile"]))
            for column, text in enumerate(cells):
                self.results_table.setItem(row, column, QTableWidgetItem(text))
        self.results_table.resizeColumnsToContents()
        self.results_layer_id = self.replace_layer(self.results_layer_id, self.results_layer(result["query"]))
        if result["heatmap_layer"]:
            heatmap = QgsRasterLayer(result["outputs"]["heatmap"], f"Search heatmap: {result['query']}")
            style_similarity_heatmap(heatmap)
            self.heatmap_layer_id = self.replace_layer(self.heatmap_layer_id, heatmap)
        warnings = " ".join(result["warnings"])
        self.show_status(f"{len(self.results)} best of {result['searched_tiles']} tiles for '{result['query']}' "
                         f"in {result['query_ms']:.0f} ms. {device_text(result)} {warnings}".strip())

    def results_layer(self, label: str) -> QgsVectorLayer:
        """A temporary layer of the result tiles: rank, score, layer, tile; styled by score."""
        # fields in the provider's URI: QgsField's type argument differs between QGIS 3.22 and QGIS 4
        layer = QgsVectorLayer("Polygon?field=rank:integer&field=score:double&field=layer:string&field=tile:integer",
                               f"Search: {label}", "memory")
        layer.setCrs(self.results_crs)
        provider = layer.dataProvider()
        features = []
        for hit in self.results:
            feature = QgsFeature(layer.fields())
            feature.setGeometry(QgsGeometry.fromPolygonXY([[QgsPointXY(x, y) for x, y in hit["ring"]]]))
            feature.setAttributes([hit["rank"], hit["score"], hit["layer"], hit["tile"]])
            features.append(feature)
        provider.addFeatures(features)
        layer.updateExtents()
        style_search_results(layer)
        return layer

    def replace_layer(self, old_id: str | None, layer) -> str:
        """Put ``layer`` in the project in place of the layer ``old_id`` (when it is still there)."""
        if old_id is not None and self.project.mapLayer(old_id) is not None:
            self.project.removeMapLayer(old_id)
        layer.setCustomProperty(SEARCH_OUTPUT, True)
        self.project.addMapLayer(layer)
        return layer.id()

    def selected_result(self) -> dict | None:
        rows = self.results_table.selectionModel().selectedRows()
        return self.results[rows[0].row()] if rows else None

    @pyqtSlot()
    def zoom_to_selected_result(self) -> None:
        hit = self.selected_result()
        if hit is None:
            return
        to_canvas = QgsCoordinateTransform(self.results_crs, self.canvas.mapSettings().destinationCrs(), self.project)
        try:
            extent = to_canvas.transformBoundingBox(QgsRectangle(*hit["bounds"]))
        except QgsCsException as error:
            self.show_status(f"Cannot show tile {hit['tile']} in the map's CRS: {error}", error=True)
            return
        extent.scale(ZOOM_MARGIN)
        self.canvas.setExtent(extent)
        self.canvas.refresh()

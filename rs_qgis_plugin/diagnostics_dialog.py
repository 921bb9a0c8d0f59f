"""The Diagnostics view: the engine's own report (``python -m engine.doctor``) on the device each
shipped model runs on, why a CUDA GPU is not used when it is not, and a timed one-tile test on every
device, run off the GUI thread in the engine's interpreter."""
import json

from qgis.PyQt.QtGui import QFontDatabase
from qgis.PyQt.QtWidgets import QDialog, QDialogButtonBox, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout

from rs_qgis_plugin.engine_job import EngineJob
from rs_qgis_plugin.settings import engine_python
from rs_qgis_plugin.worker_client import run_engine_module

DOCTOR_TIMEOUT_S = 600  # loads every shipped model once on a GPU machine


def engine_diagnosis(feedback=None) -> dict:
    """The doctor's diagnosis as JSON; its module runs even where onnxruntime cannot be imported."""
    return json.loads(run_engine_module("engine.doctor", ["--json"], DOCTOR_TIMEOUT_S))


class DiagnosticsDialog(QDialog):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Remote Sensing AI Toolbox: Diagnostics")
        self.resize(760, 520)
        self.python_label = QLabel()
        self.python_label.setWordWrap(True)
        self.report_view = QPlainTextEdit()
        self.report_view.setReadOnly(True)
        self.report_view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.rerun_button = QPushButton("Run again")
        self.rerun_button.clicked.connect(self.run_diagnosis)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        buttons.addButton(self.rerun_button, QDialogButtonBox.ButtonRole.ActionRole)
        layout = QVBoxLayout(self)
        for widget in (self.python_label, self.report_view, buttons):
            layout.addWidget(widget)
        self.job = None
        self.diagnosis = None

    def run_diagnosis(self) -> None:
        if self.job is not None and self.job.isRunning():
            return
        self.python_label.setText(f"Engine interpreter: {engine_python()}")
        self.report_view.setPlainText("Testing the engine's devices (one tile on each)…")
        self.rerun_button.setEnabled(False)
        self.job = EngineJob(engine_diagnosis, self)
        self.job.succeeded.connect(self.show_diagnosis)
        self.job.failed.connect(self.show_failure)
        self.job.finished.connect(lambda: self.rerun_button.setEnabled(True))
        self.job.start()

    def show_diagnosis(self, diagnosis: dict) -> None:
        self.diagnosis = diagnosis
        self.report_view.setPlainText(diagnosis["report"])

    def show_failure(self, message: str) -> None:
        self.diagnosis = None
        self.report_view.setPlainText(f"The engine could not be diagnosed:\n{message}\n\nSet the engine up with "
                                      "Plugins > Remote Sensing AI Toolbox > Engine set-up.")

    def is_busy(self) -> bool:
        return self.job is not None and self.job.isRunning()

    def done(self, result):  # noqa: D102 (Qt API): wait for a running diagnosis rather than lose its thread
        if self.job is not None:
            self.job.wait()
        super().done(result)

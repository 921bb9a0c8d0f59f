"""The Diagnostics view offscreen with the real engine interpreter, and with one that does not exist;
the device is named in an algorithm's log."""
import time

import pytest

from engine.doctor import ldconfig_cache, nvidia_driver

TIMEOUT_S = 300


def wait_for(dialog) -> None:
    from qgis.PyQt.QtCore import QCoreApplication

    deadline = time.monotonic() + TIMEOUT_S
    QCoreApplication.processEvents()
    while dialog.is_busy():
        assert time.monotonic() < deadline, dialog.report_view.toPlainText()
        QCoreApplication.processEvents()
        time.sleep(0.02)
    QCoreApplication.processEvents()


@pytest.mark.skipif(nvidia_driver(ldconfig_cache())[0] is not None, reason="this machine has an NVIDIA driver")
def test_diagnostics_show_the_device_of_each_model_why_not_cuda_and_a_timed_tile(qgis_app):
    from rs_qgis_plugin.diagnostics_dialog import DiagnosticsDialog

    dialog = DiagnosticsDialog()
    dialog.run_diagnosis()
    wait_for(dialog)
    text = dialog.report_view.toPlainText()
    assert dialog.diagnosis is not None, text
    assert "Why CUDA is not used: No NVIDIA driver" in text
    assert "cpu: ran on CPUExecutionProvider" in text and " ms a tile" in text
    assert "bathymetry_s2_sim.onnx: CPUExecutionProvider" in text
    dialog.close()


def test_diagnostics_without_an_engine_say_how_to_set_it_up(qgis_app, monkeypatch, tmp_path):
    from rs_qgis_plugin.diagnostics_dialog import DiagnosticsDialog

    monkeypatch.setenv("RSAI_PYTHON", str(tmp_path / "no-python"))
    dialog = DiagnosticsDialog()
    dialog.run_diagnosis()
    wait_for(dialog)
    text = dialog.report_view.toPlainText()
    assert dialog.diagnosis is None
    assert f"Cannot start the engine with the Python interpreter '{tmp_path / 'no-python'}'" in text
    assert "Engine set-up" in text
    dialog.close()


def test_an_algorithm_names_the_device_in_its_log(rsai_provider, tmp_path):
    import processing
    from qgis.core import QgsProcessingFeedback

    from conftest import REPO_ROOT

    class Log(QgsProcessingFeedback):
        lines = []

        def pushInfo(self, info):  # noqa: N802 (QGIS API)
            self.lines.append(info)

    feedback = Log()
    processing.run("rsai:estimate_bathymetry", {"INPUT": str(REPO_ROOT / "sample_data" / "agia_napa_sim_s2.tif"),
                                                "OUTPUT": str(tmp_path / "depth.tif")}, feedback=feedback)
    device_lines = [line for line in feedback.lines if line.startswith("Device: ")]
    assert device_lines and device_lines[0].startswith("Device: CPUExecutionProvider")

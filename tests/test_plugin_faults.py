"""Faults named right in QGIS (issue #14): a worker that dies gets the right advice (real engine worker
processes started by the plugin's client, ended by real signals mid-task or while idle, and
interpreters that cannot start it), and a raster file that does not open is not reported "not found"."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from raster_fixtures import contract, scene, write_model, write_raster

BANDS = ("B02", "B03", "B04")
SETTING = "Settings > Options > Processing"


@pytest.fixture
def long_task(tmp_path):
    """Parameters of a bathymetry run long enough (16 px tiles over 1024 x 1024 px) to be stopped midway."""
    image = write_raster(tmp_path / "large.tif", scene(1024, 1024), descriptions=BANDS)
    model = write_model(tmp_path / "small_tiles.onnx", contract(tile=16, overlap=4), [[1.0, 0.0, 0.0]], [0.0])
    return {"input": image, "model": model, "output": str(tmp_path / "depth.tif")}


def interpreter(folder: Path, script: str) -> str:
    """An executable interpreter wrapper (as conda or module systems install them)."""
    path = folder / "python-wrapper"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return str(path)


def child_of(pid: int) -> int:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def stopped_midway(worker, params: dict, send) -> str:
    """Run the task; at its first progress event call ``send()`` (which signals a process); return the
    message the user gets."""
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    feedback = QgsProcessingFeedback()
    sent = []
    feedback.progressChanged.connect(lambda progress: sent or sent.append(send()))
    with pytest.raises(QgsProcessingException) as stopped:
        worker.run("estimate_bathymetry", params, feedback)
    assert sent, "the task ended before it could be stopped"
    return str(stopped.value)


def test_sigkill_mid_task_names_the_signal_and_memory(rsai_provider, long_task, tmp_path):
    from rs_qgis_plugin.worker_client import EngineWorker

    with EngineWorker(sys.executable) as worker:
        message = stopped_midway(worker, long_task, lambda: os.kill(worker._process.pid, signal.SIGKILL))
    assert message.startswith(f"The engine ({sys.executable} -m engine.worker) was killed by signal SIGKILL. ")
    assert "out-of-memory killer" in message and "smaller tile size" in message and "--batch-size 1" in message
    assert SETTING not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["large.tif", "small_tiles.onnx"]


def test_sigkill_while_idle_is_named_at_the_next_request(rsai_provider):
    from qgis.core import QgsProcessingException

    from rs_qgis_plugin.worker_client import EngineWorker

    with EngineWorker(sys.executable) as worker:
        os.kill(worker._process.pid, signal.SIGKILL)
        worker._process.wait()
        with pytest.raises(QgsProcessingException, match=r"was killed by signal SIGKILL\. Linux's out-of-memory "
                                                         "killer ends a process this way"):
            worker.run("describe_model", {"task": "estimate_bathymetry"})


def test_sigterm_mid_task_names_the_signal_and_quotes_the_engines_last_words(rsai_provider, long_task):
    from rs_qgis_plugin.worker_client import EngineWorker

    with EngineWorker(sys.executable) as worker:
        message = stopped_midway(worker, long_task, lambda: os.kill(worker._process.pid, signal.SIGTERM))
    assert "was stopped by signal SIGTERM (exit code 143). Another program or the system asked it to stop" in message
    assert message.endswith("Last engine output:\nengine worker stopped by signal SIGTERM")
    assert SETTING not in message


def test_an_interpreter_wrapper_reports_the_signal_its_engine_died_of(rsai_provider, long_task, tmp_path):
    from rs_qgis_plugin.worker_client import EngineWorker

    wrapper = interpreter(tmp_path, f'"{sys.executable}" "$@"\n')  # not exec'd: the shell reports 128 + signal
    with EngineWorker(wrapper) as worker:
        message = stopped_midway(worker, long_task,
                                 lambda: os.kill(child_of(worker._process.pid), signal.SIGKILL))
    assert "was killed by signal SIGKILL (exit code 137). Linux's out-of-memory killer" in message


def test_an_exit_code_mid_task_is_reported_as_a_failure_to_report(rsai_provider, long_task, tmp_path):
    from rs_qgis_plugin.worker_client import EngineWorker

    wrapper = interpreter(tmp_path, f'"{sys.executable}" "$@"\necho "wrapper: the engine ended" >&2\nexit 3\n')
    with EngineWorker(wrapper) as worker:
        message = stopped_midway(worker, long_task,
                                 lambda: os.kill(child_of(worker._process.pid), signal.SIGKILL))
    assert "exited with code 3 in the middle of the task: a bug in the engine or a library it uses" in message
    assert message.endswith("wrapper: the engine ended") and SETTING not in message


def test_an_interpreter_that_cannot_start_the_engine_gets_the_setting_hint(rsai_provider, tmp_path):
    from qgis.core import QgsProcessingException

    from rs_qgis_plugin.worker_client import EngineWorker

    wrapper = interpreter(tmp_path, 'echo "conda: environment rsai not found" >&2\nexit 3\n')
    with EngineWorker(wrapper) as worker:
        with pytest.raises(QgsProcessingException) as stopped:
            worker.run("describe_model", {"task": "estimate_bathymetry"})
    message = str(stopped.value)
    assert "stopped unexpectedly while starting, with exit code 3: that interpreter cannot run the engine" in message
    assert SETTING in message and message.endswith("Last engine output:\nconda: environment rsai not found")


@pytest.mark.parametrize("algorithm, parameter, value", [
    ("rsai:estimate_bathymetry", "INPUT", "GARBAGE"),
    ("rsai:classify_scenes", "S2", ["GARBAGE"]),
])
def test_a_raster_file_that_does_not_open_is_named_as_damaged_not_missing(rsai_provider, tmp_path, algorithm,
                                                                          parameter, value):
    import processing
    from qgis.core import QgsProcessingException

    garbage = tmp_path / "scene.tif"
    garbage.write_bytes(b"II*\x00" + bytes(range(256)) * 40)  # a TIFF header, then no TIFF
    value = [str(garbage)] if isinstance(value, list) else str(garbage)
    output = tmp_path / ("out.gpkg" if algorithm.endswith("scenes") else "out.tif")
    with pytest.raises(QgsProcessingException, match=rf"{garbage} exists but does not open as a raster \(.*"
                                                     r"TIFFReadDirectory.*\)\. The file is damaged .* or is not a "
                                                     "raster: check that it is the right file, or export or fetch"):
        processing.run(algorithm, {parameter: value, "OUTPUT": str(output)})
    assert not output.exists()

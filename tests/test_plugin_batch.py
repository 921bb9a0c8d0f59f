"""Batch over files in real QGIS: qgis_process over a folder of scenes, and cancel from Processing."""
import json
import os

import pytest

from engine.batch_manifest import MANIFEST_NAME
from raster_fixtures import contract, write_model
from test_batch import assert_same_raster, partials, single_run, write_scenes


@pytest.fixture(scope="module")
def depth_model(tmp_path_factory):
    return write_model(tmp_path_factory.mktemp("model") / "depth.onnx", contract(), [[0.5, -2.0, 1.0]], [3.0])


@pytest.mark.slow
def test_qgis_process_runs_a_folder_of_scenes_and_resumes(qgis_process, depth_model, tmp_path):
    paths = write_scenes(tmp_path / "scenes", count=4)
    (tmp_path / "scenes" / "north" / "broken.tif").write_bytes(b"II*\x00 truncated")
    arguments = ("run", "rsai:batch_over_files", "--", f"FOLDER={tmp_path / 'scenes'}", "PATTERN=**/*.tif",
                 "TASK=0", f"MODEL={depth_model}", "DEVICE=1", "WORKERS=2", f"OUTPUT_DIR={tmp_path / 'out'}")
    run = qgis_process(*arguments)
    assert run.returncode == 0, run.log
    results = run.output["results"]
    assert (results["DONE"], results["FAILED"], results["SKIPPED"]) == (4, 1, 0)
    assert results["MANIFEST"] == str(tmp_path / "out" / MANIFEST_NAME) and "broken.tif" in run.log
    for path in paths:
        assert_same_raster(tmp_path / "out" / os.path.relpath(path, tmp_path / "scenes"),
                           single_run(path, tmp_path / "reference.tif", depth_model))
    again = qgis_process(*arguments, "SKIP_FAILED=true")
    assert (again.output["results"]["DONE"], again.output["results"]["SKIPPED"]) == (0, 5), again.log


def test_cancel_stops_the_ray_tasks_and_keeps_the_finished_scenes(rsai_provider, depth_model, tmp_path):
    import processing
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    write_scenes(tmp_path / "scenes", count=10, size=(600, 600))
    manifest = tmp_path / "out" / MANIFEST_NAME
    feedback = QgsProcessingFeedback()
    feedback.progressChanged.connect(
        lambda progress: feedback.cancel() if manifest.is_file() and manifest.read_text().count("\n") >= 2 else None)
    parameters = {"FOLDER": str(tmp_path / "scenes"), "TASK": 0, "MODEL": depth_model, "DEVICE": 1, "WORKERS": 1,
                  "MAX_IN_FLIGHT": 1, "OUTPUT_DIR": str(tmp_path / "out")}
    try:
        results = processing.run("rsai:batch_over_files", parameters, feedback=feedback)
        assert 2 <= results["DONE"] < 10
    except QgsProcessingException as error:  # the engine took longer than the cancel grace to answer
        assert "scenes that finished are kept" in str(error)
    finished = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert 2 <= len(finished) < 10 and all(r["status"] == "done" for r in finished)
    assert not partials(tmp_path / "out")
    resumed = processing.run("rsai:batch_over_files", parameters)
    assert (resumed["DONE"], resumed["SKIPPED"]) == (10 - len(finished), len(finished))

"""The plugin in a real QGIS desktop under Xvfb, with the real iface: installed from its zip into a fresh
profile, initGui and unload run, its toolbar button and menu entries appear and go, the search dock,
the Engine set-up dialog and the Diagnostics open (a screenshot of each is saved under $RSAI_ARTEFACTS,
default artefacts/gui/), and reloading the plugin leaves no engine worker behind.
tests/gui_driver.py does the driving inside QGIS."""
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO_ROOT

MENU_ENTRIES = ["Search layers by text", "Engine set-up…", "Diagnostics…"]
DESKTOP_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def desktop_run(tmp_path_factory) -> dict:
    if shutil.which("xvfb-run") is None or shutil.which("qgis") is None:
        pytest.fail("xvfb-run and qgis are needed: run scripts/setup.sh (it installs xvfb)")
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    from package_plugin import build

    work = tmp_path_factory.mktemp("desktop")
    profile = work / "profiles" / "default"
    plugins = profile / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(build(work / "dist")) as bundle:  # Plugins > Install from ZIP
        bundle.extractall(plugins)
    (profile / "QGIS").mkdir()
    (profile / "QGIS" / "QGIS3.ini").write_text("[PythonPlugins]\nrs_qgis_plugin=true\n")
    artefacts = Path(os.environ.get("RSAI_ARTEFACTS") or REPO_ROOT / "artefacts") / "gui"
    artefacts.mkdir(parents=True, exist_ok=True)
    results = work / "results.json"
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("QT_QPA_PLATFORM", "QGIS_PLUGINPATH", "QGIS_CUSTOM_CONFIG_PATH", "PYTHONPATH")}
    environment.update(RSAI_ARTEFACTS=str(artefacts), RSAI_GUI_RESULTS=str(results),
                       RSAI_PYTHON=str(REPO_ROOT / ".venv" / "bin" / "python"))  # an engine that is set up
    done = subprocess.run(
        ["xvfb-run", "--auto-servernum", "--server-args=-screen 0 1600x1000x24", "qgis", "--nologo",
         "--noversioncheck", "--profiles-path", str(work), "--code", str(REPO_ROOT / "tests" / "gui_driver.py")],
        env=environment, capture_output=True, text=True, timeout=DESKTOP_TIMEOUT_S, cwd=work)
    assert results.exists(), f"QGIS wrote no results (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    found = json.loads(results.read_text())
    assert "error" not in found, found.get("error")
    return {**found, "plugins": str(plugins)}


def test_the_plugin_loads_from_the_zip_and_init_gui_adds_its_entries(desktop_run):
    assert desktop_run["loaded"]
    assert desktop_run["loaded_from"] == str(Path(desktop_run["plugins"]) / "rs_qgis_plugin")
    assert "Search layers by text" in desktop_run["after_init"]["toolbar"]
    assert desktop_run["after_init"]["menu"] == MENU_ENTRIES


def test_the_dock_the_setup_dialog_and_the_diagnostics_open_with_screenshots(desktop_run):
    from qgis.PyQt.QtGui import QImage

    assert desktop_run["dock_visible"]
    assert desktop_run["setup_title"].startswith("Engine set-up")
    assert "cpu: ran on CPUExecutionProvider" in desktop_run["diagnostics"]
    for name, least_height in (("search_dock", 100), ("engine_setup", 100), ("diagnostics", 100),
                               ("main_window", 100), ("first_use", 20)):  # the message bar is one line high
        image = QImage(desktop_run["screenshots"][name])
        assert not image.isNull() and image.width() > 100 and image.height() > least_height, name


def test_without_an_engine_the_plugin_offers_the_set_up(desktop_run):
    assert desktop_run["first_use_messages"] == ["The engine that runs the models is not set up yet."]


def test_reloading_leaves_no_worker_and_unloading_removes_the_entries(desktop_run):
    dock_worker = desktop_run["workers_before_reload"]
    assert len(dock_worker) == 1  # the dock's engine, started for the check
    assert dock_worker[0] not in desktop_run["workers_after_reload"]  # gone with the unloaded plugin at once
    assert desktop_run["workers_settled_after_reload"] == []
    assert desktop_run["after_reload"]["menu"] == MENU_ENTRIES  # initGui ran again
    assert desktop_run["after_unload"]["menu"] == []
    assert "Search layers by text" not in desktop_run["after_unload"]["toolbar"]
    assert desktop_run["workers_after_unload"] == []

"""Shared fixtures: a real QGIS (headless) with Processing and the rsai provider, and qgis_process
runs with this checkout's plugin enabled."""
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before anything loads Qt
# tile tuning (engine/tile_plan.py) is cached here, not in the user's cache folder
os.environ.setdefault("RSAI_CACHE_DIR", tempfile.mkdtemp(prefix="rsai-test-cache-"))

REPO_ROOT = Path(__file__).resolve().parent.parent
QGIS_PYTHON_PLUGINS = "/usr/share/qgis/python/plugins"  # holds QGIS's own processing plugin


@pytest.fixture(scope="session")
def qgis_app():
    """One QgsApplication for the session, with Processing initialised."""
    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    app.initQgis()
    if QGIS_PYTHON_PLUGINS not in sys.path:
        sys.path.append(QGIS_PYTHON_PLUGINS)
    from processing.core.Processing import Processing

    Processing.initialize()
    return app


@pytest.fixture(scope="session")
def rsai_provider(qgis_app):
    """The plugin's provider, registered once (registering an id twice deletes the Python object;
    the fixture's reference keeps the Python object, and so its algorithms, alive)."""
    from qgis.core import QgsApplication

    from rs_qgis_plugin.provider import RemoteSensingAIProvider

    provider = RemoteSensingAIProvider()
    assert QgsApplication.processingRegistry().addProvider(provider)
    yield provider
    QgsApplication.processingRegistry().removeProvider(provider)


@dataclass
class QgisProcessRun:
    returncode: int
    output: dict | None  # the parsed --json output (with a "results" key on success)
    log: str  # stdout and stderr, for assertion messages


@pytest.fixture(scope="session")
def qgis_process(tmp_path_factory):
    """Run ``qgis_process.bin --json ARGS...`` with the plugin in ``plugin_folder`` enabled in a
    private profile; by default the plugin of this checkout."""
    profile = tmp_path_factory.mktemp("qgis_profile")
    settings = profile / "profiles" / "default" / "QGIS" / "QGIS3.ini"
    settings.parent.mkdir(parents=True)
    settings.write_text("[PythonPlugins]\nrs_qgis_plugin=true\n")

    def run(*args: str, plugin_folder: Path = REPO_ROOT) -> QgisProcessRun:
        environment = dict(
            os.environ,
            QGIS_PLUGINPATH=str(plugin_folder),
            QGIS_CUSTOM_CONFIG_PATH=str(profile),
            QT_QPA_PLATFORM="offscreen",
        )
        completed = subprocess.run(
            ["qgis_process.bin", "--json", *args],
            env=environment, capture_output=True, text=True, timeout=600,
        )
        start = completed.stdout.find("{")
        try:
            output = json.loads(completed.stdout[start:]) if start >= 0 else None
        except json.JSONDecodeError:
            output = None
        return QgisProcessRun(completed.returncode, output, completed.stdout + completed.stderr)

    return run

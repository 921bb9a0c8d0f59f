"""Run inside a real QGIS desktop (``qgis --code tests/gui_driver.py``) by tests/test_gui_desktop.py:
drives the plugin through the real ``iface``, saves a screenshot of each part under
$RSAI_ARTEFACTS and writes what it found to $RSAI_GUI_RESULTS (JSON), then quits QGIS."""
import json
import os
import sys
import time
import traceback
from pathlib import Path

import qgis.utils
from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QCoreApplication, QTimer

PLUGIN = "rs_qgis_plugin"
MENU = "&Remote Sensing AI Toolbox"
ARTEFACTS = Path(os.environ["RSAI_ARTEFACTS"])
WAIT_S = 240


def wait_until(done, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen in {WAIT_S} s")
        QCoreApplication.processEvents()
        time.sleep(0.02)
    QCoreApplication.processEvents()


def screenshot(widget, name: str) -> str:
    QCoreApplication.processEvents()
    path = ARTEFACTS / f"{name}.png"
    widget.grab().save(str(path))
    return str(path)


def plugin_entries(iface) -> dict:
    """The plugin's toolbar buttons and menu entries as QGIS shows them."""
    toolbar = [action.text() for action in iface.pluginToolBar().actions()]
    menus = [action for action in iface.pluginMenu().actions() if action.text() == MENU and action.menu()]
    menu = [action.text() for action in menus[0].menu().actions()] if menus else []
    return {"toolbar": toolbar, "menu": menu}


def engine_workers() -> list[int]:
    """Processes this QGIS started that run the engine worker."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        parent = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:"))
        state = next(line.split()[1] for line in status.splitlines() if line.startswith("State:"))
        if parent == os.getpid() and "engine.worker" in command and state != "Z":
            found.append(int(entry.name))
    return found


def settled_workers() -> list[int]:
    """The engine workers left once the plugin's own short requests (the model listing) have ended."""
    deadline = time.monotonic() + WAIT_S
    while engine_workers() and time.monotonic() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.1)
    return engine_workers()


def drive() -> dict:
    iface = qgis.utils.iface
    results = {"loaded": PLUGIN in qgis.utils.active_plugins, "screenshots": {}}
    plugin = qgis.utils.plugins[PLUGIN]
    results["loaded_from"] = str(Path(sys.modules[PLUGIN].__file__).parent)
    results["after_init"] = plugin_entries(iface)
    # the search dock, from its toolbar button
    toggle = next(a for a in iface.pluginToolBar().actions() if a.text() == "Search layers by text")
    toggle.trigger()
    wait_until(plugin.search_dock.isVisible, "the search dock showing")
    results["dock_visible"] = plugin.search_dock.isVisible()
    results["screenshots"]["search_dock"] = screenshot(plugin.search_dock, "search_dock")
    # the engine set-up dialog, from its menu entry
    menu = next(a for a in iface.pluginMenu().actions() if a.text() == MENU).menu()
    next(a for a in menu.actions() if a.text() == "Engine set-up…").trigger()
    wait_until(lambda: plugin.setup_dialog is not None and plugin.setup_dialog.isVisible(), "the set-up dialog")
    results["setup_title"] = plugin.setup_dialog.windowTitle()
    results["screenshots"]["engine_setup"] = screenshot(plugin.setup_dialog, "engine_setup")
    # the diagnostics, from its menu entry, once the engine has answered
    next(a for a in menu.actions() if a.text() == "Diagnostics…").trigger()
    diagnostics = next(iter(plugin.dialogs.values()))
    wait_until(lambda: not diagnostics.is_busy(), "the diagnosis")
    results["diagnostics"] = diagnostics.report_view.toPlainText()
    results["screenshots"]["diagnostics"] = screenshot(diagnostics, "diagnostics")
    results["screenshots"]["main_window"] = screenshot(iface.mainWindow(), "main_window")
    # a worker serving the dock, then a reload: the worker must go with the old plugin object
    plugin.search_dock.engine().run("installed_models", {})
    results["workers_before_reload"] = engine_workers()
    qgis.utils.reloadPlugin(PLUGIN)
    wait_until(lambda: PLUGIN in qgis.utils.plugins, "the reload")
    results["workers_after_reload"] = engine_workers()  # the new plugin's model listing may run one briefly
    results["workers_settled_after_reload"] = settled_workers()
    results["after_reload"] = plugin_entries(iface)
    # first use: with no engine named or set up, loading the plugin offers the Engine set-up
    iface.messageBar().clearWidgets()
    del os.environ["RSAI_PYTHON"]
    qgis.utils.reloadPlugin(PLUGIN)
    QCoreApplication.processEvents()
    results["first_use_messages"] = [item.text() for item in iface.messageBar().items()]
    results["screenshots"]["first_use"] = screenshot(iface.messageBar(), "first_use_message")
    qgis.utils.unloadPlugin(PLUGIN)
    QCoreApplication.processEvents()
    results["after_unload"] = plugin_entries(iface)
    results["workers_after_unload"] = settled_workers()
    return results


def main() -> None:
    try:
        results = drive()
    except Exception:  # reported to the test, which shows it
        results = {"error": traceback.format_exc()}
    Path(os.environ["RSAI_GUI_RESULTS"]).write_text(json.dumps(results, indent=2))
    QTimer.singleShot(0, QgsApplication.instance().quit)  # --code runs before QGIS's event loop starts


main()

"""The plugin object QGIS loads: it registers the Processing provider and, in the QGIS desktop, adds
the text-search dock (toolbar button and menu entry that show and hide it) and the Diagnostics view
(menu entry)."""
from qgis.core import QgsApplication, QgsProject
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QAction

from rs_qgis_plugin.diagnostics_dialog import DiagnosticsDialog
from rs_qgis_plugin.provider import RemoteSensingAIProvider
from rs_qgis_plugin.search_dock import SearchDock

MENU = "&Remote Sensing AI Toolbox"


class RemoteSensingAIPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider = None
        self.search_dock = None
        self.menu_actions = []  # the plugin's own menu entries (the dock's toggle action is the dock's)
        self.dialogs = {}  # open dialogs by class, kept while the plugin is loaded

    def initProcessing(self):  # noqa: N802 (name fixed by QGIS; qgis_process calls it headless)
        self.provider = RemoteSensingAIProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802 (name fixed by QGIS)
        self.initProcessing()
        self.search_dock = SearchDock(self.iface.mapCanvas(), QgsProject.instance(), self.iface.mainWindow())
        self.iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.search_dock)
        self.search_dock.hide()
        action = self.search_dock.toggleViewAction()
        action.setText("Search layers by text")
        action.setIcon(QgsApplication.getThemeIcon("/search.svg"))
        self.iface.addToolBarIcon(action)
        self.iface.addPluginToMenu(MENU, action)
        self.add_menu_action("Diagnostics…", "/mIconInfo.svg", self.show_diagnostics)

    def add_menu_action(self, text: str, icon: str, slot) -> QAction:
        action = QAction(QgsApplication.getThemeIcon(icon), text, self.iface.mainWindow())
        action.triggered.connect(slot)
        self.iface.addPluginToMenu(MENU, action)
        self.menu_actions.append(action)
        return action

    def show_dialog(self, dialog_class):
        """The one dialog of ``dialog_class``, shown and raised."""
        if dialog_class not in self.dialogs:
            self.dialogs[dialog_class] = dialog_class(self.iface.mainWindow())
        dialog = self.dialogs[dialog_class]
        dialog.show()
        dialog.raise_()
        return dialog

    def show_diagnostics(self):
        self.show_dialog(DiagnosticsDialog).run_diagnosis()

    def unload(self):
        for action in self.menu_actions:
            self.iface.removePluginMenu(MENU, action)
            action.deleteLater()
        self.menu_actions = []
        for dialog in self.dialogs.values():
            dialog.close()
            dialog.deleteLater()
        self.dialogs = {}
        if self.search_dock is not None:
            action = self.search_dock.toggleViewAction()
            self.iface.removeToolBarIcon(action)
            self.iface.removePluginMenu(MENU, action)
            self.iface.removeDockWidget(self.search_dock)
            self.search_dock.close_engine()
            self.search_dock.deleteLater()
            self.search_dock = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None

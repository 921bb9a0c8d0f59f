"""The plugin object QGIS loads: it registers the Processing provider and, in the QGIS desktop, adds
the text-search dock with a toolbar button and a menu entry that show and hide it."""
from qgis.core import QgsApplication, QgsProject
from qgis.PyQt.QtCore import Qt

from rs_qgis_plugin.provider import RemoteSensingAIProvider
from rs_qgis_plugin.search_dock import SearchDock

MENU = "&Remote Sensing AI Toolbox"


class RemoteSensingAIPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider = None
        self.search_dock = None

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

    def unload(self):
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

"""The plugin object QGIS loads: it registers the Processing provider and, in the QGIS desktop, adds
the text-search dock (toolbar button and menu entry that show and hide it), the Engine set-up dialog
(the dialog of rsai:setup_engine, offered on first use while no engine is set up) and the Diagnostics
view (menu entries)."""
from qgis.core import Qgis, QgsApplication, QgsProject
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QPushButton

try:
    from qgis.PyQt.QtGui import QAction  # Qt 6 (QGIS 4)
except ImportError:
    from qgis.PyQt.QtWidgets import QAction  # Qt 5

from rs_qgis_plugin.diagnostics_dialog import DiagnosticsDialog
from rs_qgis_plugin.provider import RemoteSensingAIProvider
from rs_qgis_plugin.search_dock import SearchDock
from rs_qgis_plugin.engine_setup import outdated_engine
from rs_qgis_plugin.settings import engine_environment_dir, engine_is_set_up, engine_wheel

MENU = "&Remote Sensing AI Toolbox"
SETUP_ALGORITHM = "rsai:setup_engine"


class RemoteSensingAIPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider = None
        self.search_dock = None
        self.menu_actions = []  # the plugin's own menu entries (the dock's toggle action is the dock's)
        self.dialogs = {}  # open dialogs by class, kept while the plugin is loaded
        self.setup_dialog = None

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
        self.add_menu_action("Engine set-up…", "/processingAlgorithm.svg", self.show_engine_setup)
        self.add_menu_action("Diagnostics…", "/mIconInfo.svg", self.show_diagnostics)
        if not engine_is_set_up():
            self.offer_engine_setup("The engine that runs the models is not set up yet.")
        elif outdated_engine(engine_environment_dir(), engine_wheel()):
            self.offer_engine_setup(outdated_engine(engine_environment_dir(), engine_wheel()))

    def offer_engine_setup(self, reason: str):
        """First use, or the first after a plugin update: a message bar entry that opens the Engine set-up."""
        bar = self.iface.messageBar()
        message = bar.createMessage("Remote Sensing AI Toolbox", reason)
        button = QPushButton("Engine set-up…", message)
        button.clicked.connect(self.show_engine_setup)
        message.layout().addWidget(button)
        bar.pushWidget(message, Qgis.MessageLevel.Info)

    def show_engine_setup(self):
        """The dialog of rsai:setup_engine: its parameters, a progress bar and the log."""
        import processing

        if self.setup_dialog is None:
            self.setup_dialog = processing.createAlgorithmDialog(SETUP_ALGORITHM)
        self.setup_dialog.show()
        self.setup_dialog.raise_()
        return self.setup_dialog

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
        if self.setup_dialog is not None:
            self.setup_dialog.close()
            self.setup_dialog.deleteLater()
            self.setup_dialog = None
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

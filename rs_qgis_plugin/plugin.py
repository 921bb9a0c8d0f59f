"""The plugin object QGIS loads: it only registers the Processing provider."""
from qgis.core import QgsApplication

from rs_qgis_plugin.provider import RemoteSensingAIProvider


class RemoteSensingAIPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider = None

    def initProcessing(self):  # noqa: N802 (name fixed by QGIS; qgis_process calls it headless)
        self.provider = RemoteSensingAIProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802 (name fixed by QGIS)
        self.initProcessing()

    def unload(self):
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None

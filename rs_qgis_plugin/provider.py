"""The Processing provider ``rsai``: registers the algorithms and the engine settings."""
from qgis.core import QgsProcessingProvider

from rs_qgis_plugin.algorithms.batch_over_files import BatchOverFiles
from rs_qgis_plugin.algorithms.build_search_index import BuildSearchIndex
from rs_qgis_plugin.algorithms.classify_scenes import ClassifyScenes
from rs_qgis_plugin.algorithms.classify_seabed import ClassifySeabed
from rs_qgis_plugin.algorithms.compress_hyperspectral import CompressHyperspectral
from rs_qgis_plugin.algorithms.decompress_hyperspectral import DecompressHyperspectral
from rs_qgis_plugin.algorithms.download_model import DownloadModel
from rs_qgis_plugin.algorithms.estimate_bathymetry import EstimateBathymetry
from rs_qgis_plugin.algorithms.import_model import ImportModel
from rs_qgis_plugin.algorithms.map_crops import MapCrops
from rs_qgis_plugin.algorithms.run_onnx_model import RunOnnxModel
from rs_qgis_plugin.algorithms.search_changes import SearchChanges
from rs_qgis_plugin.algorithms.search_similar import SearchSimilar
from rs_qgis_plugin.algorithms.search_text import SearchText
from rs_qgis_plugin.algorithms.setup_engine import SetupEngine
from rs_qgis_plugin.settings import add_settings, remove_settings


class RemoteSensingAIProvider(QgsProcessingProvider):
    def id(self):
        return "rsai"

    def name(self):
        return "Remote Sensing AI Toolbox"

    def longName(self):  # noqa: N802 (QGIS API)
        return "Remote Sensing AI Toolbox (ONNX models run by an external engine)"

    def load(self):
        add_settings(self.name())
        self.refreshAlgorithms()
        return True

    def unload(self):
        remove_settings()

    def loadAlgorithms(self):  # noqa: N802 (QGIS API)
        for algorithm in (EstimateBathymetry(), ClassifySeabed(), RunOnnxModel(), CompressHyperspectral(),
                          BatchOverFiles(),
                          DecompressHyperspectral(), ClassifyScenes(), MapCrops(), BuildSearchIndex(),
                          SearchText(), SearchSimilar(), SearchChanges(), DownloadModel(), ImportModel(),
                          SetupEngine()):
            self.addAlgorithm(algorithm)

    def supportedOutputRasterLayerExtensions(self):  # noqa: N802 (QGIS API)
        return ["tif"]  # the engine writes GeoTIFF only

    def supportedOutputVectorLayerExtensions(self):  # noqa: N802 (QGIS API)
        return ["gpkg"]  # the engine writes GeoPackage only

    def defaultVectorFileExtension(self, has_geometry=True):  # noqa: N802 (QGIS API)
        return "gpkg"

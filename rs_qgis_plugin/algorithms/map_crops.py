"""Processing algorithm: crop classes from Sentinel-2 (and Sentinel-1) time series with TSViT."""
from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterString,
)

from rs_qgis_plugin.algorithms.model_algorithm import ModelAlgorithm
from rs_qgis_plugin.algorithms.uncertainty_output import UncertaintyOutput
from rs_qgis_plugin.output_styles import style_for
from rs_qgis_plugin.raster_input import readable_file
from rs_qgis_plugin.worker_client import EngineWorker


def parse_dates(text: str) -> list[str] | None:
    dates = [d.strip() for d in text.replace(";", ",").split(",") if d.strip()]
    return dates or None


class MapCrops(UncertaintyOutput, ModelAlgorithm):
    S2, S1, DATES_S2, DATES_S1, RESAMPLE, TILES = "S2", "S1", "DATES_S2", "DATES_S1", "RESAMPLE", "TILES"
    task = "map_crops"
    model_tasks = ("crop_map",)
    display_name = "Map crops from time series (TSViT)"
    group_name, group_id = "Land cover", "land_cover"
    help_text = (
        "Maps crop classes per pixel from a Sentinel-2 image time series, optionally with a "
        "Sentinel-1 series, with a multi-temporal vision transformer (TSViT, Tarasiou et al. "
        "2023; multi-modal fusions after the IGARSS 2024 paper). Each series is one layer per "
        "date or one stack whose band descriptions hold the date ('2023-04-15 B02'). Dates come "
        "from file names (S2_20230415.tif), band descriptions, file tags, or the dates "
        "parameters; the two series may have different dates and counts. Clouds and nodata are "
        "masked per pixel and date.\n\nThe shipped model was trained on simulated phenology "
        "(see its model card in models_onnx/)."
    )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.add_parameter(
            QgsProcessingParameterMultipleLayers(self.S2, "Sentinel-2 time series", QgsProcessing.SourceType.TypeRaster),
            "One layer per date, or a stack with dated band descriptions. Bands as the model lists "
            "them (reflectance x 10000). The first date's grid is the output grid.")
        self.add_parameter(
            QgsProcessingParameterMultipleLayers(self.S1, "Sentinel-1 time series", QgsProcessing.SourceType.TypeRaster,
                                                 optional=True),
            "For models that use Sentinel-1: one layer per date or a dated stack; reprojected and "
            "resampled onto the Sentinel-2 grid. A missing VV/VH band is computed from VV and VH (dB).")
        self.add_parameter(
            QgsProcessingParameterString(self.DATES_S2, "Sentinel-2 dates", optional=True),
            "Acquisition dates, YYYY-MM-DD separated by commas, one per Sentinel-2 layer in order. "
            "Only needed when file names, band descriptions and tags carry no date.")
        self.add_parameter(QgsProcessingParameterString(self.DATES_S1, "Sentinel-1 dates", optional=True),
                           "As for Sentinel-2, one per Sentinel-1 layer.")
        self.add_model_parameter(
            "A time-series model exported by the toolbox. Empty: models_onnx/crop_tsvit_s1s2_sim.onnx.",
            default_model="crop_tsvit_s1s2_sim.onnx")
        self.add_extent_parameter("Area to map. Empty: the first Sentinel-2 layer's extent.")
        self.add_parameter(
            QgsProcessingParameterBoolean(self.RESAMPLE, "Resample to the model's resolution", False),
            "Resample to the ground sampling distance the model was trained at (10 m for the shipped model).")
        self.add_device_parameter()
        self.add_strict_parameter()
        self.add_parameter(
            QgsProcessingParameterRasterDestination(self.OUTPUT, "Crop classes"),
            "GeoTIFF of class values 0, 1, ... on the first Sentinel-2 date's grid, loaded with the "
            "model's class names and colours; pixels with no valid date are nodata.")
        self.add_probabilities_parameter("Optional GeoTIFF with one band per class probability (0-1).")
        self.add_uncertainty_parameter()
        self.add_run_outputs()
        self.addOutput(QgsProcessingOutputNumber(self.TILES, "Tiles processed"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        s2 = self.parameterAsLayerList(parameters, self.S2, context)
        if not s2:
            raise QgsProcessingException("Give the Sentinel-2 time series (at least one layer).")
        s1 = self.parameterAsLayerList(parameters, self.S1, context)
        request = {**self.common_request(parameters, context, s2[0].crs()),
                   "resample": self.parameterAsBoolean(parameters, self.RESAMPLE, context),
                   **self.uncertainty_request(parameters, context)}
        for key, name in (("dates_s2", self.DATES_S2), ("dates_s1", self.DATES_S1)):
            dates = parse_dates(self.parameterAsString(parameters, name, context))
            if dates:
                request[key] = dates
        with EngineWorker() as worker:
            for key, layers in (("s2", s2), ("s1", s1)):
                if layers:
                    request[key] = [readable_file(layer, self.task, request, context, feedback, worker)
                                    for layer in layers]
            result = worker.run(self.task, request, feedback)
        if context.willLoadLayerOnCompletion(request["output"]):
            context.layerToLoadOnCompletionDetails(request["output"]).setPostProcessor(style_for(result))
        return {self.OUTPUT: request["output"], self.PROBABILITIES: result["outputs"].get("probabilities"),
                self.TILES: result["tiles"], **self.run_results(result), **self.uncertainty_results(result, feedback)}

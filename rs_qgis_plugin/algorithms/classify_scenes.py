"""Processing algorithm: BigEarthNet 19-class scene multi-labels on a 1200 m patch grid."""
from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)

from rs_qgis_plugin.algorithms.model_algorithm import ModelAlgorithm
from rs_qgis_plugin.output_styles import SceneLabelsStyle
from rs_qgis_plugin.raster_input import readable_file
from rs_qgis_plugin.worker_client import EngineWorker


class ClassifyScenes(ModelAlgorithm):
    S2, S1, BANDS, THRESHOLD, MIN_VALID, PATCHES = "S2", "S1", "BANDS", "THRESHOLD", "MIN_VALID", "PATCHES"
    task = "classify_scenes"
    model_tasks = ("scene_labels",)
    display_name = "Classify scenes (BigEarthNet 19 classes)"
    group_name, group_id = "Land cover", "land_cover"
    help_text = (
        "Cuts the area into 1200 m x 1200 m patches (120 x 120 pixels at 10 m, the reBEN / "
        "BigEarthNet v2 grid) aligned to the area's top-left corner, and gives each patch the "
        "model's multi-labels in the 19-class CORINE nomenclature. Sentinel-2 (10 bands) and "
        "optionally Sentinel-1 (VV, VH) can come as stacks or one file per band, at 10, 20 or "
        "60 m, in different CRSs: the engine puts them on one 10 m grid.\n\n"
        "The shipped model was trained at fixture scale only (see its model card); train the "
        "real one with `python -m training fit --task scene-labels`."
    )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.add_parameter(
            QgsProcessingParameterMultipleLayers(self.S2, "Sentinel-2 layer(s)", QgsProcessing.SourceType.TypeRaster),
            "A 10-band stack (B02, B03, B04, B05, B06, B07, B08, B8A, B11, B12, reflectance x "
            "10000) or one layer per band; bands are recognised by band descriptions or by the band "
            "in the file name (…_B8A_20m.tif). The first layer defines the grid and CRS.")
        self.add_parameter(
            QgsProcessingParameterMultipleLayers(self.S1, "Sentinel-1 layer(s)", QgsProcessing.SourceType.TypeRaster,
                                                 optional=True),
            "VV and VH backscatter (dB) as a stack or one layer each, for models that use Sentinel-1. "
            "Reprojected onto the Sentinel-2 grid when their CRS differs.")
        self.add_model_parameter(
            "A scene-labels model exported by the toolbox. Empty: models_onnx/scene_labels_s1s2_fixture.onnx.",
            default_model="scene_labels_s1s2_fixture.onnx")
        self.add_parameter(
            QgsProcessingParameterString(self.BANDS, "Band mapping", optional=True),
            "MODEL_BAND=N pairs, N counting the bands of all Sentinel-2 then Sentinel-1 layers from 1, "
            "e.g. VV=11,VH=12. Needed only when band names cannot be recognised.")
        self.add_extent_parameter("Area to classify. Empty: the first Sentinel-2 layer's extent.")
        self.add_parameter(
            QgsProcessingParameterNumber(self.THRESHOLD, "Label threshold", QgsProcessingParameterNumber.Type.Double,
                                         0.5, minValue=0.01, maxValue=0.99),
            "A class becomes a label of a patch when its probability reaches this value.")
        self.add_parameter(
            QgsProcessingParameterNumber(self.MIN_VALID, "Least valid fraction of a patch",
                                         QgsProcessingParameterNumber.Type.Double, 0.9, minValue=0.01, maxValue=1.0),
            "Patches with less valid (non-nodata) area are kept in the output, marked 'nodata', and "
            "not classified.")
        self.add_device_parameter()
        self.add_strict_parameter()
        self.add_parameter(
            QgsProcessingParameterVectorDestination(self.OUTPUT, "Scene labels", QgsProcessing.SourceType.TypeVectorPolygon),
            "GeoPackage with one polygon per patch: labels, top label and probability, and one "
            "probability field per class (p_<class>).")
        self.add_probabilities_parameter(
            "Optional GeoTIFF with one pixel per patch and one band per class probability.")
        self.add_run_outputs()
        self.addOutput(QgsProcessingOutputNumber(self.PATCHES, "Patches classified"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        layers = (self.parameterAsLayerList(parameters, self.S2, context)
                  + self.parameterAsLayerList(parameters, self.S1, context))
        if not layers:
            raise QgsProcessingException("Give at least one Sentinel-2 layer.")
        request = {
            **self.common_request(parameters, context, layers[0].crs()),
            "threshold": self.parameterAsDouble(parameters, self.THRESHOLD, context),
            "min_valid": self.parameterAsDouble(parameters, self.MIN_VALID, context),
        }
        bands = self.parameterAsString(parameters, self.BANDS, context).strip()
        if bands:
            request["bands"] = bands
        with EngineWorker() as worker:
            request["input"] = [readable_file(layer, self.task, request, context, feedback, worker)
                                for layer in layers]
            result = worker.run(self.task, request, feedback)
        if context.willLoadLayerOnCompletion(request["output"]):
            style = SceneLabelsStyle(result["names"], result.get("colors") or [])
            context.layerToLoadOnCompletionDetails(request["output"]).setPostProcessor(style)
        return {self.OUTPUT: request["output"], self.PROBABILITIES: result["outputs"].get("probabilities"),
                self.PATCHES: result["patches"]["classified"], **self.run_results(result)}

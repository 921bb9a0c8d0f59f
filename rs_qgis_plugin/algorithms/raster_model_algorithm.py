"""What every algorithm that runs a raster model shares: parameters, engine request, styling.

A subclass names its engine task and default model, describes itself and adds any parameters of
its own; the engine worker does the work.
"""
from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from rs_qgis_plugin.algorithms.model_algorithm import ModelAlgorithm
from rs_qgis_plugin.algorithms.uncertainty_output import UncertaintyOutput
from rs_qgis_plugin.output_styles import ClassesStyle, style_for
from rs_qgis_plugin.raster_input import layer_file, readable_file
from rs_qgis_plugin.worker_client import EngineWorker


class RasterModelAlgorithm(UncertaintyOutput, ModelAlgorithm):
    INPUT, BANDS, RESAMPLE, TILES = "INPUT", "BANDS", "RESAMPLE", "TILES"
    KEEP_MASKED, QUALITY_LAYER, QUALITY = "KEEP_MASKED", "QUALITY_LAYER", "QUALITY"
    default_model = ""  # file in models_onnx/ the engine uses when MODEL is empty
    input_help = (
        "Multispectral image to run the model on. Files are read directly; other layers "
        "(WMS/XYZ, virtual rasters) are first rendered over EXTENT at the model's resolution."
    )
    area_parameters = ("BANDS", "EXTENT", "RESAMPLE")  # which of these the engine task takes
    checks_input_values = True  # offers "Refuse implausible input" (engine/radiometry.py)
    over_water = False  # quality layers: land, cloud, glint, optically deep, out of range (engine/quality.py)
    maps_pixels = True  # a per-pixel prediction: uncertainty layer and out-of-distribution share
    styled = True  # load the output with the class palette or colour ramp of the result
    output_description = ""
    output_help = ""

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.add_parameter(QgsProcessingParameterRasterLayer(self.INPUT, "Input raster"), self.input_help)
        self.add_model_parameter(self.model_help(), self.default_model)
        self.add_area_parameters()
        self.add_device_parameter()
        if self.checks_input_values:
            self.add_strict_parameter()
        self.add_parameter(
            QgsProcessingParameterRasterDestination(self.OUTPUT, self.output_description),
            self.output_help,
        )
        self.add_task_parameters()
        if self.over_water:
            self.add_quality_parameters()
        if self.maps_pixels:
            self.add_uncertainty_parameter()
        self.add_run_outputs()
        self.addOutput(QgsProcessingOutputNumber(self.TILES, "Tiles processed"))

    def model_help(self) -> str:
        return (f"ONNX model exported by the toolbox (its contract travels in the model's metadata) or "
                f"a Deepness-format model. Empty: the shipped model models_onnx/{self.default_model}.")

    def add_area_parameters(self) -> None:
        """Band mapping, extent and resampling, for the tasks that take them."""
        if self.BANDS in self.area_parameters:
            self.add_parameter(
                QgsProcessingParameterString(self.BANDS, "Band mapping", optional=True),
                "Which raster band feeds each model band, as MODEL_BAND=RASTER_BAND pairs separated "
                "by commas, with band numbers starting at 1, e.g. B02=1,B03=2,B04=3. Leave empty "
                "when the raster's band descriptions name the model's bands (B02 or blue, ...) or "
                "the band count matches; needed otherwise, for instance for a rendered web layer "
                "(bands 1, 2, 3 = red, green, blue) or an image whose bands are in another order. "
                "The engine says which bands it needs.",
            )
        if self.EXTENT in self.area_parameters:
            self.add_extent_parameter(
                "Area to process, in any CRS (it is converted to the raster's CRS). Empty: the "
                "whole raster. Required in practice for web layers, which have no finite extent."
            )
        if self.RESAMPLE in self.area_parameters:
            self.add_parameter(
                QgsProcessingParameterBoolean(self.RESAMPLE, "Resample to the model's resolution", False),
                "Resample the input to the ground sampling distance the model was trained at, for "
                "imagery finer or coarser than that. Off: the model runs on the raster's own pixels "
                "and the output has the input's grid.",
            )

    def add_quality_parameters(self) -> None:
        self.add_parameter(
            QgsProcessingParameterBoolean(self.KEEP_MASKED, "Keep values of masked pixels", False),
            "Off: pixels the quality tests flag (land, cloud, sun glint, optically deep water, depths "
            "outside the range the model was trained on) are nodata in the output. On: they keep the "
            "model's value; the quality layer still says why they are doubtful.")
        self.add_parameter(
            QgsProcessingParameterRasterDestination(self.QUALITY_LAYER, "Quality layer", optional=True,
                                                    createByDefault=False),
            "Optional GeoTIFF giving each pixel's reason: valid, land (NDWI < 0, needs a NIR band such as "
            "Sentinel-2 B08 among the inputs), cloud, sun glint (NIR over water), optically deep (the "
            "signal of deep water: the bottom is not seen) or out of range. Loaded with a legend.")
        self.addOutput(QgsProcessingOutputString(self.QUALITY, "Share of each quality reason"))

    def add_task_parameters(self) -> None:
        """Parameters of one task only; none by default."""

    def task_request(self, parameters, context) -> dict:
        """Engine request entries for the task's own parameters; none by default."""
        return {}

    def task_results(self, result: dict) -> dict:
        """Algorithm outputs for the task's own parameters; none by default."""
        return {}

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        request = self.engine_request(parameters, context, layer)
        with EngineWorker() as worker:
            if request["input"] is None:
                request = self.render_input(layer, request, context, feedback, worker)
            result = worker.run(self.task, request, feedback)
        self.style_on_load(request["output"], result, context)
        outputs = {self.OUTPUT: request["output"], **self.run_results(result), self.TILES: result["tiles"],
                   **self.task_results(result)}
        if self.over_water:
            outputs.update(self.quality_results(request, result, context, feedback))
        if self.maps_pixels:
            outputs.update(self.uncertainty_results(result, feedback))
        return outputs

    def quality_results(self, request: dict, result: dict, context, feedback) -> dict:
        """Log and return the shares of the quality reasons; style the quality layer when loaded."""
        quality = result["quality"]
        shares = ", ".join(f"{name} {share:.1%}" for name, share in quality["shares"].items())
        feedback.pushInfo(f"Quality: {shares}")
        for note in quality["not_checked"]:
            feedback.pushInfo(f"Not checked: {note}")
        layer = request.get("quality_layer")
        if layer and context.willLoadLayerOnCompletion(layer):
            context.layerToLoadOnCompletionDetails(layer).setPostProcessor(
                ClassesStyle(quality["names"], quality["colors"]))
        return {self.QUALITY_LAYER: layer, self.QUALITY: shares}

    def engine_request(self, parameters, context, layer) -> dict:
        """The engine's params; ``input`` is None for a layer that must be rendered first."""
        if layer is None:
            raise QgsProcessingException(self.invalidRasterError(parameters, self.INPUT))
        request = {"input": layer_file(layer), **self.common_request(parameters, context, layer.crs())}
        if self.RESAMPLE in self.area_parameters:
            request["resample"] = self.parameterAsBoolean(parameters, self.RESAMPLE, context)
        bands = self.parameterAsString(parameters, self.BANDS, context).strip()
        if bands:
            request["bands"] = bands
        if self.over_water:
            request["keep_masked"] = self.parameterAsBoolean(parameters, self.KEEP_MASKED, context)
            quality_layer = self.parameterAsOutputLayer(parameters, self.QUALITY_LAYER, context)
            if quality_layer:
                request["quality_layer"] = quality_layer
        if self.maps_pixels:
            request.update(self.uncertainty_request(parameters, context))
        return {**request, **self.task_request(parameters, context)}

    def render_input(self, layer, request, context, feedback, worker) -> dict:
        """The request for a non-file layer rendered over the extent at the model's resolution."""
        path = readable_file(layer, self.task, request, context, feedback, worker)
        # the rendering did the cropping and resampling
        rendered = {key: value for key, value in request.items() if key not in ("extent", "resample")}
        return {**rendered, "input": path}

    def style_on_load(self, output: str, result: dict, context) -> None:
        if self.styled and context.willLoadLayerOnCompletion(output):
            context.layerToLoadOnCompletionDetails(output).setPostProcessor(style_for(result))

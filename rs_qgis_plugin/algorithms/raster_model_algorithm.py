"""What every algorithm that runs a raster model shares: parameters, engine request, styling.

A subclass names its engine task and default model, describes itself and adds any parameters of
its own; the engine worker does the work.
"""
from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFile,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from rs_qgis_plugin.output_styles import style_for
from rs_qgis_plugin.raster_input import layer_file, readable_file
from rs_qgis_plugin.worker_client import EngineWorker

DEVICES = (
    ("auto", "Automatic (CUDA GPU when available, else CPU)"),
    ("cpu", "CPU"),
    ("cuda", "CUDA GPU"),
)


class RasterModelAlgorithm(QgsProcessingAlgorithm):
    INPUT = "INPUT"
    MODEL = "MODEL"
    BANDS = "BANDS"
    EXTENT = "EXTENT"
    RESAMPLE = "RESAMPLE"
    DEVICE = "DEVICE"
    OUTPUT = "OUTPUT"
    DEVICE_USED = "DEVICE_USED"
    TILES = "TILES"
    SECONDS = "SECONDS"

    task = ""  # the engine task, also the algorithm id
    default_model = ""  # file in models_onnx/ the engine uses when MODEL is empty
    input_help = (
        "Multispectral image to run the model on. Files are read directly; other layers "
        "(WMS/XYZ, virtual rasters) are first rendered over EXTENT at the model's resolution."
    )
    area_parameters = (BANDS, EXTENT, RESAMPLE)  # which of these the engine task takes
    styled = True  # load the output with the class palette or colour ramp of the result
    output_description = ""
    output_help = ""

    display_name = ""
    group_name, group_id = "", ""
    help_text = ""

    def name(self):
        return self.task

    def displayName(self):  # noqa: N802 (QGIS API)
        return self.display_name

    def group(self):
        return self.group_name

    def groupId(self):  # noqa: N802 (QGIS API)
        return self.group_id

    def shortHelpString(self):  # noqa: N802 (QGIS API)
        return self.help_text

    def createInstance(self):  # noqa: N802 (QGIS API)
        return type(self)()

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.add_parameter(QgsProcessingParameterRasterLayer(self.INPUT, "Input raster"), self.input_help)
        self.add_parameter(
            QgsProcessingParameterFile(
                self.MODEL, "Model (ONNX)", extension="onnx", optional=True
            ),
            f"ONNX model exported by the toolbox (its contract travels in the model's metadata) or "
            f"a Deepness-format model. Empty: the shipped model models_onnx/{self.default_model}.",
        )
        self.add_area_parameters()
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.DEVICE, "Device", options=[label for _, label in DEVICES], defaultValue=0
            ),
            "Where the model runs. Automatic uses a CUDA GPU when the engine's onnxruntime has one "
            "and falls back to the CPU; the log says which device really ran.",
        )
        self.add_parameter(
            QgsProcessingParameterRasterDestination(self.OUTPUT, self.output_description),
            self.output_help,
        )
        self.add_task_parameters()
        self.addOutput(QgsProcessingOutputString(self.DEVICE_USED, "Device that ran the model"))
        self.addOutput(QgsProcessingOutputNumber(self.TILES, "Tiles processed"))
        self.addOutput(QgsProcessingOutputNumber(self.SECONDS, "Seconds the engine took"))

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
            self.add_parameter(
                QgsProcessingParameterExtent(self.EXTENT, "Extent", optional=True),
                "Area to process, in any CRS (it is converted to the raster's CRS). Empty: the "
                "whole raster. Required in practice for web layers, which have no finite extent.",
            )
        if self.RESAMPLE in self.area_parameters:
            self.add_parameter(
                QgsProcessingParameterBoolean(self.RESAMPLE, "Resample to the model's resolution", False),
                "Resample the input to the ground sampling distance the model was trained at, for "
                "imagery finer or coarser than that. Off: the model runs on the raster's own pixels "
                "and the output has the input's grid.",
            )

    def add_parameter(self, parameter, help_text: str) -> None:
        parameter.setHelp(help_text)
        self.addParameter(parameter)

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
        return {self.OUTPUT: request["output"], self.DEVICE_USED: result["device"],
                self.TILES: result["tiles"], self.SECONDS: result["seconds"], **self.task_results(result)}

    def engine_request(self, parameters, context, layer) -> dict:
        """The engine's params; ``input`` is None for a layer that must be rendered first."""
        if layer is None:
            raise QgsProcessingException(self.invalidRasterError(parameters, self.INPUT))
        request = {
            "input": layer_file(layer),
            "output": self.parameterAsOutputLayer(parameters, self.OUTPUT, context),
            "device": DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)][0],
        }
        if self.RESAMPLE in self.area_parameters:
            request["resample"] = self.parameterAsBoolean(parameters, self.RESAMPLE, context)
        model = self.parameterAsFile(parameters, self.MODEL, context)
        if model:
            request["model"] = model
        bands = self.parameterAsString(parameters, self.BANDS, context).strip()
        if bands:
            request["bands"] = bands
        extent = self.parameterAsExtent(parameters, self.EXTENT, context, layer.crs())
        if self.EXTENT in self.area_parameters and not extent.isNull():
            request["extent"] = [extent.xMinimum(), extent.yMinimum(),
                                 extent.xMaximum(), extent.yMaximum()]
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

"""What every algorithm of the provider shares: identity from class attributes, parameters with
help, the device choice, the engine request entries common to all tasks, and raster files that do
not open named as such."""
import os

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFile,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsRasterLayer,
)

MODEL_WIDGET = "rs_qgis_plugin.model_parameter_widget.ModelParameterWidget"  # the dialogs' widget for MODEL
DEVICES = (
    ("auto", "Automatic (CUDA GPU when available, else CPU)"),
    ("cpu", "CPU"),
    ("cuda", "CUDA GPU"),
)


class ModelAlgorithm(QgsProcessingAlgorithm):
    MODEL, EXTENT, DEVICE = "MODEL", "EXTENT", "DEVICE"
    OUTPUT, PROBABILITIES = "OUTPUT", "PROBABILITIES"
    DEVICE_USED, SECONDS, WARNINGS = "DEVICE_USED", "SECONDS", "WARNINGS"
    STRICT = "STRICT"

    task = ""  # the engine task, also the algorithm id
    model_tasks: tuple[str, ...] = ()  # contract tasks of the installed models offered for MODEL, own first
    other_model_tasks_except: tuple[str, ...] | None = None  # given: every other task's models too, but these
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

    def checkParameterValues(self, parameters, context):  # noqa: N802 (QGIS API)
        """QGIS's checks, except that for a raster file that exists but does not open QGIS says "not
        found": say what is wrong with the file instead."""
        ok, message = super().checkParameterValues(parameters, context)
        if ok:
            return ok, message
        for definition in self.parameterDefinitions():
            if not isinstance(definition, (QgsProcessingParameterRasterLayer, QgsProcessingParameterMultipleLayers)):
                continue
            values = parameters.get(definition.name())
            for path in values if isinstance(values, list) else [values]:
                if not (isinstance(path, str) and os.path.isfile(path)):
                    continue
                layer = QgsRasterLayer(path, "", "gdal")
                if not layer.isValid():
                    reason = layer.error().summary().strip().splitlines()[-1]
                    return False, (
                        f"{definition.description()}: {path} exists but does not open as a raster ({reason}). "
                        "The file is damaged (an interrupted download or copy) or is not a raster: check that "
                        "it is the right file, or export or fetch it again."
                    )
        return ok, message

    def add_parameter(self, parameter, help_text: str) -> None:
        parameter.setHelp(help_text)
        self.addParameter(parameter)

    def add_model_parameter(self, help_text: str, default_model: str = "") -> None:
        """MODEL, a file path; the dialogs show the installed models of ``model_tasks`` to choose
        from (rs_qgis_plugin/model_selector.py). ``default_model`` says what an empty MODEL runs;
        without one the parameter is required."""
        parameter = QgsProcessingParameterFile(self.MODEL, "Model (ONNX)", extension="onnx",
                                               optional=bool(default_model))
        parameter.setMetadata({"widget_wrapper": {
            "class": MODEL_WIDGET, "tasks": list(self.model_tasks), "default_model": default_model,
            "other_tasks_except": None if self.other_model_tasks_except is None
            else list(self.other_model_tasks_except)}})
        self.add_parameter(parameter, help_text)

    def add_extent_parameter(self, help_text: str) -> None:
        self.add_parameter(QgsProcessingParameterExtent(self.EXTENT, "Extent", optional=True), help_text)

    def add_device_parameter(self) -> None:
        self.add_parameter(
            QgsProcessingParameterEnum(self.DEVICE, "Device", options=[label for _, label in DEVICES], defaultValue=0),
            "Where the model runs. Automatic uses a CUDA GPU when the engine's onnxruntime has one and "
            "falls back to the CPU; the log says which device really ran.",
        )

    def add_strict_parameter(self) -> None:
        self.add_parameter(
            QgsProcessingParameterBoolean(self.STRICT, "Refuse implausible input", False),
            "The engine samples the input and compares its values with the units the model expects "
            "(surface reflectance x 10000, 8-bit values, backscatter in dB): an 8-bit rendering given "
            "to a reflectance model, for instance, gives confident nonsense. Off: such input runs "
            "with a warning in the log and in the Warnings result. On: it is refused and nothing is "
            "written.",
        )

    def add_probabilities_parameter(self, help_text: str) -> None:
        self.add_parameter(QgsProcessingParameterRasterDestination(
            self.PROBABILITIES, "Class probabilities", optional=True, createByDefault=False), help_text)

    def optional_int(self, parameters, name: str, context) -> int | None:
        """The whole number given for an optional parameter, None when it was left empty."""
        if parameters.get(name) in (None, ""):
            return None
        return self.parameterAsInt(parameters, name, context)

    def add_run_outputs(self) -> None:
        self.addOutput(QgsProcessingOutputString(self.DEVICE_USED, "Device that ran the model"))
        self.addOutput(QgsProcessingOutputNumber(self.SECONDS, "Seconds the engine took"))
        self.addOutput(QgsProcessingOutputString(self.WARNINGS, "Warnings (one per line)"))

    def run_results(self, result: dict) -> dict:
        """The outputs of add_run_outputs from the engine's result."""
        return {self.DEVICE_USED: result["device"], self.SECONDS: result["seconds"],
                self.WARNINGS: "\n".join(result.get("warnings", []))}

    def common_request(self, parameters, context, extent_crs) -> dict:
        """device, output, model, probabilities, extent (in ``extent_crs``) and strict: those the
        algorithm has and the user gave."""
        request = {}
        if self.parameterDefinition(self.STRICT) is not None:
            request["strict"] = self.parameterAsBoolean(parameters, self.STRICT, context)
        if self.parameterDefinition(self.DEVICE) is not None:
            request["device"] = DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)][0]
        if self.parameterDefinition(self.OUTPUT) is not None:
            request["output"] = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        model = self.parameterAsFile(parameters, self.MODEL, context)
        if model:
            request["model"] = model
        if self.parameterDefinition(self.PROBABILITIES) is not None:
            probabilities = self.parameterAsOutputLayer(parameters, self.PROBABILITIES, context)
            if probabilities:
                request["probabilities"] = probabilities
        if self.parameterDefinition(self.EXTENT) is not None:
            extent = self.parameterAsExtent(parameters, self.EXTENT, context, extent_crs)
            if not extent.isNull():
                request["extent"] = [extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum()]
        return request

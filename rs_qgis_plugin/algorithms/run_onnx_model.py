"""Processing algorithm: run any per-pixel ONNX model (segmentation, regression, embeddings),
with Deepness-like options for models that carry no contract."""
from qgis.core import (
    QgsProcessingException,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from rs_qgis_plugin.algorithms.raster_model_algorithm import RasterModelAlgorithm

FROM_MODEL = "From the model's contract"
OUTPUT_KINDS = (
    (None, FROM_MODEL),
    ("classes", "Classes (segmentation): class map"),
    ("regression", "Regression: values"),
    ("embedding", "Per-pixel embedding: one band per dimension"),
)
ACTIVATIONS = (
    (None, f"{FROM_MODEL} (probabilities when it has none)"),
    ("none", "Probabilities: used as they are"),
    ("softmax", "Logits: softmax over the classes"),
    ("sigmoid", "Multi-label logits: sigmoid per class"),
)


class RunOnnxModel(RasterModelAlgorithm):
    task = "run_onnx"
    # MODEL offers the installed models of every task but those that do not map one image to one
    # per-pixel output (time series, text, image pairs, one value per tile)
    model_tasks = ("run_onnx", "deepness-segmentor", "deepness-regressor")
    other_model_tasks_except = ("crop_map", "text_embedding", "change_embedding", "image_embedding", "scene_labels")
    OUTPUT_KIND, CLASSES, ACTIVATION = "OUTPUT_KIND", "CLASSES", "ACTIVATION"
    SCALE, MEAN, STD, TILE_SIZE, OVERLAP = "SCALE", "MEAN", "STD", "TILE_SIZE", "OVERLAP"
    output_description = "Model output"
    output_help = (
        "GeoTIFF on the input's grid (the model's grid when resampled): for classes, class values "
        "0, 1, ... in the order of the classes, loaded with their names and colours; for regression, "
        "one float band per output; for an embedding, one float band per dimension. Pixels without "
        "valid input are nodata."
    )

    display_name = "Run ONNX model"
    group_name, group_id = "Models", "models"
    help_text = (
        "Runs any ONNX model that maps an image tile [batch, bands, height, width] to an output of the "
        "same size [batch, channels, height, width]: segmentation (a class map and optionally the class "
        "probabilities), regression (values) or per-pixel embeddings (vectors).\n\n"
        "A model exported by the toolbox or made for the Deepness plugin says in its metadata how to "
        "feed it; the options below override that. A model without such metadata runs on the options "
        "alone, as in Deepness: give the output kind, the classes, and the normalisation it was trained "
        "with (scale, mean, std); the band count, tile size and channel count are read from the graph "
        "when it fixes them, and the engine says what is still missing. To store the options in the "
        "model once: python -m engine contract set --model m.onnx ...\n\n"
        "Inputs are normalised as (value / scale - mean) / std per band. Class scores are turned into "
        "probabilities (softmax or sigmoid) when the model outputs logits.\n\n"
        "The work runs in the engine's Python interpreter (Processing settings)."
    )

    def name(self):
        return "run_onnx_model"  # the engine task is run_onnx

    def model_help(self) -> str:
        return ("The ONNX model file: one float input [batch, bands, height, width], one output "
                "[batch, channels, height, width]. With or without a model contract or Deepness metadata.")

    def add_task_parameters(self):
        self.add_parameter(
            QgsProcessingParameterEnum(self.OUTPUT_KIND, "Output kind", options=[label for _, label in OUTPUT_KINDS],
                                       defaultValue=0),
            "What the model's output channels are: class scores (written as a class map), regression "
            "values, or the dimensions of a per-pixel embedding. Needed when the model has no contract.")
        self.add_parameter(
            QgsProcessingParameterString(self.CLASSES, "Classes", optional=True),
            "Class names in the order of the output channels, separated by commas, each optionally with "
            "a colour: water:#1f78b4,land:#33a02c. For regression, the names of the outputs. Empty: the "
            "model's, else class_0, class_1, ... for each channel of the graph.")
        self.add_parameter(
            QgsProcessingParameterEnum(self.ACTIVATION, "The model outputs",
                                       options=[label for _, label in ACTIVATIONS], defaultValue=0),
            "Whether the class scores the model gives are probabilities already, logits of exclusive "
            "classes (the engine applies softmax) or logits of independent labels (the engine applies a "
            "sigmoid). Probabilities and the class map are computed from the result.")
        self.add_parameter(
            QgsProcessingParameterNumber(self.SCALE, "Scale (divide raw values by)",
                                         QgsProcessingParameterNumber.Type.Double, optional=True, minValue=1e-12),
            "Raw pixel values are divided by this before mean and std are applied, as Deepness divides "
            "8-bit values by 255 (use 10000 for Sentinel-2 reflectance x 10000). Empty: the model's "
            "normalisation, or 1. Giving scale, mean or std replaces the model's normalisation.")
        self.add_parameter(
            QgsProcessingParameterString(self.MEAN, "Mean", optional=True),
            "Mean the model subtracts from the scaled values: one number for all bands, or one per model "
            "band separated by commas, e.g. 0.485,0.456,0.406. Empty: the model's, or 0.")
        self.add_parameter(
            QgsProcessingParameterString(self.STD, "Standard deviation", optional=True),
            "Standard deviation the model divides the centred values by: one number, or one per band, "
            "e.g. 0.229,0.224,0.225. Empty: the model's, or 1.")
        self.add_parameter(
            QgsProcessingParameterNumber(self.TILE_SIZE, "Tile size (pixels)", QgsProcessingParameterNumber.Type.Integer,
                                         optional=True, minValue=1),
            "Side of the square tiles fed to the model. Empty: the model's contract, else the size its "
            "graph fixes. A graph with a fixed size accepts only that size.")
        self.add_parameter(
            QgsProcessingParameterNumber(self.OVERLAP, "Tile overlap (pixels)", QgsProcessingParameterNumber.Type.Integer,
                                         optional=True, minValue=0),
            "Pixels shared by neighbouring tiles, blended to hide tile edges. Empty: the model's, else "
            "15% of the tile size.")
        self.add_probabilities_parameter(
            "Optional GeoTIFF with one band per class holding its probability (0-1), for classes output.")

    def task_request(self, parameters, context) -> dict:
        request = {
            "output_kind": OUTPUT_KINDS[self.parameterAsEnum(parameters, self.OUTPUT_KIND, context)][0],
            "activation": ACTIVATIONS[self.parameterAsEnum(parameters, self.ACTIVATION, context)][0],
            "classes": [c.strip() for c in self.parameterAsString(parameters, self.CLASSES, context).split(",")
                        if c.strip()],
            "mean": self.numbers(parameters, self.MEAN, context),
            "std": self.numbers(parameters, self.STD, context),
            "scale": None if parameters.get(self.SCALE) in (None, "")
            else self.parameterAsDouble(parameters, self.SCALE, context),
            "tile_size": self.optional_int(parameters, self.TILE_SIZE, context),
            "overlap": self.optional_int(parameters, self.OVERLAP, context),
        }
        return {key: value for key, value in request.items() if value not in (None, [])}

    def numbers(self, parameters, name: str, context) -> list[float]:
        text = self.parameterAsString(parameters, name, context)
        try:
            return [float(value) for value in text.replace(";", ",").split(",") if value.strip()]
        except ValueError:
            raise QgsProcessingException(
                f"{self.parameterDefinition(name).description()}: {text!r} is not a list of numbers "
                "separated by commas, like 0.485,0.456,0.406") from None

    def task_results(self, result):
        return {self.PROBABILITIES: result["outputs"].get("probabilities")}

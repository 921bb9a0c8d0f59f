"""Processing algorithm: a published checkpoint (MagicBathyNet, reBEN, remote-sensing CLIP, TSViT, HyCoT) becomes
a model the toolbox's algorithms run, with the options of ``python -m training import``."""
import shlex

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from rs_qgis_plugin.algorithms.model_algorithm import ModelAlgorithm
from rs_qgis_plugin.worker_client import EngineWorker

SOURCES = ("magicbathynet-bathymetry", "magicbathynet-seabed-unet", "magicbathynet-seabed-segformer", "reben",
           "open-clip", "tsvit-pastis", "hycot")  # `python -m training import --source` (tests check they agree)
AREAS = ("", "agia_napa", "puck_lagoon")
MODALITIES = ("", "s2", "spot6", "aerial")


class ImportModel(ModelAlgorithm):
    task = "import_model"
    display_name = "Import published model"
    group_name, group_id = "Models", "models"
    help_text = (
        "Turns a checkpoint the authors of a method published (downloaded by you, or with 'Download "
        "published model') into an ONNX model with its contract and a model card (.md beside it) that "
        "names the source, licence and citation. The result runs in this toolbox's algorithms: give it "
        "as their Model.\n\n"
        "MagicBathyNet weights need the area, the modality and the area's normalisation file "
        "(norm_param_*.npy or .txt from the dataset). Other sources take their options as text, as on "
        "the command line (e.g. '--backbone resnet50 --bands s2' for reBEN, '--preset remoteclip' for a "
        "remote-sensing CLIP, which yields an image and a text encoder for the text-search algorithms). A HyCoT "
        "checkpoint yields an encoder and a decoder for the hyperspectral compression algorithms.\n\n"
        "The conversion needs the training extras (torch) in the engine's Python interpreter. A wrong "
        "checkpoint, a damaged file or a checksum mismatch is refused and nothing is written."
    )
    SOURCE, CHECKPOINT, SHA256 = "SOURCE", "CHECKPOINT", "SHA256"
    AREA, MODALITY, NORM_PARAM, TILE_SIZE, OPTIONS = "AREA", "MODALITY", "NORM_PARAM", "TILE_SIZE", "OPTIONS"
    CARD, MODELS = "CARD", "MODELS"

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.add_parameter(QgsProcessingParameterEnum(self.SOURCE, "Source", options=list(SOURCES), defaultValue=0),
                           "Who published the checkpoint and which network it holds.")
        self.add_parameter(QgsProcessingParameterFile(self.CHECKPOINT, "Checkpoint file"),
                           "The downloaded file as published (.zip, .pt, .pth, .safetensors).")
        self.add_parameter(QgsProcessingParameterString(self.SHA256, "Expected SHA-256", optional=True),
                           "If given, a checkpoint with another checksum is refused (damaged or another release).")
        self.add_parameter(QgsProcessingParameterEnum(self.AREA, "Area (MagicBathyNet)", options=list(AREAS),
                                                      defaultValue=0), "The area the weights were trained on.")
        self.add_parameter(QgsProcessingParameterEnum(self.MODALITY, "Modality (MagicBathyNet)",
                                                      options=list(MODALITIES), defaultValue=0),
                           "The imagery the weights were trained on: Sentinel-2, SPOT-6 or aerial.")
        self.add_parameter(QgsProcessingParameterFile(self.NORM_PARAM, "Normalisation file (MagicBathyNet)",
                                                      optional=True),
                           "The area's norm_param_<modality>_<an|pl> file (.npy or .txt): per-band minima, maxima.")
        self.add_parameter(QgsProcessingParameterNumber(self.TILE_SIZE, "Tile size (pixels)", optional=True,
                                                        minValue=8),
                           "Tile side fixed in the model (default: twice the training window for Sentinel-2 and "
                           "SPOT-6, one window for aerial).")
        self.add_parameter(QgsProcessingParameterString(self.OPTIONS, "Other options", optional=True),
                           "The source's own options as on the command line, e.g. '--backbone resnet50 --bands s2'.")
        self.add_parameter(QgsProcessingParameterFileDestination(self.OUTPUT, "Model", fileFilter="ONNX (*.onnx)"),
                           "The ONNX model to write; its card is written beside it (.md).")
        self.addOutput(QgsProcessingOutputString(self.CARD, "Model card"))
        self.addOutput(QgsProcessingOutputString(
            self.MODELS, "Every model written (a CLIP import writes <name>_image.onnx and <name>_text.onnx, HyCoT "
            "<name>_encoder.onnx and <name>_decoder.onnx)"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        options = {}
        for name, values in ((self.AREA, AREAS), (self.MODALITY, MODALITIES)):
            value = values[self.parameterAsEnum(parameters, name, context)]
            if value:
                options[name.lower()] = value
        norm_param = self.parameterAsFile(parameters, self.NORM_PARAM, context)
        if norm_param:
            options["norm-param"] = norm_param
        if parameters.get(self.TILE_SIZE) not in (None, ""):
            options["tile-size"] = self.parameterAsInt(parameters, self.TILE_SIZE, context)
        options.update(parse_options(self.parameterAsString(parameters, self.OPTIONS, context)))
        request = {
            "source": SOURCES[self.parameterAsEnum(parameters, self.SOURCE, context)],
            "checkpoint": self.parameterAsFile(parameters, self.CHECKPOINT, context),
            "output": self.parameterAsFileOutput(parameters, self.OUTPUT, context),
            "sha256": self.parameterAsString(parameters, self.SHA256, context).strip(),
            "options": options,
        }
        with EngineWorker() as worker:
            result = worker.run(self.task, request, feedback)
        feedback.pushInfo(f"onnxruntime vs torch max difference {result['max_abs_diff']:.2e}; "
                          f"checkpoint SHA-256 {result['checkpoint_sha256']}")
        return {self.OUTPUT: result["paths"][0], self.CARD: result["cards"][0], self.MODELS: ";".join(result["paths"])}


def parse_options(text: str) -> dict:
    """'--backbone resnet50 --bands s2' -> {"backbone": "resnet50", "bands": "s2"}."""
    words = shlex.split(text or "")
    if len(words) % 2 or any(not word.startswith("--") for word in words[::2]):
        raise QgsProcessingException(f"Other options must be pairs like '--backbone resnet50', got {text!r}")
    return {name[2:]: value for name, value in zip(words[::2], words[1::2])}

"""Processing algorithm: download a published model's checkpoint listed in the engine's catalogue."""
import json
import zipfile
from pathlib import Path

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputBoolean,
    QgsProcessingOutputFile,
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
)

from rs_qgis_plugin.algorithms.model_algorithm import ModelAlgorithm
from rs_qgis_plugin.settings import engine_folder, engine_wheel
from rs_qgis_plugin.worker_client import EngineWorker

CATALOGUE = Path("engine") / "published_models.json"  # in the engine's folder


def read_catalogue() -> tuple[list[dict], str]:
    """The catalogue's entries read as plain JSON (the engine validates them when it downloads),
    and why there are none when the file cannot be read: from the engine's source folder in a
    checkout, else from the engine wheel the plugin zip carries."""
    folder, wheel = engine_folder(), engine_wheel()
    path = Path(folder) / CATALOGUE if folder else wheel
    try:
        if folder is None:
            with zipfile.ZipFile(wheel) as archive:
                text = archive.read(CATALOGUE.as_posix()).decode("utf-8")
        else:
            text = path.read_text(encoding="utf-8")
        return json.loads(text)["models"], ""
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as err:
        return [], f"the model catalogue in {path} cannot be read ({err}); install the plugin again from its zip"


def size_label(size_bytes) -> str:
    return f"{size_bytes / 1e6:,.0f} MB" if size_bytes else "size unknown"


class DownloadModel(ModelAlgorithm):
    FOLDER = "FOLDER"
    FILE, SHA256, VERIFIED, IMPORT_COMMAND = "FILE", "SHA256", "VERIFIED", "IMPORT_COMMAND"

    task = "download_model"
    display_name = "Download published model"
    group_name, group_id = "Models", "models"
    help_text = (
        "Downloads the checkpoint of a published model (MagicBathyNet, RemoteCLIP, GeoRSCLIP, SkyCLIP, "
        "reBEN) from the address its authors publish, only when you run this algorithm. The download "
        "resumes after a dropped connection (also when run again after a failure), and the file "
        "appears under its final name only once complete; where the catalogue knows the file's "
        "SHA-256 a different file is refused, elsewhere the measured SHA-256 is reported and the file "
        "is marked unverified.\n\n"
        "The log names the model's source, licence and citation: several licences forbid commercial "
        "use. The checkpoint is not an ONNX model yet: the log ends with the `python -m training "
        "import` command that turns it into one (it needs the training environment).\n\n"
        "Offline, download the file elsewhere from the model's page and import it with the same "
        "command. An organisation mirror holding the files under their catalogue names can replace "
        "the publishers' addresses: set the environment variable RSAI_MODELS_MIRROR to its base URL."
    )

    def __init__(self):
        super().__init__()
        self.models, self.catalogue_problem = read_catalogue()

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.MODEL, "Published model",
                options=[f"{m['title']} ({size_label(m['size_bytes'])})" for m in self.models],
                defaultValue=0 if self.models else None),
            "The catalogue's models (engine/published_models.json); `python -m engine models list` prints "
            "each one's address, licence, size and SHA-256.")
        self.add_parameter(
            QgsProcessingParameterFile(self.FOLDER, "Destination folder",
                                       behavior=QgsProcessingParameterFile.Behavior.Folder, optional=True),
            "Folder for the checkpoint. Empty: the downloads/ folder of the user models folder (the "
            "environment variable RSAI_MODELS_DIR, else ~/.local/share/rsai-toolbox/models on Linux, "
            "%APPDATA%\\rsai-toolbox\\models on Windows, ~/Library/Application Support/rsai-toolbox/models "
            "on macOS).")
        self.addOutput(QgsProcessingOutputFile(self.FILE, "Downloaded checkpoint"))
        self.addOutput(QgsProcessingOutputString(self.SHA256, "SHA-256 of the downloaded file"))
        self.addOutput(QgsProcessingOutputBoolean(self.VERIFIED, "SHA-256 checked against the published one"))
        self.addOutput(QgsProcessingOutputString(self.IMPORT_COMMAND, "Command that imports it as an ONNX model"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        if not self.models:
            raise QgsProcessingException(f"No published models to download: {self.catalogue_problem}.")
        model = self.models[self.parameterAsEnum(parameters, self.MODEL, context)]
        request = {"id": model["id"]}
        folder = self.parameterAsFile(parameters, self.FOLDER, context)
        if folder:
            request["folder"] = folder
        feedback.pushInfo(f"{model['title']}\nPage: {model['page']}\nLicence: {model['licence']}\n"
                          f"Citation: {model['citation']}")
        with EngineWorker() as worker:
            result = worker.run(self.task, request, feedback)
        state = "verified" if result["verified"] else "NOT verified: no published SHA-256 to compare"
        feedback.pushInfo(f"Saved {result['path']} (SHA-256 {result['sha256']}, {state}).\n"
                          f"Import it as an ONNX model with:\n  {result['import_command']}")
        return {self.FILE: result["path"], self.SHA256: result["sha256"], self.VERIFIED: result["verified"],
                self.IMPORT_COMMAND: result["import_command"]}

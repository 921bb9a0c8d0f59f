"""Processing algorithm: create the engine's own Python environment (rs_qgis_plugin/engine_setup.py);
the Engine set-up dialog of the plugin menu is this algorithm's dialog."""
from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
)

from rs_qgis_plugin.engine_setup import FLAVOURS, set_up_engine
from rs_qgis_plugin.settings import engine_environment_dir, use_engine_python

FLAVOUR_LABELS = (
    "Automatic (CUDA with an NVIDIA driver, DirectML on other Windows machines, else CPU)",
    "CPU (also CoreML on macOS)",
    "CUDA (onnxruntime-gpu with NVIDIA's CUDA and cuDNN packages)",
    "DirectML (Windows, any DirectX 12 GPU)",
)


class SetupEngine(QgsProcessingAlgorithm):
    PYTHON, FLAVOUR, WHEELHOUSE = "PYTHON", "FLAVOUR", "WHEELHOUSE"
    ENGINE_PYTHON, FLAVOUR_USED, SECONDS = "ENGINE_PYTHON", "FLAVOUR_USED", "SECONDS"

    def name(self):
        return "setup_engine"

    def displayName(self):  # noqa: N802 (QGIS API)
        return "Engine set-up"

    def group(self):
        return "Engine"

    def groupId(self):  # noqa: N802 (QGIS API)
        return "engine"

    def createInstance(self):  # noqa: N802 (QGIS API)
        return SetupEngine()

    def shortHelpString(self):  # noqa: N802 (QGIS API)
        return (
            "Creates the Python environment the toolbox's models run in, so that nothing is installed into "
            f"QGIS's own Python. It is made in {engine_environment_dir()} (in the QGIS profile, outside the "
            "plugin folder: plugin updates keep it) with uv when it is installed, else with Python's venv, "
            "from the Python interpreter given, or else the newest Python 3.10+ found on this machine. The engine "
            "(carried by the plugin) is installed with the onnxruntime that fits the machine: onnxruntime-gpu "
            "with an NVIDIA driver, DirectML on other Windows machines, otherwise the CPU package.\n\n"
            "Offline, give a wheelhouse: a folder of wheels built on a connected machine with "
            "scripts/build_wheelhouse.sh (or python -m engine wheelhouse --out DIR --flavour cpu|cuda|directml).\n\n"
            "The new environment replaces the previous one only once the engine runs in it: a failed or cancelled "
            "set-up leaves the previous one as it was. The log is kept beside the environment (engine-setup.log). "
            "Afterwards the toolbox's algorithms use it; Diagnostics says which device the models run on."
        )

    def initAlgorithm(self, configuration=None):  # noqa: N802 (QGIS API)
        python = QgsProcessingParameterFile(self.PYTHON, "Python interpreter (empty: find one)", optional=True)
        python.setHelp("A Python 3.10 or later with its venv module; empty: the newest found on PATH.")
        self.addParameter(python)
        flavour = QgsProcessingParameterEnum(self.FLAVOUR, "onnxruntime flavour", options=list(FLAVOUR_LABELS),
                                             defaultValue=0)
        flavour.setHelp("Automatic looks for an NVIDIA driver with the engine's own probe (as Diagnostics does).")
        self.addParameter(flavour)
        wheelhouse = QgsProcessingParameterFile(self.WHEELHOUSE, "Wheelhouse folder (offline; empty: package index)",
                                                behavior=QgsProcessingParameterFile.Behavior.Folder, optional=True)
        wheelhouse.setHelp("Install only from this folder of wheels, without network.")
        self.addParameter(wheelhouse)
        self.addOutput(QgsProcessingOutputString(self.ENGINE_PYTHON, "The engine's interpreter"))
        self.addOutput(QgsProcessingOutputString(self.FLAVOUR_USED, "onnxruntime flavour installed"))
        self.addOutput(QgsProcessingOutputNumber(self.SECONDS, "Seconds the set-up took"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        result = set_up_engine(self.parameterAsFile(parameters, self.PYTHON, context),
                               FLAVOURS[self.parameterAsEnum(parameters, self.FLAVOUR, context)],
                               self.parameterAsFile(parameters, self.WHEELHOUSE, context), feedback)
        use_engine_python(result["python"])
        feedback.pushInfo(f"The engine now runs in {result['python']} ({result['seconds']} s).")
        return {self.ENGINE_PYTHON: result["python"], self.FLAVOUR_USED: result["flavour"],
                self.SECONDS: result["seconds"]}

"""Processing algorithm: run one task over many scenes (a folder, a list, a STAC ItemCollection) on Ray,
through the engine's batch_over_files task (engine/tasks/batch_over_files.py)."""
import json

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from rs_qgis_plugin.algorithms.model_algorithm import DEVICES, ModelAlgorithm
from rs_qgis_plugin.worker_client import EngineWorker

TASKS = (  # engine task, label
    ("estimate_bathymetry", "Estimate bathymetry"),
    ("classify_seabed", "Classify seabed"),
    ("compress_hyperspectral", "Compress hyperspectral raster (HyCoT)"),
    ("decompress_hyperspectral", "Decompress hyperspectral raster"),
    ("classify_scenes", "Classify scenes (BigEarthNet patch folders)"),
    ("map_crops", "Map crops (a folder of dated S2/S1 files per tile)"),
    ("run_onnx", "Run ONNX model"),
    ("build_search_index", "Build search index (one index of every scene)"),
)
CANCELLED = ("Cancelled: the Ray tasks were stopped; the scenes that finished are kept in the output folder "
             "(listed in batch-manifest.jsonl). Run again with the same output folder to do the rest.")


class BatchOverFiles(ModelAlgorithm):
    FOLDER, PATTERN, LIST, TASK = "FOLDER", "PATTERN", "LIST", "TASK"
    ASSET_BANDS, PARAMETERS, OUTPUT_DIR = "ASSET_BANDS", "PARAMETERS", "OUTPUT_DIR"
    RAY_ADDRESS, WORKERS, GPUS_PER_TASK, MAX_IN_FLIGHT = "RAY_ADDRESS", "WORKERS", "GPUS_PER_TASK", "MAX_IN_FLIGHT"
    SKIP_FAILED, MANIFEST = "SKIP_FAILED", "MANIFEST"
    DONE, FAILED, SKIPPED, SCENES_PER_S = "DONE", "FAILED", "SKIPPED", "SCENES_PER_S"

    task = "batch_over_files"
    other_model_tasks_except = ()  # the MODEL selector offers every installed model
    display_name = "Batch over files"
    group_name, group_id = "Batch", "batch"
    help_text = (
        "Runs one of the toolbox's tasks over many scenes on Ray (Moritz et al., OSDI 2018): a local Ray on "
        "this computer, or a Ray cluster given by its address. Each scene is one Ray task; a task whose "
        "worker dies runs again. Each scene's outputs go to the output folder under the scene's name "
        "(<scene>.tif; .gpkg for scene labels; one search index in index/), written whole or not at all.\n\n"
        "The output folder's batch-manifest.jsonl lists every finished scene (input, output, status, "
        "seconds, device, error): running again with the same output folder skips the finished scenes and "
        "runs the failed and the new ones. Cancel stops the Ray tasks and keeps the scenes that finished.\n\n"
        "Needs Ray in the engine's Python (pip install '.[batch]' in the toolbox folder)."
    )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.add_parameter(
            QgsProcessingParameterFile(self.FOLDER, "Folder of scenes", QgsProcessingParameterFile.Behavior.Folder,
                                       optional=True),
            "Its raster files are the scenes (every sub-folder too); for scene labels and crop maps, each "
            "folder of rasters below it is one scene (a BigEarthNet root: its Sentinel-2 patch folders, each "
            "with its Sentinel-1 partner). Give this or a list.")
        self.add_parameter(
            QgsProcessingParameterString(self.PATTERN, "File pattern in the folder", optional=True),
            "Only the files or folders matching this glob pattern below the folder, e.g. **/*_L2A.tif "
            "(** descends into sub-folders). Empty: see the folder's help.")
        self.add_parameter(
            QgsProcessingParameterFile(self.LIST, "List of scenes or STAC ItemCollection", optional=True,
                                       fileFilter="Scene lists (*.txt);;STAC ItemCollections (*.json)"),
            "A .txt file with one raster file or folder per line (relative to the list's folder), or a STAC "
            "ItemCollection .json whose items' assets are local files (then give the asset band mapping).")
        self.add_parameter(
            QgsProcessingParameterEnum(self.TASK, "Task", options=[label for _, label in TASKS], defaultValue=0),
            "What runs on every scene.")
        self.add_model_parameter(
            "The task's model for every scene. Empty: the task's shipped model.", default_model="the task's own")
        self.add_parameter(
            QgsProcessingParameterString(self.ASSET_BANDS, "STAC asset band mapping", optional=True),
            "For a STAC ItemCollection: the model band each asset holds, as ASSET=BAND pairs, e.g. "
            "blue=B02,green=B03,red=B04,nir=B08 (a multi-band asset: visual=B04+B03+B02).")
        self.add_parameter(
            QgsProcessingParameterString(self.PARAMETERS, "Task parameters (JSON)", optional=True),
            'Further parameters of the task for every scene, as the engine names them, e.g. {"ratio": 16} '
            'for compression or {"threshold": 0.4} for scene labels.')
        self.add_device_parameter()
        self.add_parameter(
            QgsProcessingParameterFolderDestination(self.OUTPUT_DIR, "Output folder"),
            "Where the scenes' outputs and batch-manifest.jsonl go. The same folder again resumes a run.")
        self.add_parameter(
            QgsProcessingParameterString(self.RAY_ADDRESS, "Ray address", optional=True),
            "Empty: a local Ray on this computer. 'auto': the Ray cluster this computer is part of. "
            "ray://head-node:10001: a remote cluster, whose nodes have the toolbox installed and see the "
            "input and output paths (a shared filesystem).")
        self.add_parameter(
            QgsProcessingParameterNumber(self.WORKERS, "Scenes at once (local Ray)",
                                         QgsProcessingParameterNumber.Type.Integer, optional=True, minValue=1),
            "How many scenes the local Ray runs at the same time. Empty: one per CPU core.")
        self.add_parameter(
            QgsProcessingParameterNumber(self.GPUS_PER_TASK, "GPUs per scene", QgsProcessingParameterNumber.Type.Double,
                                         defaultValue=0, minValue=0),
            "0: scenes run on CPUs. 1: each scene has a GPU of its own; 0.25: four scenes share a GPU.")
        self.add_parameter(
            QgsProcessingParameterNumber(self.MAX_IN_FLIGHT, "Scenes in flight", QgsProcessingParameterNumber.Type.Integer,
                                         optional=True, minValue=1),
            "Most scenes submitted to Ray at once. Empty: twice the cluster's CPUs.")
        self.add_parameter(
            QgsProcessingParameterBoolean(self.SKIP_FAILED, "Only report scenes that failed before", False),
            "Off: scenes that failed in an earlier run with this output folder run again. On: they are only "
            "reported.")
        self.addOutput(QgsProcessingOutputFile(self.MANIFEST, "Manifest (JSON lines)"))
        for key, description in ((self.DONE, "Scenes done by this run"), (self.FAILED, "Scenes that failed"),
                                 (self.SKIPPED, "Scenes finished before (skipped)"),
                                 (self.SCENES_PER_S, "Scenes per second")):
            self.addOutput(QgsProcessingOutputNumber(key, description))
        self.add_run_outputs()

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        request = self.batch_request(parameters, context)
        try:
            with EngineWorker() as worker:
                result = worker.run(self.task, request, feedback)
        except QgsProcessingException:
            if feedback.isCanceled():
                raise QgsProcessingException(CANCELLED) from None
            raise
        for failed in result["failed_scenes"]:
            feedback.reportError(f"{failed['scene']}: {failed['error']}")
        if result["cancelled"]:
            feedback.pushWarning(CANCELLED)
        feedback.pushInfo(f"{result['done']} scenes done, {result['failed']} failed, {result['skipped']} finished "
                          f"before; {result['scenes_per_s']} scenes/s on {result['workers']} Ray workers")
        return {self.OUTPUT_DIR: result["outputs"]["output_dir"], self.MANIFEST: result["outputs"]["manifest"],
                self.DONE: result["done"], self.FAILED: result["failed"], self.SKIPPED: result["skipped"],
                self.SCENES_PER_S: result["scenes_per_s"], self.DEVICE_USED: ", ".join(result["devices"]),
                self.SECONDS: result["seconds"], self.WARNINGS: "\n".join(result["warnings"])}

    def batch_request(self, parameters, context) -> dict:
        """The engine's batch_over_files params from the dialog's values."""
        folder = self.parameterAsFile(parameters, self.FOLDER, context)
        listing = self.parameterAsFile(parameters, self.LIST, context)
        pattern = self.parameterAsString(parameters, self.PATTERN, context).strip()
        if bool(folder) == bool(listing):
            raise QgsProcessingException("Give either a folder of scenes or a list of scenes (a .txt list or a "
                                         "STAC ItemCollection .json), not both and not neither.")
        if pattern and not folder:
            raise QgsProcessingException("A file pattern applies to the folder of scenes; give the folder too.")
        text = self.parameterAsString(parameters, self.PARAMETERS, context).strip()
        try:
            task_params = json.loads(text) if text else {}
        except ValueError as error:
            raise QgsProcessingException(f"Task parameters are not JSON ({error}); write them like "
                                         '{"ratio": 16}') from None
        if not isinstance(task_params, dict):
            raise QgsProcessingException('Task parameters must be a JSON object, like {"ratio": 16}.')
        task_params["device"] = DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)][0]
        model = self.parameterAsFile(parameters, self.MODEL, context)
        if model:
            task_params["model"] = model
        request = {
            "task": TASKS[self.parameterAsEnum(parameters, self.TASK, context)][0],
            "inputs": f"{folder.rstrip('/')}/{pattern}" if pattern else folder or listing,
            "output_dir": self.parameterAsFileOutput(parameters, self.OUTPUT_DIR, context),
            "params": task_params,
            "gpus_per_task": self.parameterAsDouble(parameters, self.GPUS_PER_TASK, context),
            "skip_failed": self.parameterAsBoolean(parameters, self.SKIP_FAILED, context),
            "asset_bands": self.parameterAsString(parameters, self.ASSET_BANDS, context).strip(),
            "ray_address": self.parameterAsString(parameters, self.RAY_ADDRESS, context).strip(),
            "workers": self.optional_int(parameters, self.WORKERS, context),
            "max_in_flight": self.optional_int(parameters, self.MAX_IN_FLIGHT, context),
        }
        return {key: value for key, value in request.items() if value not in (None, "")}

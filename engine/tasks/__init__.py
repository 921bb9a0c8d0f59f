"""The engine's task registry: the only names the worker and the CLI will run.

Parameters are validated here, once, against each task's declared parameters (name -> (form,
required), engine.tasks.parameters); nothing else from a request reaches the tasks.
"""
from __future__ import annotations

from dataclasses import asdict

from engine.doctor import prepare_cuda, why_not_cuda
from engine.errors import EngineError
from engine.pipeline import IsCancelled, Progress
from engine.runtime import Model
from engine.tasks.bathymetry import EstimateBathymetry
from engine.tasks.batch_over_files import BatchOverFiles
from engine.tasks.contract_options import SetContract
from engine.tasks.crop_map import MapCrops
from engine.tasks.hycot import CompressHyperspectral, DecompressHyperspectral
from engine.tasks.import_model import ImportModel
from engine.tasks.model_store import DownloadModel, InstalledModels
from engine.tasks.parameters import PATH, describe, mismatch
from engine.tasks.run_onnx import RunOnnx
from engine.tasks.scene_labels import ClassifyScenes
from engine.tasks.search_changes import SearchChanges
from engine.tasks.search_index import BuildSearchIndex
from engine.tasks.search_similar import SearchSimilar
from engine.tasks.search_text import SearchText
from engine.tasks.seabed import ClassifySeabed

RASTER_TASKS = {task.name: task for task in (
    EstimateBathymetry(), ClassifySeabed(), CompressHyperspectral(), DecompressHyperspectral(),
    ClassifyScenes(), MapCrops(), RunOnnx())}
SEARCH_TASKS = {task.name: task for task in (BuildSearchIndex(), SearchText(), SearchSimilar(), SearchChanges())}
STORE_TASKS = {task.name: task for task in (DownloadModel(), InstalledModels(), ImportModel())}
MODEL_FILE_TASKS = {task.name: task for task in (SetContract(),)}  # write into model files
BATCH_TASKS = {task.name: task for task in (BatchOverFiles(),)}  # many scenes on Ray
TASKS = RASTER_TASKS | SEARCH_TASKS | STORE_TASKS | MODEL_FILE_TASKS | BATCH_TASKS
MODEL_TASKS = {name: task for name, task in TASKS.items() if hasattr(task, "model_path")}  # with a default image model


def describe_model(params: dict, progress: Progress, cancelled: IsCancelled) -> dict:
    """The contract of a model (a task's default model when none is given)."""
    path = params.get("model") or MODEL_TASKS[params.get("task", "estimate_bathymetry")].model_path({})
    model = Model(path, "cpu")
    return {"model": path, "contract": asdict(model.contract)}


DESCRIBE_PARAMS = {"model": (PATH, False), "task": (str, False)}


def validate(task: str, params: dict) -> dict:
    """Check a request against the task's declared parameters; return the params to run with."""
    declared = DESCRIBE_PARAMS if task == "describe_model" else getattr(TASKS.get(task), "params", None)
    if declared is None:
        raise EngineError(f"unknown task {task!r}; known tasks: {', '.join(task_names())}")
    if not isinstance(params, dict):
        raise EngineError("params must be a JSON object")
    unknown = set(params) - set(declared)
    if unknown:
        raise EngineError(f"task {task}: unknown parameter(s) {sorted(unknown)}; allowed: {sorted(declared)}")
    for name, (form, required) in declared.items():
        value = params.get(name)
        if value is None or value == "":
            if required:
                raise EngineError(f"task {task}: parameter {name!r} is required")
            continue
        problem = mismatch(value, form)
        if problem:
            raise EngineError(f"task {task}: parameter {name!r} must be {describe(form)}; {problem}")
    if task == "describe_model" and params.get("task") not in (None, *MODEL_TASKS):
        raise EngineError(f"describe_model: task must be one of {sorted(MODEL_TASKS)}")
    return {k: v for k, v in params.items() if v is not None and v != ""}


def run_task(task: str, params: dict, progress: Progress, cancelled: IsCancelled) -> dict:
    params = validate(task, params)
    if task == "describe_model":
        return describe_model(params, progress, cancelled)
    if params.get("device", "auto") != "cpu":
        prepare_cuda()
    result = TASKS[task].run(params, progress, cancelled)
    if result.get("device") == "CPUExecutionProvider" and params.get("device", "auto") != "cpu":
        result["device_note"] = why_not_cuda()  # said in the run's log: why a GPU, if any, was not used
    return result


def task_names() -> list[str]:
    return [*TASKS, "describe_model"]

"""Worker tasks over the catalogue of published models (engine/model_catalogue.py): download a
checkpoint, list the installed ONNX models."""
from __future__ import annotations

from engine.model_catalogue import download_published, find_model, installed_models
from engine.pipeline import IsCancelled, Progress
from engine.tasks.parameters import PATH


class DownloadModel:
    name = "download_model"
    params = {"id": (str, True), "folder": (PATH, False)}

    def run(self, params: dict, progress: Progress, cancelled: IsCancelled) -> dict:
        return download_published(find_model(params["id"]), params.get("folder"), progress, cancelled)


class InstalledModels:
    name = "installed_models"
    params = {}

    def run(self, params: dict, progress: Progress, cancelled: IsCancelled) -> dict:
        return installed_models()

"""Where the engine lives: the Python interpreter that runs it and the folder it runs in.

The interpreter is a Processing setting (Settings > Options > Processing > Providers > Remote
Sensing AI Toolbox); the environment variable RSAI_PYTHON overrides it, which is how batch jobs
and qgis_process pick an interpreter without touching the profile.
"""
import os
from pathlib import Path

from processing.core.ProcessingConfig import ProcessingConfig, Setting

ENGINE_PYTHON_SETTING = "RSAI_ENGINE_PYTHON"
ENGINE_PYTHON_ENV = "RSAI_PYTHON"
REPO_ROOT = Path(__file__).resolve().parent.parent


def default_engine_python() -> str:
    """The repository's own environment when the plugin runs from a checkout, else python3."""
    for candidate in (REPO_ROOT / ".venv" / "bin" / "python", REPO_ROOT / ".venv" / "Scripts" / "python.exe"):
        if candidate.exists():
            return str(candidate)
    return "python3"


def add_settings(group: str) -> None:
    ProcessingConfig.addSetting(
        Setting(
            group,
            ENGINE_PYTHON_SETTING,
            "Python interpreter that runs the engine (needs numpy, onnxruntime, rasterio; "
            f"the environment variable {ENGINE_PYTHON_ENV} overrides it)",
            default_engine_python(),
        )
    )
    ProcessingConfig.readSettings()


def remove_settings() -> None:
    ProcessingConfig.removeSetting(ENGINE_PYTHON_SETTING)


def engine_python() -> str:
    return (
        os.environ.get(ENGINE_PYTHON_ENV)
        or ProcessingConfig.getSetting(ENGINE_PYTHON_SETTING)
        or default_engine_python()
    )


def engine_folder() -> str | None:
    """The checkout holding engine/ (the worker's working directory); None when the plugin was
    installed from a zip, in which case the engine must be installed in the interpreter's
    environment (``pip install <repo>``)."""
    return str(REPO_ROOT) if (REPO_ROOT / "engine" / "__init__.py").exists() else None

"""Where the engine lives: the Python interpreter that runs it and the folder it runs in.

The interpreter is a Processing setting (Settings > Options > Processing > Providers > Remote
Sensing AI Toolbox); the environment variable RSAI_PYTHON overrides it, which is how batch jobs
and qgis_process pick an interpreter without touching the profile. Without either: this checkout's
.venv when the plugin runs from a checkout, else the environment the Engine set-up made in the
profile folder (rs_qgis_plugin/engine_setup.py).
"""
import os
import sys
from pathlib import Path

from processing.core.ProcessingConfig import ProcessingConfig, Setting
from qgis.core import QgsApplication

ENGINE_PYTHON_SETTING = "RSAI_ENGINE_PYTHON"
ENGINE_PYTHON_ENV = "RSAI_PYTHON"
PLUGIN_DIR = Path(__file__).resolve().parent
REPO_ROOT = PLUGIN_DIR.parent
FALLBACK_PYTHON = "python3"


def engine_wheel() -> Path | None:
    """The engine wheel the plugin zip carries (engine, shipped models, catalogue); None in a checkout."""
    wheels = sorted((PLUGIN_DIR / "engine_wheel").glob("rs_ai_toolbox-*.whl"))
    return wheels[-1] if wheels else None


def engine_environment_dir() -> Path:
    """The Engine set-up's environment: in the QGIS profile folder, outside the plugin folder, so that
    plugin updates keep it."""
    return Path(QgsApplication.qgisSettingsDirPath()) / "rsai-toolbox" / "engine-env"


def environment_python(environment: Path) -> Path:
    return environment / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def default_engine_python() -> str:
    """The repository's own environment when the plugin runs from a checkout, else the Engine set-up's
    environment, else python3."""
    for candidate in (environment_python(REPO_ROOT / ".venv"), environment_python(engine_environment_dir())):
        if candidate.exists():
            return str(candidate)
    return FALLBACK_PYTHON


def engine_is_set_up() -> bool:
    """Whether an engine interpreter was named or made (the first use of the plugin offers the set-up otherwise)."""
    return engine_python() != FALLBACK_PYTHON


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
    setting = ProcessingConfig.getSetting(ENGINE_PYTHON_SETTING)
    return (
        os.environ.get(ENGINE_PYTHON_ENV)
        or (setting if setting != FALLBACK_PYTHON else None)  # a profile saved before the set-up existed
        or default_engine_python()
    )


def use_engine_python(python: str) -> None:
    """Make ``python`` the engine's interpreter in the profile's settings."""
    ProcessingConfig.setSettingValue(ENGINE_PYTHON_SETTING, python)


def engine_folder() -> str | None:
    """The checkout holding engine/ (the worker's working directory); None when the plugin was
    installed from a zip, in which case the engine must be installed in the interpreter's
    environment (``pip install <repo>``)."""
    return str(REPO_ROOT) if (REPO_ROOT / "engine" / "__init__.py").exists() else None

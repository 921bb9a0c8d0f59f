"""Build the installable QGIS plugin zip: dist/rs_qgis_plugin-<version>.zip.

The zip holds rs_qgis_plugin/ without caches, with metadata.txt as a real file (in the checkout
the plugin folder only links to the repository's top-level metadata.txt, whose version names the
zip), a README that says where the engine runs, and the engine itself as a wheel
(rs_qgis_plugin/engine_wheel/rs_ai_toolbox-<version>-py3-none-any.whl: the engine package, the
shipped models and their cards, the model catalogue), which is not on PyPI: the Engine set-up
installs it with its dependencies into the engine's own environment.

    python scripts/package_plugin.py [--dist FOLDER]    (needs setuptools: run it with .venv/bin/python)
"""
import argparse
import configparser
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PLUGIN = "rs_qgis_plugin"
METADATA = REPO_ROOT / "metadata.txt"
ENGINE_WHEEL_DIR = "engine_wheel"  # in the plugin folder; rs_qgis_plugin/engine_setup.py installs what it holds
README = """Remote Sensing AI Toolbox: QGIS Processing provider (rsai).

The models do not run inside QGIS: the engine runs in its own Python environment. On first use,
Plugins > Remote Sensing AI Toolbox > Engine set-up (or the Processing algorithm rsai:setup_engine)
creates it in the QGIS profile folder (rsai-toolbox/engine-env, kept across plugin updates) from a
Python found on the machine, and installs the engine (engine_wheel/ in this folder) with the right
onnxruntime: from the package index, or offline from a wheelhouse folder built on a connected
machine with scripts/build_wheelhouse.sh of the toolbox's source. Diagnostics tells which device
the models run on. An interpreter of your own can be named in Settings > Options > Processing >
Providers > Remote Sensing AI Toolbox (or in the environment variable RSAI_PYTHON).
"""


def plugin_version(metadata: Path = METADATA) -> str:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(metadata, encoding="utf-8")
    return parser["general"]["version"]


def plugin_files(plugin_dir: Path):
    """The plugin's files to ship: no caches, and not the metadata.txt link (added as a file)."""
    for path in sorted(plugin_dir.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path != plugin_dir / "metadata.txt":
            yield path


WHEEL_SOURCES = ("pyproject.toml", "README.md", "engine", "training", "rs_qgis_plugin", "models_onnx")


def engine_wheel(folder: Path) -> Path:
    """The engine's wheel, built from pyproject.toml by the running interpreter's pip and setuptools, in
    a copy of the sources (the build leaves build/ and egg-info behind, which would shadow the installed
    metadata of the checkout)."""
    source = folder / "source"
    source.mkdir()
    for name in WHEEL_SOURCES:
        if (REPO_ROOT / name).is_dir():
            shutil.copytree(REPO_ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO_ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(folder), str(source)], check=True)
    return next(folder.glob("rs_ai_toolbox-*.whl"))


def build(dist: Path) -> Path:
    dist.mkdir(parents=True, exist_ok=True)
    archive = dist / f"{PLUGIN}-{plugin_version()}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle, tempfile.TemporaryDirectory() as wheels:
        for path in plugin_files(REPO_ROOT / PLUGIN):
            bundle.write(path, path.relative_to(REPO_ROOT).as_posix())
        wheel = engine_wheel(Path(wheels))
        bundle.write(wheel, f"{PLUGIN}/{ENGINE_WHEEL_DIR}/{wheel.name}", zipfile.ZIP_STORED)  # a wheel is compressed
        bundle.write(METADATA, f"{PLUGIN}/metadata.txt")
        bundle.writestr(f"{PLUGIN}/README.txt", README)
    return archive


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, default=REPO_ROOT / "dist", help="folder for the zip")
    print(build(parser.parse_args(argv).dist))


if __name__ == "__main__":
    main()

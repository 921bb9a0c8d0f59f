"""Build the installable QGIS plugin zip: dist/rs_qgis_plugin-<version>.zip.

The zip holds rs_qgis_plugin/ without caches, with metadata.txt as a real file (in the checkout
the plugin folder only links to the repository's top-level metadata.txt, whose version names the
zip) and a README that says where the engine runs.

    python scripts/package_plugin.py [--dist FOLDER]
"""
import argparse
import configparser
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PLUGIN = "rs_qgis_plugin"
METADATA = REPO_ROOT / "metadata.txt"
README = """Remote Sensing AI Toolbox: QGIS Processing provider (rsai).

The models do not run inside QGIS: the engine runs in an external Python interpreter named in
Settings > Options > Processing > Providers > Remote Sensing AI Toolbox (or in the environment
variable RSAI_PYTHON). That interpreter needs the toolbox installed (pip install <toolbox folder>,
which brings numpy, onnxruntime and rasterio); the toolbox's scripts/setup.sh builds such an
environment in <toolbox folder>/.venv.
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


def build(dist: Path) -> Path:
    dist.mkdir(parents=True, exist_ok=True)
    archive = dist / f"{PLUGIN}-{plugin_version()}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        for path in plugin_files(REPO_ROOT / PLUGIN):
            bundle.write(path, path.relative_to(REPO_ROOT).as_posix())
        bundle.write(METADATA, f"{PLUGIN}/metadata.txt")
        bundle.writestr(f"{PLUGIN}/README.txt", README)
    return archive


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, default=REPO_ROOT / "dist", help="folder for the zip")
    print(build(parser.parse_args(argv).dist))


if __name__ == "__main__":
    main()

# Source this: environment for running the plugin in headless QGIS (qgis_process) from this checkout.
# A private QGIS profile in .qgis-profile/ with the plugin enabled; the plugin folder is this repo.
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export QT_QPA_PLATFORM=offscreen
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/runtime-$(id -u)}"
mkdir -p -m 700 "$XDG_RUNTIME_DIR"
export QGIS_PLUGINPATH="$repo"
export QGIS_CUSTOM_CONFIG_PATH="$repo/.qgis-profile"
export RSAI_PYTHON="$repo/.venv/bin/python"
mkdir -p "$QGIS_CUSTOM_CONFIG_PATH/profiles/default/QGIS"
ini="$QGIS_CUSTOM_CONFIG_PATH/profiles/default/QGIS/QGIS3.ini"
grep -q '^rs_qgis_plugin=true' "$ini" 2>/dev/null || printf '[PythonPlugins]\nrs_qgis_plugin=true\n' >> "$ini"

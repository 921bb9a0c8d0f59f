#!/usr/bin/env bash
# Set up everything this repository needs on a fresh Debian 12 machine (run as root or with sudo):
# QGIS from apt and a Python environment in .venv built on Debian's interpreter.
#   scripts/setup.sh            engine + plugin (enough to run models through qgis_process)
#   scripts/setup.sh --training also the training, test and batch stack (torch, torchgeo, Lightning, Ray, ...)
# Facts behind each step: ../shared/environment.md. Safe to run again: finished steps are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
# The onnxruntime flavour (pyproject extras cpu/cuda/directml), exactly one: onnxruntime-gpu with NVIDIA's CUDA
# packages on Linux x86_64 for the training stack (torch brings the same packages), with an NVIDIA driver, or where
# it is installed already; else the CPU package.
flavour=cpu
if [ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] && { [ "${1:-}" = "--training" ] || command -v nvidia-smi >/dev/null \
    || .venv/bin/python -m pip show -q onnxruntime-gpu >/dev/null 2>&1; }; then
  flavour=cuda
fi
extras="$flavour"
[ "${1:-}" = "--training" ] && extras="$flavour,training,test,batch"

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v qgis_process.bin >/dev/null 2>&1 || ! dpkg -s libgdal-dev xvfb >/dev/null 2>&1; then
  echo "== installing QGIS and GDAL/PROJ headers from apt"
  sudo_if_needed apt-get update -qq
  DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -qq --no-install-recommends \
    qgis python3-qgis qgis-providers libgdal-dev proj-bin gdal-bin python3-venv python3-dev build-essential \
    xvfb xauth >/dev/null  # xvfb: the plugin's GUI tests run a real QGIS desktop on a virtual display
fi

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv on Debian's python3 (QGIS's own modules stay importable)"
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)

# Native libraries must match QGIS's: pyproj and rasterio are built against the system PROJ/GDAL.
if ! .venv/bin/python -c "import pyproj, sys; sys.exit(pyproj.__version__ != '3.6.1')" 2>/dev/null; then
  echo "== building pyproj 3.6.1 against system PROJ (~1.5 min)"
  PIP_CONSTRAINT=scripts/build-constraints-pyproj.txt "${pip[@]}" --no-binary pyproj pyproj==3.6.1
fi
if ! .venv/bin/python -c "import rasterio" 2>/dev/null; then
  echo "== building rasterio against system GDAL (~4 min)"
  "${pip[@]}" --no-binary rasterio 'rasterio>=1.4,<1.5' 'numpy<2'
fi
echo "== installing the project (${extras:-runtime only})"
if [ "${1:-}" = "--training" ]; then
  "${pip[@]}" -e ".[$extras]"
  # configilm, the reBEN authors' model library (`python -m training import --source reben` rebuilds their
  # networks with it), pins transformers<5 for its text models; its image classifiers (timm) work with the
  # project's transformers 5, so it goes in without its dependencies (appdirs is the one the project lacks).
  "${pip[@]}" appdirs==1.4.4
  "${pip[@]}" --no-deps configilm==0.7.1
else
  "${pip[@]}" -e ".[$extras]"
fi
# The engine set-up tests build an offline wheelhouse from this environment's packages; the onnxruntime
# flavour the set-up picks on a machine without an NVIDIA driver (the CPU build) is not installed here,
# so its wheel is kept beside them.
ort_version="$(.venv/bin/python -c 'import onnxruntime; print(onnxruntime.__version__)')"
if ! ls .cache/engine-wheels/onnxruntime-"$ort_version"-*.whl >/dev/null 2>&1; then
  .venv/bin/python -m pip download -q --disable-pip-version-check --no-deps "onnxruntime==$ort_version" -d .cache/engine-wheels
fi
echo "== set-up done: $(.venv/bin/python -c 'import onnxruntime as o; print("onnxruntime", o.__version__, o.get_available_providers())')"

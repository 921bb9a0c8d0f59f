#!/usr/bin/env bash
# Set up everything (QGIS, engine, training stack) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --training
source scripts/qgis_env.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"

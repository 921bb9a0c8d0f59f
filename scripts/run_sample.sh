#!/usr/bin/env bash
# Set up (QGIS + engine) and run the main job on the bundled sample scene through real qgis_process:
# bathymetry and seabed classes for sample_data/agia_napa_sim_s2.tif, written to out/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/qgis_env.sh
mkdir -p out
scene=sample_data/agia_napa_sim_s2.tif
for job in "estimate_bathymetry OUTPUT=out/depth.tif" "classify_seabed OUTPUT=out/seabed.tif"; do
  set -- $job
  echo "== qgis_process run rsai:$1 -- INPUT=$scene $2"
  qgis_process.bin --json run "rsai:$1" -- "INPUT=$PWD/$scene" "OUTPUT=$PWD/${2#OUTPUT=}" > "out/$1.json" 2> out/qgis_process.log \
    || { cat out/qgis_process.log; exit 1; }
  .venv/bin/python - "out/$1.json" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
print(f"   device: {results['DEVICE_USED']}  tiles: {results['TILES']}  seconds: {results['SECONDS']}")
print(f"   output: {results['OUTPUT']}")
PY
done

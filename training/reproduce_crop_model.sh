#!/usr/bin/env bash
# Rebuild models_onnx/crop_tsvit_s1s2_sim.onnx (S1+S2 TSViT, synchronised class token fusion) from
# SIMULATED crop phenology in PASTIS-R's layout (training/simulation/crop_phenology.py), with the
# commands and seeds its model card lists, and evaluate it on the test fold and on the test fold of
# an independently simulated set. About 8 minutes on one CPU thread; results can differ slightly
# across machines and thread counts.
# COMPARE="s2 early cross-attention sync-class-token" also trains, each for 400 steps with the same
# configuration, an S2-only TSViT and the three fusions, evaluated the same way (not exported):
# about 12 more minutes.
# For a real model: point --data at the real PASTIS-R and train the PASTIS24 configuration (the
# defaults of `fit --task crop`) on a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
work=${WORK:-out/crop}
cpu=(--threads 1 --accelerator cpu)
small=(--tile-size 24 --patch-size 4 --tsvit-dim 64 --temporal-depth 2 --spatial-depth 2 --tsvit-heads 4
       --tsvit-head-dim 16 --max-dates-s2 16 --max-dates-s1 16 --batch-size 8 --lr 1e-3 --seed 0)
rm -rf "$work/pastis" "$work/heldout"  # regenerated identically from the seeds

$python -m training simulate-pastis-r --out "$work/pastis" --patches 120 --size 48 --tiles 4 --seed 0
$python -m training simulate-pastis-r --out "$work/heldout" --patches 60 --size 48 --tiles 3 --seed 1

evaluate() {  # checkpoint folder: test fold, and test fold of the independent simulation
  $python -m training evaluate --task crop --data "$work/pastis" --split test --checkpoint "$1/checkpoint.pt" \
    "${cpu[@]}" --json-out "$1/test_metrics.json"
  $python -m training evaluate --task crop --data "$work/heldout" --split test --checkpoint "$1/checkpoint.pt" \
    "${cpu[@]}" --json-out "$1/heldout_metrics.json"
}

$python -m training fit --task crop --data "$work/pastis" --modalities s1,s2 --fusion sync-class-token \
  "${small[@]}" --max-steps 1000 "${cpu[@]}" --out "$work/shipped"
evaluate "$work/shipped"
$python -m training export --task crop --checkpoint "$work/shipped/checkpoint.pt" --overlap 8 \
  --metrics "$work/shipped/test_metrics.json" --threads 1 --out models_onnx/crop_tsvit_s1s2_sim.onnx

for run in ${COMPARE:-}; do
  if [ "$run" = s2 ]; then variant=(--modalities s2); else variant=(--modalities s1,s2 --fusion "$run"); fi
  $python -m training fit --task crop --data "$work/pastis" "${variant[@]}" "${small[@]}" --max-steps 400 \
    "${cpu[@]}" --out "$work/compare/$run"
  evaluate "$work/compare/$run"
done

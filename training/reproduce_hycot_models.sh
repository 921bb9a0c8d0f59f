#!/usr/bin/env bash
# Rebuild models_onnx/hycot_cr{4,8,16,32}_enmap_sim_{encoder,decoder}.onnx from SIMULATED EnMAP-like
# data (training/simulation/hyperspectral.py), with the commands and seeds their model cards list.
# HyCoT (Fuchs, Rasti & Demir 2024) on 202 bands, trained on the hard (tilewise) split's train tiles and
# evaluated on its test tiles. --final-norm: the shipped models have a LayerNorm after the last
# transformer block that the paper's model has not (model cards). 800 steps per model: 6-8 minutes
# each on one thread of 2 shared CPU cores. Same commands and seeds as the cards; across machines,
# thread counts (THREADS) and library versions the weights need not be bit-identical.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
work=${WORK:-out/hycot_models}
threads=${THREADS:-1}  # as the shipped models were trained (other trainings shared the CPU)
cpu=(--threads "$threads" --accelerator cpu)

$python -m training simulate-hyperspectral --out "$work/data" --patches 300 --size 64 --patches-per-tile 4 --seed 1

for cr in 4 8 16 32; do
  run="$work/cr$cr"
  $python -m training fit --task hycot --cr "$cr" --data "$work/data" --strategy hard --max-steps 800 \
    --batch-size 1 --pixels-per-patch 16 --lr 1e-3 --final-norm --seed 1 "${cpu[@]}" --out "$run"
  $python -m training evaluate --task hycot --data "$work/data" --strategy hard --split test \
    --checkpoint "$run/checkpoint.pt" "${cpu[@]}" --json-out "$run/heldout_metrics.json"
  $python -m training export --task hycot --checkpoint "$run/checkpoint.pt" --metrics "$run/heldout_metrics.json" \
    --tile-size 64 --threads "$threads" --out "models_onnx/hycot_cr${cr}_enmap_sim"
done

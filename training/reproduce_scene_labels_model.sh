#!/usr/bin/env bash
# Rebuild models_onnx/scene_labels_s1s2_fixture.onnx from a GENERATED fixture in BigEarthNet v2.0's
# layout (training/simulation/bigearthnet_fixture.py), with the commands and seeds its model card
# lists. About 15 minutes on 2 shared CPU cores. Results can differ in the last digits across machines.
# For a real model, point prepare at the real reBEN (BigEarthNet v2.0) root instead and train the
# reference ResNet-50 (no --model-width / --model-depth) on a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
work=${WORK:-out/scene_labels}
cpu=(--threads 1 --accelerator cpu)

$python -m training simulate-bigearthnet --out "$work/bigearthnet" --patches 500 --seed 0
$python -m training prepare --task scene-labels --data "$work/bigearthnet" --out "$work/store"

$python -m training fit --task scene-labels --data "$work/store" --modalities s1,s2 --model resnet50 \
  --model-width 16 --model-depth 1 --augment cutmix-lp --epochs 40 --batch-size 16 --seed 0 "${cpu[@]}" \
  --out "$work/resnet"
$python -m training evaluate --task scene-labels --data "$work/store" --split test \
  --checkpoint "$work/resnet/checkpoint.pt" "${cpu[@]}" --json-out "$work/resnet/test_metrics.json"
$python -m training export --task scene-labels --checkpoint "$work/resnet/checkpoint.pt" \
  --metrics "$work/resnet/test_metrics.json" --out models_onnx/scene_labels_s1s2_fixture.onnx

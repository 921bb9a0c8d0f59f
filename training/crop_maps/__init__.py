"""Crop maps from Sentinel-2/1 time series with (multi-modal) TSViT: fit, evaluate, export (CLI in ``cli``)."""

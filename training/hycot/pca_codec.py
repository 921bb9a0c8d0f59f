"""PCA codec: the training-free baseline for hyperspectral compression, as an ONNX encoder/decoder
pair in HyCoT's contract form, so that the engine's compress/decompress tasks run it unchanged.

Encoder: z = (P^T (x - mu) - z_min) / (z_max - z_min), the first L principal components scaled to
[0, 1] with the range seen on the fitting pixels; decoder: x = mu + P (z (z_max - z_min) + z_min).
Both are per-pixel linear maps (1x1 convolutions). x is reflectance / 10000 as for HyCoT.
"""
from __future__ import annotations

import hashlib

import numpy as np
import onnx

from engine.contract import Band, ModelContract, Outputs
from training.hycot.bit_rate import bits_per_pixel_per_channel, latent_channels
from training.input_statistics import principal_axes
from training.pointwise_onnx import pointwise_model

REFLECTANCE_SCALE = 10000.0
LATENT_LEVELS = 65534.0  # engine.tasks.hycot stores z as 1 + round(z * 65534)


def fit_pca_codec(pixels: np.ndarray, ratio: int, band_names: list[str], gsd_m: float = 30.0,
                  name: str | None = None) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """pixels [n, bands] in reflectance x 10000 -> (encoder, decoder) ONNX models."""
    x = pixels.astype(np.float64) / REFLECTANCE_SCALE
    bands = x.shape[1]
    latents = latent_channels(bands, ratio)
    mu, axes = principal_axes(x, latents)
    components = axes.T  # [bands, L]
    projected = (x - mu) @ components
    z_min, z_range = projected.min(axis=0), np.maximum(np.ptp(projected, axis=0), 1e-9)
    pair_id = hashlib.sha256(np.concatenate([mu, components.ravel(), z_min, z_range]).tobytes()).hexdigest()[:16]
    name = name or f"pca-cr{ratio}"
    latent_names = tuple(f"z{i + 1:02d}" for i in range(latents))
    provenance = {"method": "PCA baseline", "cr": ratio, "latent_bits": 16, "pair_id": pair_id,
                  "bits_per_pixel_per_channel": round(bits_per_pixel_per_channel(bands, latents), 4),
                  "training_data": f"{len(x)} pixels given to fit_pca_codec"}
    encoder_contract = ModelContract(
        task="hycot_encoder", name=name, bands=tuple(Band(b) for b in band_names),
        mean=(0.0,) * bands, std=(REFLECTANCE_SCALE,) * bands,
        outputs=Outputs("regression", latent_names), tile_size=128, overlap=0, gsd_m=gsd_m,
        provenance=provenance,
    )
    decoder_contract = ModelContract(
        task="hycot_decoder", name=name, bands=tuple(Band(z) for z in latent_names),
        mean=(1.0,) * latents, std=(LATENT_LEVELS,) * latents,
        outputs=Outputs("regression", tuple(band_names), units="reflectance x 10000", scale=REFLECTANCE_SCALE),
        tile_size=128, overlap=0, gsd_m=gsd_m, provenance=provenance,
    )
    encoder = pointwise_model(encoder_contract, (components / z_range).T, -(mu @ components + z_min) / z_range)
    decoder = pointwise_model(decoder_contract, components * z_range, mu + components @ z_min)
    return encoder, decoder


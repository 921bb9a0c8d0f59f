"""Latent size and bit rate of the learned hyperspectral codecs (HyCoT and the PCA baseline), in the
convention of Fuchs, Rasti & Demir, "HyCoT: A Transformer-Based Autoencoder for Hyperspectral Image
Compression", 2024, and of the authors' code (git.tu-berlin.de/rsim/hycot): CR = C / L and
bpppc = 32 / CR, i.e. every latent value counts as a 32-bit float and C is the number of input
bands before any padding (202 for HySpecNet-11k, not the 204 the encoder pads to).

The compressed GeoTIFFs of this toolbox store 16-bit codes, half the paper's bits; the engine
measures the size of the file itself separately. Torch-free, so the PCA baseline can use it.
"""
from __future__ import annotations

import math

PAPER_LATENT_BITS = 32


def latent_channels(bands: int, compression_ratio: float) -> int:
    """L = ceil(bands / CR), the latent values per pixel."""
    return math.ceil(bands / compression_ratio)


def bits_per_pixel_per_channel(bands: int, latent: int) -> float:
    """The paper's bit rate: 32 L / C (CR 4, 8, 16, 32 on 202 bands: 8.08, 4.12, 2.06, 1.11)."""
    return PAPER_LATENT_BITS * latent / bands

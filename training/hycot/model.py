"""HyCoT: Hyperspectral Compression Transformer (Fuchs, Rasti & Demir, "HyCoT: A Transformer-Based
Autoencoder for Hyperspectral Image Compression", 2024; reference code git.tu-berlin.de/rsim/hycot).

A pixelwise autoencoder. The encoder pads each pixel's spectrum with zeros at its short-wavelength
end to a multiple of ``group_size`` bands, embeds every group of adjacent bands as a token
(202 bands -> 51 tokens of 4), prepends a learnable compression token, adds learnable position
embeddings and runs pre-norm transformer blocks; the compression token then passes through an MLP
to ``L = ceil(bands / compression_ratio)`` latent values in [0, 1]. The decoder maps the latent
values of each pixel back to the spectrum with an MLP. Paper sizes: token width 64, depth 5,
4 heads of width 16, transformer MLP width 8, hidden width 1024.

Compared with the reference code, layer by layer the same (padding, grouping, Linear(4, 64)
embedding, position embeddings over 52 tokens, residual pre-norm attention with a bias-free qkv
projection and MLP Linear(64, 8) -> GELU -> Linear(8, 64), latent head, decoder), except:

- ``final_norm``: the models shipped in models_onnx/ (and every checkpoint written before this
  option existed) have a LayerNorm on the tokens after the last block; the reference has none, and
  neither has a model trained without ``final_norm``.
- The compression token and position embeddings start from N(0, 0.02^2); the reference draws them
  from N(0, 1). This changes training, not the architecture.
- Inputs are clipped to [0, 1] inside the encoder; the reference relies on the data preparation
  (HySpecNet-11k's clip to [0, 10000] and division by 10000), which this reproduces.

The parameter names differ; the authors' published checkpoints load one to one through the name
map of ``training/hycot/importers.py``. The reference also holds ``transformer.skipcat``
convolutions that only its "CAF" mode runs, never HyCoT: they have no counterpart here.

Encoder and decoder are separate modules on images ``[N, channels, H, W]`` (pixels are flattened
inside), so each exports to ONNX on its own: the encoder writes the compressed file, the decoder
reads it.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class SelfAttention(nn.Module):
    """Multi-head self-attention over the spectral tokens of each pixel."""

    def __init__(self, dim: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.to_qkv = nn.Linear(dim, 3 * heads * head_dim, bias=False)
        self.to_out = nn.Linear(heads * head_dim, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        pixels, count, _ = tokens.shape
        qkv = self.to_qkv(tokens).reshape(pixels, count, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        mixed = nn.functional.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.to_out(mixed.transpose(1, 2).reshape(pixels, count, self.heads * self.head_dim))


class TransformerBlock(nn.Module):
    """Pre-norm ViT block: x + attention(norm(x)), then x + MLP(norm(x))."""

    def __init__(self, dim: int, heads: int, head_dim: int, mlp_dim: int) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(dim)
        self.attention = SelfAttention(dim, heads, head_dim)
        self.mlp_norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens + self.attention(self.attention_norm(tokens))
        return tokens + self.mlp(self.mlp_norm(tokens))


class HyCoTEncoder(nn.Module):
    """Reflectance image ``[N, bands, H, W]`` -> latent image ``[N, L, H, W]`` in [0, 1].

    Inputs are clipped to [0, 1] first, as HySpecNet-11k's preprocessing clips reflectance.
    ``final_norm``: a LayerNorm after the last block, as in the shipped models (not the paper's).
    ``sizes``: the widths given, by name (``dim`` ... ``final_norm``).
    """

    def __init__(
        self,
        bands: int,
        latent: int,
        group_size: int = 4,
        dim: int = 64,
        depth: int = 5,
        heads: int = 4,
        head_dim: int = 16,
        mlp_dim: int = 8,
        hidden_dim: int = 1024,
        final_norm: bool = False,
    ) -> None:
        super().__init__()
        self.bands, self.latent, self.group_size = bands, latent, group_size
        self.sizes = {"dim": dim, "depth": depth, "heads": heads, "head_dim": head_dim, "mlp_dim": mlp_dim,
                      "hidden_dim": hidden_dim, "final_norm": final_norm}
        self.tokens = math.ceil(bands / group_size)
        self.padding = self.tokens * group_size - bands
        self.embed = nn.Linear(group_size, dim)
        self.compression_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.position = nn.Parameter(torch.randn(1, self.tokens + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*(TransformerBlock(dim, heads, head_dim, mlp_dim) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim) if final_norm else nn.Identity()
        self.to_latent = nn.Sequential(
            nn.Linear(dim, hidden_dim), nn.LeakyReLU(), nn.Linear(hidden_dim, latent), nn.Sigmoid()
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        n, _, height, width = image.shape
        spectra = image.clamp(0.0, 1.0).permute(0, 2, 3, 1).reshape(-1, self.bands)
        spectra = nn.functional.pad(spectra, (self.padding, 0))
        tokens = self.embed(spectra.reshape(-1, self.tokens, self.group_size))
        tokens = torch.cat([self.compression_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        tokens = self.norm(self.blocks(tokens + self.position))
        latent = self.to_latent(tokens[:, 0])
        return latent.reshape(n, height, width, self.latent).permute(0, 3, 1, 2)


class HyCoTDecoder(nn.Module):
    """Latent image ``[N, L, H, W]`` -> reflectance image ``[N, bands, H, W]`` in [0, 1], per pixel."""

    def __init__(self, latent: int, bands: int, hidden_dim: int = 1024) -> None:
        super().__init__()
        self.latent, self.bands = latent, bands
        self.to_spectrum = nn.Sequential(
            nn.Linear(latent, hidden_dim), nn.LeakyReLU(), nn.Linear(hidden_dim, bands), nn.Sigmoid()
        )

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.to_spectrum(latent.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

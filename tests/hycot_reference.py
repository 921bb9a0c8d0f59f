"""HyCoT as Fuchs, Rasti & Demir publish it, rebuilt for the import tests.

Written from the authors' code (git.tu-berlin.de/rsim/hycot, read in public copies of it:
``models/hycot.py`` class ``HyperspectralCompressionTransformer``, ``utils/checkpoint.py``,
``train.py``), independently of the toolbox's ``training.hycot.model``: the same parameter names
(``patch_to_embedding``, ``comp_token``, ``pos_embedding``,
``transformer.layers.<i>.<0|1>.fn.(norm|fn)``, the ``transformer.skipcat`` convolutions that only
their unused "CAF" mode applies, ``to_latent``, ``patch_deembed``), their zero padding at the
short-wavelength end, their token grouping and their output reshape, which names the spatial axes
``(w h)`` and so is exact on square inputs only. Their PreNorm, Attention and FeedForward blocks are
those of TSViT's reference (``tsvit_reference``): both codes take them from vit-pytorch. Their
weights come from the default initialisation with the compression token and the position
embeddings drawn from N(0, 1).

A checkpoint is saved as their training script leaves ``final.pth.tar`` (``strip_checkpoint``:
``{"state_dict": model.state_dict()}``), the form their test script loads; during training
``last.pth.tar`` and ``best.pth.tar`` also hold ``epoch``, ``loss`` and ``optimizer``.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from tsvit_reference import _Attention, _FeedForward, _PreNorm

TINY = {"hidden_dim": 32, "dim": 16, "depth": 3, "heads": 4, "mlp_dim": 8, "dim_head": 4}  # fast tests


class _Residual(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x) + x


class _Transformer(nn.Module):
    def __init__(self, dim, depth, heads, dim_head, mlp_dim, tokens):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList([_Residual(_PreNorm(dim, _Attention(dim, heads, dim_head))),
                           _Residual(_PreNorm(dim, _FeedForward(dim, mlp_dim)))])
            for _ in range(depth))
        self.skipcat = nn.ModuleList(nn.Conv2d(tokens + 1, tokens + 1, (1, 2), 1, 0) for _ in range(depth - 2))

    def forward(self, x):  # their 'ViT' mode, the one HyCoT uses
        for attention, feed_forward in self.layers:
            x = feed_forward(attention(x))
        return x


class ReferenceHyCoT(nn.Module):
    """``HyperspectralCompressionTransformer(src_channels, target_compression_ratio, patch_depth=4, ...)``."""

    def __init__(self, src_channels=202, target_compression_ratio=16, patch_depth=4, hidden_dim=1024, dim=64,
                 depth=5, heads=4, mlp_dim=8, dim_head=16):
        super().__init__()
        self.src_channels = src_channels
        self.latent_channels = math.ceil(src_channels / target_compression_ratio)
        self.delta_pad = math.ceil(src_channels / patch_depth) * patch_depth - src_channels
        self.num_patches = (src_channels + self.delta_pad) // patch_depth
        self.patch_dim = patch_depth
        self.patch_to_embedding = nn.Linear(patch_depth, dim)
        self.comp_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.randn(1, self.num_patches + 1, dim))
        self.transformer = _Transformer(dim, depth, heads, dim_head, mlp_dim, self.num_patches)
        self.to_latent = nn.Sequential(nn.Linear(dim, hidden_dim), nn.LeakyReLU(),
                                       nn.Linear(hidden_dim, self.latent_channels), nn.Sigmoid())
        self.patch_deembed = nn.Sequential(nn.Linear(self.latent_channels, hidden_dim), nn.LeakyReLU(),
                                           nn.Linear(hidden_dim, src_channels), nn.Sigmoid())

    def compress(self, x):
        _, _, h, w = x.shape
        x = nn.functional.pad(x, (0, 0, 0, 0, self.delta_pad, 0))
        # 'b (n pd) w h -> (b w h) n pd'
        x = x.reshape(x.shape[0], self.num_patches, self.patch_dim, h * w).permute(0, 3, 1, 2)
        x = self.patch_to_embedding(x.reshape(-1, self.num_patches, self.patch_dim))
        x = torch.cat([self.comp_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embedding
        y = self.to_latent(self.transformer(x)[:, 0])
        # '(b w h) d -> b d w h' with w = the input's last axis and h = the one before it
        return y.reshape(-1, w, h, self.latent_channels).permute(0, 3, 1, 2)

    def decompress(self, y):
        return self.patch_deembed(y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def forward(self, x):
        return self.decompress(self.compress(x))


def published_checkpoint(path: Path, network: nn.Module, training_state: bool = False) -> Path:
    """``network`` saved as the authors' ``final.pth.tar`` or, with ``training_state``, as their
    ``best.pth.tar`` after one Adam step (epoch, state_dict, loss and the optimiser's state)."""
    if not training_state:
        torch.save({"state_dict": network.state_dict()}, path)
        return path
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    network(torch.rand(1, network.src_channels, 2, 2)).mean().backward()
    optimizer.step()
    torch.save({"epoch": 12, "state_dict": network.state_dict(), "loss": 0.0021, "optimizer": optimizer.state_dict()},
               path)
    return path

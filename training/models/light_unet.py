"""The light U-Net that MagicBathyNet uses for bathymetry (Agrafiotis et al., IGARSS 2024).

A U-Net (Ronneberger et al., MICCAI 2015) slimmed to four levels with widths
``base, 2*base, 4*base, 8*base`` (32-64-128-256 in the paper), two 3x3 convolutions with ReLU per
level, no BatchNorm, max-pool down, ConvTranspose up and skip connections by concatenation.
Any height and width: as the reference (``bathymetry/magicbathy_unet.py``), each upsampled map is
zero-padded to its skip's size, so real 18x18 Sentinel-2 and 30x30 SPOT-6 patches run whole.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1),
        nn.ReLU(inplace=True),
    )


class _UpBlock(nn.Module):
    """Double the resolution with a transposed convolution, concatenate the skip, convolve."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.upsample = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        self.convolve = _double_conv(2 * out_channels, out_channels)

    def forward(self, coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        upsampled = self.upsample(coarse)
        rows, cols = skip.shape[-2] - upsampled.shape[-2], skip.shape[-1] - upsampled.shape[-1]
        upsampled = F.pad(upsampled, [cols // 2, cols - cols // 2, rows // 2, rows - rows // 2])
        return self.convolve(torch.cat([skip, upsampled], dim=1))


class LightUNet(nn.Module):
    def __init__(self, in_channels: int = 3, out_channels: int = 1, base_channels: int = 32) -> None:
        super().__init__()
        widths = [base_channels * 2**level for level in range(4)]
        self.encoder = nn.ModuleList(
            [_double_conv(in_channels, widths[0])]
            + [_double_conv(widths[level - 1], widths[level]) for level in range(1, 4)]
        )
        self.pool = nn.MaxPool2d(2)
        self.decoder = nn.ModuleList([_UpBlock(widths[level], widths[level - 1]) for level in (3, 2, 1)])
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        skips = []
        features = image
        for level, block in enumerate(self.encoder):
            features = block(features if level == 0 else self.pool(features))
            skips.append(features)
        for block, skip in zip(self.decoder, reversed(skips[:-1])):
            features = block(features, skip)
        return self.head(features)

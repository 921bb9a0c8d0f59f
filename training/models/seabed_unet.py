"""The U-Net MagicBathyNet publishes for seabed classes (Agrafiotis et al., IGARSS 2024).

A U-Net (Ronneberger et al., MICCAI 2015) with widths 64-128-256-512-512, BatchNorm after each
3x3 convolution, max-pool down and bilinear (align_corners) up-sampling; the decoder's first
convolution of each level halves the concatenated channels. Parameter names follow the authors'
code (``inc``, ``down1..4``, ``up1..4``, ``outc``) so that their published state dicts load as they
are. An up-sampled map one pixel short of its skip is padded to it, so any input size runs.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class DoubleConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None) -> None:
        super().__init__()
        mid_channels = mid_channels or out_channels
        self.double_conv = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, 3, padding=1), nn.BatchNorm2d(mid_channels), nn.ReLU(inplace=True),
            nn.Conv2d(mid_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.double_conv(image)


class Down(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.maxpool_conv(image)


class Up(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.conv = DoubleConv(in_channels, out_channels, in_channels // 2)

    def forward(self, coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        coarse = self.up(coarse)
        rows, cols = skip.shape[2] - coarse.shape[2], skip.shape[3] - coarse.shape[3]
        coarse = F.pad(coarse, [cols // 2, cols - cols // 2, rows // 2, rows - rows // 2])
        return self.conv(torch.cat([skip, coarse], dim=1))


class OutConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.conv(features)


class SeabedUNet(nn.Module):
    """Class logits ``[N, classes, H, W]`` from min/max-normalised RGB ``[N, 3, H, W]``."""

    def __init__(self, in_channels: int = 3, classes: int = 5) -> None:
        super().__init__()
        self.inc = DoubleConv(in_channels, 64)
        self.down1, self.down2, self.down3, self.down4 = Down(64, 128), Down(128, 256), Down(256, 512), Down(512, 512)
        self.up1, self.up2, self.up3, self.up4 = Up(1024, 256), Up(512, 128), Up(256, 64), Up(128, 64)
        self.outc = OutConv(64, classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x1 = self.inc(image)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        features = self.up1(self.down4(x4), x4)
        features = self.up2(features, x3)
        features = self.up3(features, x2)
        return self.outc(self.up4(features, x1))

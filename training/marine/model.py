"""The networks of the MagicBathyNet family (Agrafiotis et al., IGARSS 2024).

``LightUNet``: the light U-Net MagicBathyNet uses for bathymetry. A U-Net (Ronneberger et al., MICCAI
2015) slimmed to four levels with widths ``base, 2*base, 4*base, 8*base`` (32-64-128-256 in the paper),
two 3x3 convolutions with ReLU per level, no BatchNorm, max-pool down, ConvTranspose up and skip
connections by concatenation. Any height and width: as the reference (``bathymetry/magicbathy_unet.py``),
each upsampled map is zero-padded to its skip's size, so real 18x18 Sentinel-2 and 30x30 SPOT-6 patches
run whole.

``SeabedUNet``: the U-Net MagicBathyNet publishes for seabed classes, with widths 64-128-256-512-512,
BatchNorm after each 3x3 convolution, max-pool down and bilinear (align_corners) up-sampling; the
decoder's first convolution of each level halves the concatenated channels. Parameter names follow the
authors' code (``inc``, ``down1..4``, ``up1..4``, ``outc``) so that their published state dicts load as
they are. An up-sampled map one pixel short of its skip is padded to it, so any input size runs.

``StridePadded``: runs the seabed task's segmentation_models_pytorch U-Net on any size.

The SegFormer MagicBathyNet also publishes for seabed classes is in ``training/marine/segformer.py``.
"""
from __future__ import annotations

import segmentation_models_pytorch as smp
import torch
from torch import nn
from torch.nn import functional as F


def _padded_to(upsampled: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """``upsampled`` zero-padded (evenly on both sides) to the height and width of ``skip``."""
    rows, cols = skip.shape[-2] - upsampled.shape[-2], skip.shape[-1] - upsampled.shape[-1]
    return F.pad(upsampled, [cols // 2, cols - cols // 2, rows // 2, rows - rows // 2])


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
        return self.convolve(torch.cat([skip, _padded_to(self.upsample(coarse), skip)], dim=1))


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
        return self.conv(torch.cat([skip, _padded_to(self.up(coarse), skip)], dim=1))


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


class StridePadded(nn.Module):
    """Run an encoder-decoder on any size: edge-pad to a multiple of its stride, crop the output back."""

    def __init__(self, network: smp.Unet) -> None:
        super().__init__()
        self.network = network

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        stride = self.network.encoder.output_stride
        padded = F.pad(image, [0, (-width) % stride, 0, (-height) % stride], mode="replicate")
        return self.network(padded)[..., :height, :width]

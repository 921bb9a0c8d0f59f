"""MagicBathyNet's published bathymetry network and its inference, rebuilt for the import tests.

Written from the authors' code (github.com/pagraf/MagicBathyNet: ``bathymetry/magicbathy_unet.py``
and the test loop of ``MagicBathyNet_bathymetry.ipynb``), independently of the toolbox's own
``LightUNet``: same layers and parameter names as theirs (``encoder.0.double_conv``,
``encoder.1.maxpool_conv``, ``decoder.0.up``, ``decoder.3``), skips padded inside the network, and
the notebook's inference (scipy zoom with order 1, 32 px reflect padding, zoom back), so that a
checkpoint saved from it has the published layout and its outputs are the reference's.
"""
from __future__ import annotations

import io
import zipfile

import numpy as np
import scipy.ndimage
import torch
from torch import nn
from torch.nn import functional as F


def _two_convs(c_in, c_out):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.Conv2d(c_out, c_out, 3, padding=1), nn.ReLU())


class _Convs(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.double_conv = _two_convs(c_in, c_out)

    def forward(self, x):
        return self.double_conv(x)


class _Down(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), _Convs(c_in, c_out))

    def forward(self, x):
        return self.maxpool_conv(x)


class _Up(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.up = nn.ConvTranspose2d(c_in, c_out, 2, stride=2)
        self.conv = _Convs(c_in, c_out)

    def forward(self, low, skip):
        low = self.up(low)
        dy, dx = skip.shape[2] - low.shape[2], skip.shape[3] - low.shape[3]
        low = F.pad(low, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(torch.cat([skip, low], 1))


class ReferenceBathymetryUNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(_Convs(3, 32), _Down(32, 64), _Down(64, 128), _Down(128, 256))
        self.decoder = nn.Sequential(_Up(256, 128), _Up(128, 64), _Up(64, 32), nn.Conv2d(32, 1, 1))

    def forward(self, x):
        x1 = self.encoder[0](x)
        x2 = self.encoder[1](x1)
        x3 = self.encoder[2](x2)
        x = self.decoder[0](self.encoder[3](x3), x3)
        x = self.decoder[1](x, x2)
        return self.decoder[3](self.decoder[2](x, x1))


def reference_depth(net, image_hwc, low, high, window, depth_constant, crop=256, pad=32):
    """The notebook's test loop for one patch: depth in metres as it writes it (negative down)."""
    normalised = (image_hwc.astype("float32") - low) / (high - low)
    ratio = crop / window
    zoomed = scipy.ndimage.zoom(normalised, (ratio, ratio, 1), order=1)
    padded = np.pad(zoomed, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    with torch.no_grad():
        prediction = net(torch.from_numpy(padded.transpose(2, 0, 1)[None].copy()).float()).numpy().squeeze()
    prediction = prediction[pad:-pad, pad:-pad] * depth_constant
    return scipy.ndimage.zoom(prediction, (1 / ratio, 1 / ratio), order=1)


def randomise(network: nn.Module, seed: int) -> nn.Module:
    """Random weights (and BatchNorm statistics) large enough that every layer matters."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in network.state_dict().items():
            if tensor.dtype.is_floating_point:
                values = torch.randn(tensor.shape, generator=generator)
                if name.endswith("running_var"):
                    values = values.abs() + 0.5
                elif tensor.ndim > 1:
                    values *= (2.0 / tensor[0].numel()) ** 0.5
                else:
                    values *= 0.1
                tensor.copy_(values)
    return network.eval()


def published_zip(path, network: nn.Module, member: str = "model_final"):
    """``torch.save(net.state_dict(), member)`` zipped, as the authors distribute their weights."""
    buffer = io.BytesIO()
    torch.save(network.state_dict(), buffer)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, buffer.getvalue())
    return path

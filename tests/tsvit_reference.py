"""TSViT as Tarasiou et al. publish it, rebuilt for the import tests.

Written from the authors' code (github.com/michaeltrs/DeepSatModels: ``models/TSViT/TSViTdense.py``
class ``TSViT``, ``models/TSViT/module.py``, ``data/PASTIS24/data_transforms.py`` and
``configs/PASTIS24/TSViT_fold1.yaml``), independently of the toolbox's ``training.crop_maps.model``:
the same parameter names (``to_patch_embedding.1``, ``to_temporal_embedding_input``,
``temporal_token``, ``temporal_transformer.layers.<i>.<0|1>.(norm|fn)``, ``space_pos_embedding``,
``mlp_head``), the input as their data pipeline builds it ([B, T, H, W, bands + 1], the day of year
/ 365.0001 as the last channel, zero dates up to ``max_seq_len``), the one-hot day embedding and
the final plain reshape of the per-patch outputs; a checkpoint is saved as their training loop
saves ``best.pth``: ``torch.save(net.state_dict())``.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

PASTIS24 = {"img_res": 24, "patch_size": 2, "num_classes": 19, "max_seq_len": 60, "dim": 128, "temporal_depth": 4,
            "spatial_depth": 4, "heads": 4, "dim_head": 32, "scale_dim": 4, "num_channels": 11}
MEAN = np.array([1165.9398193359375, 1375.6534423828125, 1429.2191162109375, 1764.798828125, 2719.273193359375,
                 3063.61181640625, 3205.90185546875, 3319.109619140625, 2422.904296875, 1639.370361328125], "float32")
STD = np.array([1942.6156005859375, 1881.9234619140625, 1959.3798828125, 1867.2239990234375, 1754.5850830078125,
                1769.4046630859375, 1784.860595703125, 1767.7100830078125, 1458.963623046875, 1299.2833251953125],
               "float32")


class _PreNorm(nn.Module):
    def __init__(self, dim, fn):
        super().__init__()
        self.norm, self.fn = nn.LayerNorm(dim), fn

    def forward(self, x):
        return self.fn(self.norm(x))


class _Attention(nn.Module):
    def __init__(self, dim, heads, dim_head):
        super().__init__()
        self.heads, self.scale = heads, dim_head**-0.5
        self.to_qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.to_out = nn.Sequential(nn.Linear(heads * dim_head, dim), nn.Dropout(0.0))

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in self.to_qkv(x).chunk(3, dim=-1))
        attention = (q @ k.transpose(-1, -2) * self.scale).softmax(dim=-1)
        return self.to_out((attention @ v).transpose(1, 2).reshape(b, n, -1))


class _FeedForward(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.0), nn.Linear(hidden, dim),
                                 nn.Dropout(0.0))

    def forward(self, x):
        return self.net(x)


class _Transformer(nn.Module):
    def __init__(self, dim, depth, heads, dim_head, hidden):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList([_PreNorm(dim, _Attention(dim, heads, dim_head)), _PreNorm(dim, _FeedForward(dim, hidden))])
            for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        for attention, feed_forward in self.layers:
            x = attention(x) + x
            x = feed_forward(x) + x
        return self.norm(x)


class _Patches(nn.Module):
    """[B, T, C, H, W] -> [B*h*w, T, p*p*C], features ordered (row in patch, column in patch, band)."""

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        b, t, c, height, width = x.shape
        p = self.p
        x = x.reshape(b, t, c, height // p, p, width // p, p).permute(0, 3, 5, 1, 4, 6, 2)
        return x.reshape(b * (height // p) * (width // p), t, p * p * c)


class ReferenceTSViT(nn.Module):
    def __init__(self, config=PASTIS24):
        super().__init__()
        self.config = config
        dim, p = config["dim"], config["patch_size"]
        self.grid = config["img_res"] // p
        hidden = dim * config["scale_dim"]
        self.to_patch_embedding = nn.Sequential(_Patches(p), nn.Linear((config["num_channels"] - 1) * p * p, dim))
        self.to_temporal_embedding_input = nn.Linear(366, dim)
        self.temporal_token = nn.Parameter(torch.randn(1, config["num_classes"], dim))
        self.temporal_transformer = _Transformer(dim, config["temporal_depth"], config["heads"], config["dim_head"],
                                                 hidden)
        self.space_pos_embedding = nn.Parameter(torch.randn(1, self.grid**2, dim))
        self.space_transformer = _Transformer(dim, config["spatial_depth"], config["heads"], config["dim_head"],
                                              hidden)
        self.dropout = nn.Dropout(0.0)
        self.mlp_head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, p * p))

    def forward(self, x):
        """``x`` [B, T, H, W, bands + 1] -> logits [B, K, H, W], as their forward pass."""
        x = x.permute(0, 1, 4, 2, 3)
        b, t, _, height, width = x.shape
        k, dim = self.config["num_classes"], self.config["dim"]
        day = (x[:, :, -1, 0, 0] * 365.0001).to(torch.int64)
        day_embedding = self.to_temporal_embedding_input(F.one_hot(day, num_classes=366).float())
        tokens = self.to_patch_embedding(x[:, :, :-1]).reshape(b, self.grid**2, t, dim) + day_embedding[:, None]
        tokens = torch.cat([self.temporal_token.expand(b * self.grid**2, -1, -1), tokens.reshape(-1, t, dim)], dim=1)
        classes = self.temporal_transformer(tokens)[:, :k]
        classes = classes.reshape(b, self.grid**2, k, dim).transpose(1, 2).reshape(b * k, self.grid**2, dim)
        classes = self.space_transformer(self.dropout(classes + self.space_pos_embedding))
        pixels = self.mlp_head(classes.reshape(-1, dim)).reshape(b, k, self.grid**2, -1).permute(0, 2, 3, 1)
        return pixels.reshape(b, height, width, k).permute(0, 3, 1, 2)  # their plain reshape


def randomise(network: nn.Module, seed: int) -> nn.Module:
    """Random weights, LayerNorm scales and biases included, large enough that the day embedding
    and every layer matter: a wrong mapping shows in the output."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in network.modules():
            for name, parameter in module.named_parameters(recurse=False):
                centre = 1.0 if isinstance(module, nn.LayerNorm) and name == "weight" else 0.0
                parameter.copy_(centre + 0.2 * torch.randn(parameter.shape, generator=generator))
    return network.eval()


def reference_probabilities(network: ReferenceTSViT, raw: np.ndarray, days: list[int]) -> np.ndarray:
    """Their inference on one 24 x 24 sample: ``raw`` [T, 10, H, W] PASTIS values sorted by day ->
    [K, H, W] softmax probabilities (Normalize, TileDates, CutOrPad to max_seq_len, ToTHWC)."""
    t, _, height, width = raw.shape
    values = (torch.tensor(raw, dtype=torch.float32) - torch.from_numpy(MEAN)[:, None, None]) / torch.from_numpy(
        STD)[:, None, None]
    day = torch.tensor(days, dtype=torch.float32) / 365.0001
    sample = torch.cat([values, day[:, None, None, None].expand(t, 1, height, width)], dim=1)
    sample = torch.cat([sample, sample.new_zeros(network.config["max_seq_len"] - t, *sample.shape[1:])])
    with torch.no_grad():
        return network(sample.permute(0, 2, 3, 1)[None]).softmax(dim=1)[0].numpy()

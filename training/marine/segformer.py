"""SegFormer (Xie et al., "SegFormer: Simple and Efficient Design for Semantic Segmentation with
Transformers", NeurIPS 2021), as MagicBathyNet publishes it for seabed classes (MiT-B5).

A Mix Transformer encoder of four stages (overlapping patch embeddings, efficient self-attention that
shrinks keys and values by a spatial reduction ratio, Mix-FFN with a 3x3 depth-wise convolution) and
an all-MLP decoder that projects each stage to one width, up-samples to 1/4 resolution, fuses and
classifies; logits are then up-sampled bilinearly to the input size. Parameter names follow the
MagicBathyNet code (``backbone.patch_embed1``, ``backbone.block1.0.attn.kv``, ``decode_head.linear_c1``,
...) so that its published state dicts load as they are. ``MIT_VARIANTS`` holds B0-B5.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

MIT_VARIANTS = {  # embedding widths, blocks per stage
    "B0": ((32, 64, 160, 256), (2, 2, 2, 2)),
    "B1": ((64, 128, 320, 512), (2, 2, 2, 2)),
    "B2": ((64, 128, 320, 512), (3, 4, 6, 3)),
    "B3": ((64, 128, 320, 512), (3, 4, 18, 3)),
    "B4": ((64, 128, 320, 512), (3, 8, 27, 3)),
    "B5": ((64, 128, 320, 512), (3, 6, 40, 3)),
}
HEADS = (1, 2, 5, 8)
REDUCTION = (8, 4, 2, 1)


def decoder_width(variant: str) -> int:
    return 256 if variant in ("B0", "B1") else 768


class PatchEmbed(nn.Module):
    def __init__(self, in_channels: int, width: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, width, kernel, stride, kernel // 2)
        self.norm = nn.LayerNorm(width)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        features = self.proj(image)
        height, width = features.shape[2:]
        return self.norm(features.flatten(2).transpose(1, 2)), height, width


class Attention(nn.Module):
    """Self-attention whose keys and values come from a map shrunk by ``reduction``."""

    def __init__(self, width: int, heads: int, reduction: int) -> None:
        super().__init__()
        self.heads, self.reduction = heads, reduction
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.proj = nn.Linear(width, width)
        if reduction > 1:
            self.sr = nn.Conv2d(width, width, reduction, reduction)
            self.norm = nn.LayerNorm(width)

    def forward(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        batch, count, channels = tokens.shape
        head_width = channels // self.heads
        query = self.q(tokens).reshape(batch, count, self.heads, head_width).transpose(1, 2)
        source = tokens
        if self.reduction > 1:
            grid = tokens.transpose(1, 2).reshape(batch, channels, height, width)
            source = self.norm(self.sr(grid).flatten(2).transpose(1, 2))
        key, value = self.kv(source).reshape(batch, -1, 2, self.heads, head_width).permute(2, 0, 3, 1, 4)
        attention = (query @ key.transpose(-2, -1) * head_width**-0.5).softmax(dim=-1)
        return self.proj((attention @ value).transpose(1, 2).reshape(batch, count, channels))


class DepthwiseConv(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(width, width, 3, 1, 1, groups=width)

    def forward(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        batch, _, channels = tokens.shape
        grid = tokens.transpose(1, 2).reshape(batch, channels, height, width)
        return self.dwconv(grid).flatten(2).transpose(1, 2)


class MixFFN(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.dwconv = DepthwiseConv(hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        return self.fc2(F.gelu(self.dwconv(self.fc1(tokens), height, width)))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, reduction: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads, reduction)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = MixFFN(width, 4 * width)

    def forward(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        tokens = tokens + self.attn(self.norm1(tokens), height, width)
        return tokens + self.mlp(self.norm2(tokens), height, width)


class MixTransformer(nn.Module):
    def __init__(self, variant: str = "B5", in_channels: int = 3) -> None:
        super().__init__()
        widths, depths = MIT_VARIANTS[variant]
        self.widths = widths
        for stage, (width, depth) in enumerate(zip(widths, depths), start=1):
            previous = in_channels if stage == 1 else widths[stage - 2]
            kernel, stride = (7, 4) if stage == 1 else (3, 2)
            setattr(self, f"patch_embed{stage}", PatchEmbed(previous, width, kernel, stride))
            setattr(self, f"block{stage}", nn.ModuleList(
                Block(width, HEADS[stage - 1], REDUCTION[stage - 1]) for _ in range(depth)))
            setattr(self, f"norm{stage}", nn.LayerNorm(width))

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        features, maps = image, []
        for stage in range(1, 5):
            tokens, height, width = getattr(self, f"patch_embed{stage}")(features)
            for block in getattr(self, f"block{stage}"):
                tokens = block(tokens, height, width)
            tokens = getattr(self, f"norm{stage}")(tokens)
            features = tokens.transpose(1, 2).reshape(tokens.shape[0], -1, height, width)
            maps.append(features)
        return maps


class TokenProjection(nn.Module):
    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_channels, width)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        projected = self.proj(features.flatten(2).transpose(1, 2))
        return projected.transpose(1, 2).reshape(features.shape[0], -1, *features.shape[2:])


class ConvBNReLU(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(features)))


class AllMLPDecoder(nn.Module):
    def __init__(self, in_widths: tuple[int, ...], width: int, classes: int) -> None:
        super().__init__()
        for stage, in_width in enumerate(in_widths, start=1):
            setattr(self, f"linear_c{stage}", TokenProjection(in_width, width))
        self.linear_fuse = ConvBNReLU(4 * width, width)
        self.linear_pred = nn.Conv2d(width, classes, 1)

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        size = maps[0].shape[2:]
        projected = [getattr(self, f"linear_c{stage}")(features) for stage, features in enumerate(maps, start=1)]
        projected = [projected[0]] + [F.interpolate(p, size=size, mode="bilinear", align_corners=False)
                                      for p in projected[1:]]
        return self.linear_pred(self.linear_fuse(torch.cat(projected[::-1], dim=1)))


class SegFormer(nn.Module):
    """Class logits ``[N, classes, H, W]`` from a normalised image ``[N, 3, H, W]``."""

    def __init__(self, variant: str = "B5", classes: int = 5) -> None:
        super().__init__()
        self.variant = variant
        self.backbone = MixTransformer(variant)
        self.decode_head = AllMLPDecoder(self.backbone.widths, decoder_width(variant), classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = self.decode_head(self.backbone(image))
        return F.interpolate(logits, size=image.shape[2:], mode="bilinear", align_corners=False)


def variant_of(state: dict[str, torch.Tensor]) -> str:
    """The MiT variant (B0-B5) a SegFormer state dict was built with, from its widths and depths."""
    first_width = state["backbone.patch_embed1.proj.weight"].shape[0] if "backbone.patch_embed1.proj.weight" in state else None
    depths = tuple(
        len({key.split(".")[2] for key in state if key.startswith(f"backbone.block{stage}.")}) for stage in range(1, 5)
    )
    for variant, (widths, variant_depths) in MIT_VARIANTS.items():
        if widths[0] == first_width and variant_depths == depths:
            return variant
    raise ValueError(f"no MiT variant has first width {first_width} and depths {depths}")

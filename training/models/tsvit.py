"""TSViT: the Temporo-Spatial Vision Transformer for satellite image time series, with validity masks.

Tarasiou, Chavez, Zafeiriou, "ViTs for SITS: Vision Transformers for Satellite Image Time Series",
CVPR 2023. An input ``[N, T, C, H, W]`` with day-of-year dates is cut into p x p patches; each patch
of each date becomes a token (linear patch embedding) plus the embedding of its day of year (the
paper's one-hot over 366 days -> Linear(366, dim), done here as the equivalent row lookup). K class
tokens are prepended to every patch location's date sequence and a temporal encoder runs over it
(temporal attention first: "factorised" temporo-spatial attention). The K class-token outputs of
every location then go through a spatial encoder, one sequence per class (with a learned spatial
position embedding), and a shared Linear(dim, p*p) turns each class token into the p x p logits of
its class: ``[N, K, H, W]``.

Defaults are the paper's PASTIS24 configuration: 24 x 24 input, p = 2, dim 128, temporal and spatial
depth 4, 4 heads of width 32, MLP width 4 * dim.

Validity masks (``mask`` ``[N, T, H, W]``, 1 = valid) are used, not merely zero-filled: values are
multiplied by the mask and the mask is an extra input channel of the patch embedding, and a patch
token whose p x p pixels are all invalid on a date (cloud, nodata, a padding date) is excluded as a
key of the temporal attention. Class tokens are always attendable, so no attention row is empty.
The spatial position embedding is resized (bilinear) to the input's patch grid, so tiles of other
sizes (multiples of p) run too; at the training size the resize is the identity.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

DAYS_IN_YEAR = 366  # day-of-year values 1..366; 0 marks a padding date


@dataclass(frozen=True)
class TSViTConfig:
    """Sizes of a TSViT; the defaults are the paper's PASTIS24 configuration."""

    image_size: int = 24
    patch_size: int = 2
    dim: int = 128
    temporal_depth: int = 4
    spatial_depth: int = 4
    heads: int = 4
    head_dim: int = 32
    mlp_ratio: int = 4
    dropout: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


class MaskedAttention(nn.Module):
    """Multi-head attention of ``queries`` over ``context``; keys where ``key_valid`` is False get
    no weight (their score is set to the lowest float, so even an all-invalid row stays finite)."""

    def __init__(self, dim: int, heads: int, head_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.to_query = nn.Linear(dim, heads * head_dim, bias=False)
        self.to_key_value = nn.Linear(dim, 2 * heads * head_dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(heads * head_dim, dim), nn.Dropout(dropout))

    def forward(self, queries: Tensor, context: Tensor, key_valid: Tensor) -> Tensor:
        """``queries`` [B, Lq, dim], ``context`` [B, Lk, dim], ``key_valid`` bool [B, Lk]."""
        batch, length = queries.shape[0], queries.shape[1]
        query = self._split_heads(self.to_query(queries))
        key, value = (self._split_heads(part) for part in self.to_key_value(context).chunk(2, dim=-1))
        scores = query @ key.transpose(-2, -1) * self.head_dim**-0.5
        scores = scores.masked_fill(~key_valid[:, None, None, :], torch.finfo(scores.dtype).min)
        mixed = scores.softmax(dim=-1) @ value
        return self.to_out(mixed.transpose(1, 2).reshape(batch, length, self.heads * self.head_dim))

    def _split_heads(self, tokens: Tensor) -> Tensor:
        return tokens.reshape(tokens.shape[0], tokens.shape[1], self.heads, self.head_dim).transpose(1, 2)


def feed_forward(dim: int, mlp_ratio: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.LayerNorm(dim),
        nn.Linear(dim, mlp_ratio * dim),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(mlp_ratio * dim, dim),
        nn.Dropout(dropout),
    )


class TransformerLayer(nn.Module):
    """Pre-norm self-attention (with a key mask) and MLP, both residual."""

    def __init__(self, config: TSViTConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(config.dim)
        self.attention = MaskedAttention(config.dim, config.heads, config.head_dim, config.dropout)
        self.feed_forward = feed_forward(config.dim, config.mlp_ratio, config.dropout)

    def forward(self, tokens: Tensor, key_valid: Tensor) -> Tensor:
        normed = self.norm(tokens)
        tokens = tokens + self.attention(normed, normed, key_valid)
        return tokens + self.feed_forward(tokens)


class Transformer(nn.Module):
    """``depth`` transformer layers and a final LayerNorm (ViT encoder)."""

    def __init__(self, config: TSViTConfig, depth: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(TransformerLayer(config) for _ in range(depth))
        self.norm = nn.LayerNorm(config.dim)

    def forward(self, tokens: Tensor, key_valid: Tensor) -> Tensor:
        for layer in self.layers:
            tokens = layer(tokens, key_valid)
        return self.norm(tokens)


@dataclass
class DateTokens:
    """One modality's temporal tokens: ``tokens`` [N*h*w, T, dim] (one date sequence per patch
    location), ``valid`` bool [N*h*w, T] (some pixel of the patch valid on that date), grid h x w."""

    tokens: Tensor
    valid: Tensor
    batch: int
    grid_height: int
    grid_width: int


class DateTokenizer(nn.Module):
    """p x p patch embedding of (values * mask, mask) per date, plus the day-of-year embedding.

    The patch embedding is a convolution with kernel = stride = p, i.e. the paper's Linear over
    each flattened patch. The day-of-year embedding is the paper's Linear(366, dim) applied to a
    one-hot vector, implemented as a lookup of the matching weight row (row 0: padding dates).
    """

    def __init__(self, channels: int, config: TSViTConfig) -> None:
        super().__init__()
        self.patch_size = config.patch_size
        self.patch_embedding = nn.Conv2d(channels + 1, config.dim, config.patch_size, stride=config.patch_size)
        self.day_embedding = nn.Embedding(DAYS_IN_YEAR + 1, config.dim, padding_idx=0)

    def forward(self, values: Tensor, day_of_year: Tensor, mask: Tensor) -> DateTokens:
        """``values`` [N, T, C, H, W], ``day_of_year`` int64 [N, T], ``mask`` [N, T, H, W]."""
        batch, dates, channels, height, width = values.shape
        mask = mask.to(values.dtype)
        pixels = torch.cat([values * mask[:, :, None], mask[:, :, None]], dim=2)
        patches = self.patch_embedding(pixels.reshape(batch * dates, channels + 1, height, width))
        dim, grid_height, grid_width = patches.shape[1], patches.shape[2], patches.shape[3]
        patch_valid = F.max_pool2d(mask.reshape(batch * dates, 1, height, width), self.patch_size) > 0
        day_of_year = day_of_year.clamp(0, DAYS_IN_YEAR)
        tokens = patches.reshape(batch, dates, dim, grid_height * grid_width) + self.day_embedding(day_of_year)[..., None]
        valid = patch_valid.reshape(batch, dates, grid_height * grid_width) & (day_of_year > 0)[..., None]
        return DateTokens(
            tokens=tokens.permute(0, 3, 1, 2).reshape(batch * grid_height * grid_width, dates, dim),
            valid=valid.permute(0, 2, 1).reshape(batch * grid_height * grid_width, dates),
            batch=batch,
            grid_height=grid_height,
            grid_width=grid_width,
        )


class ClassTokens(nn.Module):
    """The K temporal class tokens, prepended to every date sequence and always attendable."""

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.tokens = nn.Parameter(torch.randn(1, num_classes, dim))

    def prepend(self, dates: DateTokens) -> tuple[Tensor, Tensor]:
        """Returns the sequences [B, K + T, dim] and their key validity [B, K + T]."""
        sequences = dates.tokens.shape[0]
        class_tokens = self.tokens.expand(sequences, -1, -1)
        class_valid = torch.ones(sequences, self.tokens.shape[1], dtype=torch.bool, device=dates.valid.device)
        return torch.cat([class_tokens, dates.tokens], dim=1), torch.cat([class_valid, dates.valid], dim=1)


class SpatialDecoder(nn.Module):
    """Spatial encoder per class over the patch grid, then Linear(dim, p*p) -> per-pixel logits."""

    def __init__(self, num_classes: int, config: TSViTConfig) -> None:
        super().__init__()
        self.patch_size = config.patch_size
        grid = config.image_size // config.patch_size
        self.position_embedding = nn.Parameter(torch.randn(1, config.dim, grid, grid))
        self.encoder = Transformer(config, config.spatial_depth)
        self.to_pixels = nn.Sequential(nn.LayerNorm(config.dim), nn.Linear(config.dim, config.patch_size**2))

    def forward(self, class_tokens: Tensor, batch: int, grid_height: int, grid_width: int) -> Tensor:
        """``class_tokens`` [N*h*w, K, dim] (temporal encoder outputs) -> logits [N, K, h*p, w*p]."""
        classes, dim, locations = class_tokens.shape[1], class_tokens.shape[2], grid_height * grid_width
        position = F.interpolate(
            self.position_embedding, size=(grid_height, grid_width), mode="bilinear", align_corners=False
        ).reshape(1, dim, locations).transpose(1, 2)
        per_class = class_tokens.reshape(batch, locations, classes, dim).transpose(1, 2)
        per_class = per_class.reshape(batch * classes, locations, dim) + position
        all_valid = torch.ones(batch * classes, locations, dtype=torch.bool, device=class_tokens.device)
        pixels = self.to_pixels(self.encoder(per_class, all_valid))  # [N*K, h*w, p*p]
        p = self.patch_size
        pixels = pixels.reshape(batch, classes, grid_height, grid_width, p, p).permute(0, 1, 2, 4, 3, 5)
        return pixels.reshape(batch, classes, grid_height * p, grid_width * p)


class TSViT(nn.Module):
    """Single-modality TSViT: (values, day of year, mask) -> per-pixel class logits."""

    def __init__(self, channels: int, num_classes: int, config: TSViTConfig = TSViTConfig()) -> None:
        super().__init__()
        self.tokenizer = DateTokenizer(channels, config)
        self.class_tokens = ClassTokens(num_classes, config.dim)
        self.temporal_encoder = Transformer(config, config.temporal_depth)
        self.decoder = SpatialDecoder(num_classes, config)
        self.num_classes = num_classes

    def forward(self, values: Tensor, day_of_year: Tensor, mask: Tensor) -> Tensor:
        return self.classify(self.tokenizer(values, day_of_year, mask))

    def classify(self, dates: DateTokens) -> Tensor:
        sequences, key_valid = self.class_tokens.prepend(dates)
        class_outputs = self.temporal_encoder(sequences, key_valid)[:, : self.num_classes]
        return self.decoder(class_outputs, dates.batch, dates.grid_height, dates.grid_width)

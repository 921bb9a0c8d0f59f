"""The crop-map networks: TSViT, the Temporo-Spatial Vision Transformer for satellite image time
series, with validity masks, and its multi-modal fusions.

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

Multi-modal TSViT (Sentinel-2 + Sentinel-1 time series): the three fusion strategies compared in
"Multi-modal multi-temporal TSViT for crop mapping" (IGARSS 2024), on the TSViT above.

Every model here is called as ``model(*series)`` with one triple per modality in a fixed order
(the first is the time grid for early fusion: Sentinel-2)::

    values [N, T_m, C_m, H, W] (normalised, invalid 0), day_of_year int64 [N, T_m] (0 = padding),
    mask [N, T_m, H, W] (1 = valid)

T_m may differ between modalities and calls. All return class logits ``[N, K, H, W]``.

- ``EarlyFusionTSViT``: the modalities are concatenated along channels on Sentinel-2's dates; each
  other modality is matched, inside ``forward``, to every grid date by the nearest available date of
  year (within ``max_gap_days``; farther means "no observation", mask 0). One TSViT runs on the
  stack; a date token stays valid when any modality is valid there (a cloudy S2 date keeps S1).
- ``CrossAttentionFusionTSViT``: one temporal token stream per modality (own patch and date
  embeddings and class tokens); in every temporal layer each stream attends to itself and then,
  by cross-attention, to the tokens of the other modalities. The streams' class tokens are averaged
  before the shared spatial encoder.
- ``SyncClassTokenFusionTSViT``: one temporal encoder per modality; after every layer the class
  tokens are averaged across modalities (synchronised), so all encoders share one class-token
  state; the synchronised class tokens go through the shared spatial encoder.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

DAYS_IN_YEAR = 366  # day-of-year values 1..366; 0 marks a padding date
FUSIONS = ("early", "cross-attention", "sync-class-token")
MAX_GAP_DAYS = 12  # early fusion: an S1 date farther than this from an S2 date is not matched to it


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

    def forward(self, class_tokens: Tensor, grid: DateTokens) -> Tensor:
        """``class_tokens`` [N*h*w, K, dim] (temporal encoder outputs on the patch grid of ``grid``) ->
        logits [N, K, h*p, w*p]."""
        batch, grid_height, grid_width = grid.batch, grid.grid_height, grid.grid_width
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
        return self.decoder(class_outputs, dates)


def triples(series: Sequence[Tensor]) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Split the flat call arguments into (values, day_of_year, mask) per modality."""
    if len(series) % 3:
        raise ValueError(f"expected (values, day_of_year, mask) per modality, got {len(series)} tensors")
    return [(series[i], series[i + 1], series[i + 2]) for i in range(0, len(series), 3)]


def class_token_streams(
    tokenizers: Sequence[DateTokenizer], class_tokens: Sequence[ClassTokens], series: Sequence[Tensor]
) -> tuple[list[DateTokens], list[Tensor], list[Tensor]]:
    """Per modality: its date tokens, its sequences with its class tokens prepended and their key validity."""
    dates = [tokenizer(*triple) for tokenizer, triple in zip(tokenizers, triples(series))]
    streams = [tokens.prepend(modality_dates) for tokens, modality_dates in zip(class_tokens, dates)]
    return dates, [stream[0] for stream in streams], [stream[1] for stream in streams]


def modality_tokenizers(channels: Sequence[int], config: TSViTConfig, fusion: str) -> nn.ModuleList:
    """One date tokenizer per modality of a fusion with separate token streams (two or more)."""
    if len(channels) < 2:
        raise ValueError(f"{fusion} fusion needs at least two modalities")
    return nn.ModuleList(DateTokenizer(c, config) for c in channels)


def temporal_layers(layer: type[nn.Module], modalities: int, config: TSViTConfig) -> nn.ModuleList:
    """``config.temporal_depth`` temporal layers, each one ``layer`` per modality."""
    return nn.ModuleList(nn.ModuleList(layer(config) for _ in range(modalities)) for _ in range(config.temporal_depth))


def match_nearest_dates(
    grid_day_of_year: Tensor, values: Tensor, day_of_year: Tensor, mask: Tensor, max_gap_days: int
) -> tuple[Tensor, Tensor]:
    """Resample a series onto grid dates: for each grid date the nearest date (by day of year)
    that is not padding and has some valid pixel. Returns values [N, T_grid, C, H, W] and mask
    [N, T_grid, H, W]; the mask is 0 where the nearest date is more than ``max_gap_days`` away,
    where the grid date is padding, or where the series has no usable date."""
    channels, height, width = values.shape[2], values.shape[3], values.shape[4]
    available = (day_of_year > 0) & (mask.amax(dim=(2, 3)) > 0)  # [N, T]
    gap = (grid_day_of_year[:, :, None] - day_of_year[:, None, :]).abs().to(values.dtype)
    gap = gap.masked_fill(~available[:, None, :], float(2 * 366))  # [N, T_grid, T]
    nearest = gap.argmin(dim=2)  # [N, T_grid]
    nearest_gap = gap.gather(2, nearest[:, :, None])[:, :, 0]
    usable = (nearest_gap <= max_gap_days) & (grid_day_of_year > 0)
    index = nearest[:, :, None, None]
    matched_mask = mask.gather(1, index.expand(-1, -1, height, width)) * usable[:, :, None, None].to(mask.dtype)
    matched_values = values.gather(1, index[..., None].expand(-1, -1, channels, height, width))
    return matched_values, matched_mask


class EarlyFusionTSViT(nn.Module):
    """Early fusion: channel concatenation on the first modality's dates, then one TSViT.

    Per grid date the stacked channels are, for every modality, its masked values and its own
    mask; the TSViT's mask is their union."""

    def __init__(
        self, channels: Sequence[int], num_classes: int, config: TSViTConfig = TSViTConfig(),
        max_gap_days: int = MAX_GAP_DAYS,
    ) -> None:
        super().__init__()
        self.max_gap_days = max_gap_days
        self.tsvit = TSViT(sum(c + 1 for c in channels), num_classes, config)

    def forward(self, *series: Tensor) -> Tensor:
        (grid_values, grid_day_of_year, grid_mask), *others = triples(series)
        stacked, union = [grid_values * grid_mask[:, :, None], grid_mask[:, :, None]], grid_mask
        for values, day_of_year, mask in others:
            matched_values, matched_mask = match_nearest_dates(
                grid_day_of_year, values, day_of_year, mask, self.max_gap_days
            )
            stacked += [matched_values * matched_mask[:, :, None], matched_mask[:, :, None]]
            union = torch.maximum(union, matched_mask)
        return self.tsvit(torch.cat(stacked, dim=2), grid_day_of_year, union)


class CrossAttentionLayer(nn.Module):
    """Self-attention within a modality, cross-attention to the other modalities, MLP."""

    def __init__(self, config: TSViTConfig) -> None:
        super().__init__()
        self.self_layer = TransformerLayer(config)
        self.query_norm = nn.LayerNorm(config.dim)
        self.context_norm = nn.LayerNorm(config.dim)
        self.cross_attention = MaskedAttention(config.dim, config.heads, config.head_dim, config.dropout)
        self.feed_forward = feed_forward(config.dim, config.mlp_ratio, config.dropout)

    def forward(self, tokens: Tensor, valid: Tensor, context: Tensor, context_valid: Tensor) -> Tensor:
        tokens = self.self_layer(tokens, valid)
        tokens = tokens + self.cross_attention(self.query_norm(tokens), self.context_norm(context), context_valid)
        return tokens + self.feed_forward(tokens)


class CrossAttentionFusionTSViT(nn.Module):
    """Cross-attention fusion: modality token streams attend to each other in the temporal encoder.

    The context of a stream is every other stream's [class tokens; date tokens] (class tokens keep
    every cross-attention row attendable even where another modality has no valid date)."""

    def __init__(self, channels: Sequence[int], num_classes: int, config: TSViTConfig = TSViTConfig()) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.tokenizers = modality_tokenizers(channels, config, "cross-attention")
        self.class_tokens = nn.ModuleList(ClassTokens(num_classes, config.dim) for _ in channels)
        self.layers = temporal_layers(CrossAttentionLayer, len(channels), config)
        self.norms = nn.ModuleList(nn.LayerNorm(config.dim) for _ in channels)
        self.decoder = SpatialDecoder(num_classes, config)

    def forward(self, *series: Tensor) -> Tensor:
        dates, tokens, valid = class_token_streams(self.tokenizers, self.class_tokens, series)
        for layer in self.layers:
            tokens = [
                modality_layer(
                    tokens[m], valid[m],
                    torch.cat([t for o, t in enumerate(tokens) if o != m], dim=1),
                    torch.cat([v for o, v in enumerate(valid) if o != m], dim=1),
                )
                for m, modality_layer in enumerate(layer)
            ]
        class_outputs = torch.stack(
            [norm(t[:, : self.num_classes]) for norm, t in zip(self.norms, tokens)]
        ).mean(dim=0)
        return self.decoder(class_outputs, dates[0])


class SyncClassTokenFusionTSViT(nn.Module):
    """Synchronised class token fusion: a temporal encoder per modality whose class tokens are
    replaced by their mean across modalities after every layer."""

    def __init__(self, channels: Sequence[int], num_classes: int, config: TSViTConfig = TSViTConfig()) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.tokenizers = modality_tokenizers(channels, config, "synchronised class token")
        self.class_tokens = ClassTokens(num_classes, config.dim)  # one shared start, synchronised after
        self.layers = temporal_layers(TransformerLayer, len(channels), config)
        self.norm = nn.LayerNorm(config.dim)
        self.decoder = SpatialDecoder(num_classes, config)

    def forward(self, *series: Tensor) -> Tensor:
        dates, tokens, valid = class_token_streams(self.tokenizers, [self.class_tokens] * len(self.tokenizers), series)
        classes = self.num_classes
        for layer in self.layers:
            tokens = [modality_layer(t, v) for modality_layer, t, v in zip(layer, tokens, valid)]
            synchronised = torch.stack([t[:, :classes] for t in tokens]).mean(dim=0)
            tokens = [torch.cat([synchronised, t[:, classes:]], dim=1) for t in tokens]
        return self.decoder(self.norm(synchronised), dates[0])


def build_crop_model(
    channels: Sequence[int], num_classes: int, fusion: str | None, config: TSViTConfig = TSViTConfig()
) -> nn.Module:
    """A TSViT for one modality (``fusion`` must then be None), else the named fusion."""
    if len(channels) == 1:
        if fusion is not None:
            raise ValueError(f"fusion {fusion!r} needs two or more modalities")
        return TSViT(channels[0], num_classes, config)
    if fusion == "early":
        return EarlyFusionTSViT(channels, num_classes, config)
    if fusion == "cross-attention":
        return CrossAttentionFusionTSViT(channels, num_classes, config)
    if fusion == "sync-class-token":
        return SyncClassTokenFusionTSViT(channels, num_classes, config)
    raise ValueError(f"fusion must be one of {FUSIONS} for {len(channels)} modalities, got {fusion!r}")

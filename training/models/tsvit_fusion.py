"""Multi-modal TSViT (Sentinel-2 + Sentinel-1 time series): the three fusion strategies compared in
"Multi-modal multi-temporal TSViT for crop mapping" (IGARSS 2024), on TSViT (Tarasiou et al.,
CVPR 2023; ``training.models.tsvit``).

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

import torch
from torch import Tensor, nn

from training.models.tsvit import (
    ClassTokens,
    DateTokenizer,
    MaskedAttention,
    SpatialDecoder,
    TransformerLayer,
    TSViT,
    TSViTConfig,
    feed_forward,
)

FUSIONS = ("early", "cross-attention", "sync-class-token")
MAX_GAP_DAYS = 12  # early fusion: an S1 date farther than this from an S2 date is not matched to it


def triples(series: Sequence[Tensor]) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Split the flat call arguments into (values, day_of_year, mask) per modality."""
    if len(series) % 3:
        raise ValueError(f"expected (values, day_of_year, mask) per modality, got {len(series)} tensors")
    return [(series[i], series[i + 1], series[i + 2]) for i in range(0, len(series), 3)]


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
        if len(channels) < 2:
            raise ValueError("cross-attention fusion needs at least two modalities")
        self.num_classes = num_classes
        self.tokenizers = nn.ModuleList(DateTokenizer(c, config) for c in channels)
        self.class_tokens = nn.ModuleList(ClassTokens(num_classes, config.dim) for _ in channels)
        self.layers = nn.ModuleList(
            nn.ModuleList(CrossAttentionLayer(config) for _ in channels) for _ in range(config.temporal_depth)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(config.dim) for _ in channels)
        self.decoder = SpatialDecoder(num_classes, config)

    def forward(self, *series: Tensor) -> Tensor:
        dates = [tokenizer(*triple) for tokenizer, triple in zip(self.tokenizers, triples(series))]
        streams = [class_tokens.prepend(d) for class_tokens, d in zip(self.class_tokens, dates)]
        tokens, valid = [s[0] for s in streams], [s[1] for s in streams]
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
        first = dates[0]
        return self.decoder(class_outputs, first.batch, first.grid_height, first.grid_width)


class SyncClassTokenFusionTSViT(nn.Module):
    """Synchronised class token fusion: a temporal encoder per modality whose class tokens are
    replaced by their mean across modalities after every layer."""

    def __init__(self, channels: Sequence[int], num_classes: int, config: TSViTConfig = TSViTConfig()) -> None:
        super().__init__()
        if len(channels) < 2:
            raise ValueError("synchronised class token fusion needs at least two modalities")
        self.num_classes = num_classes
        self.tokenizers = nn.ModuleList(DateTokenizer(c, config) for c in channels)
        self.class_tokens = ClassTokens(num_classes, config.dim)  # one shared start, synchronised after
        self.layers = nn.ModuleList(
            nn.ModuleList(TransformerLayer(config) for _ in channels) for _ in range(config.temporal_depth)
        )
        self.norm = nn.LayerNorm(config.dim)
        self.decoder = SpatialDecoder(num_classes, config)

    def forward(self, *series: Tensor) -> Tensor:
        dates = [tokenizer(*triple) for tokenizer, triple in zip(self.tokenizers, triples(series))]
        streams = [self.class_tokens.prepend(d) for d in dates]
        tokens, valid = [s[0] for s in streams], [s[1] for s in streams]
        classes = self.num_classes
        for layer in self.layers:
            tokens = [modality_layer(t, v) for modality_layer, t, v in zip(layer, tokens, valid)]
            synchronised = torch.stack([t[:, :classes] for t in tokens]).mean(dim=0)
            tokens = [torch.cat([synchronised, t[:, classes:]], dim=1) for t in tokens]
        first = dates[0]
        return self.decoder(self.norm(synchronised), first.batch, first.grid_height, first.grid_width)


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

"""Encoders of the shared embedding spaces: the pretrained MiniLM text encoder, a small image
encoder for any band set, open_clip towers, and the bitemporal fusion heads of text-ITSR; and the
graphs they are exported as (the ONNX conventions of ``training.text_search.export``).

Every encoder returns L2-normalised embeddings (cosine similarity = dot product), as CLIP
(Radford et al., "Learning Transferable Visual Models From Natural Language Supervision", ICML
2021) compares its two towers.
"""
from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engine.model_catalogue import file_sha256
from training.text_search.tokenization import minilm_model_dir, minilm_tokenizer_json, tokenize

MINILM_SPACE = "all-MiniLM-L6-v2"  # the space of every encoder aligned to the frozen MiniLM text encoder
MINILM_DIM = 384


class MiniLMTextEncoder(nn.Module):
    """all-MiniLM-L6-v2 (Reimers & Gurevych, Sentence-BERT, 2019; Wang et al., MiniLM, 2020): a
    6-layer BERT whose token states are mean-pooled over the attention mask and L2-normalised, as
    the sentence-transformers model defines (modules Transformer, Pooling(mean), Normalize).
    ``forward(input_ids, attention_mask)`` int64 ``[N, L]`` -> float32 ``[N, 384]``."""

    def __init__(self) -> None:
        super().__init__()
        from transformers import BertModel

        self.bert = BertModel.from_pretrained(str(minilm_model_dir())).eval()  # its pooler is unused

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        states = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        weights = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        return F.normalize(pooled, dim=-1)


@torch.no_grad()
def embed_sentences(encoder: nn.Module, tokenizer_json: str, sentences: list[str], batch_size: int = 64) -> torch.Tensor:
    """Embed sentences with a text encoder taking ``(input_ids, attention_mask)``, tokenised the
    engine's way (``tokenization.tokenize``)."""
    parts = []
    for start in range(0, len(sentences), batch_size):
        tokens = tokenize(tokenizer_json, sentences[start:start + batch_size])
        parts.append(encoder(torch.from_numpy(tokens["input_ids"]), torch.from_numpy(tokens["attention_mask"])))
    return torch.cat(parts)


@functools.lru_cache(maxsize=1)
def minilm() -> MiniLMTextEncoder:
    return MiniLMTextEncoder().eval()


def minilm_embeddings(sentences: list[str]) -> torch.Tensor:
    """Frozen all-MiniLM-L6-v2 embeddings ``[N, 384]``, tokenised as the engine does."""
    return embed_sentences(minilm(), minilm_tokenizer_json(), sentences)


def _conv_block(inputs: int, outputs: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(outputs), nn.GELU(),
        nn.Conv2d(outputs, outputs, 3, padding=1, bias=False), nn.BatchNorm2d(outputs), nn.GELU(),
    )


class TileImageEncoder(nn.Module):
    """Small fully convolutional encoder for tiles of any band set: four stages (width x 1, 2, 4, 8;
    stride 1, 2, 2, 2), global mean of the last feature map, two-layer projection into the
    embedding space. ``features`` keeps the spatial map (the tokens of the transformer fusion)."""

    def __init__(self, bands: int, dim: int = MINILM_DIM, width: int = 32) -> None:
        super().__init__()
        widths = [width, 2 * width, 4 * width, 8 * width]
        self.stages = nn.Sequential(*(
            _conv_block(inputs, outputs, 1 if index == 0 else 2)
            for index, (inputs, outputs) in enumerate(zip([bands, *widths[:-1]], widths))
        ))
        self.feature_dim = widths[-1]
        self.projection = nn.Sequential(nn.Linear(widths[-1], 2 * widths[-1]), nn.GELU(), nn.Linear(2 * widths[-1], dim))

    def features(self, image: torch.Tensor) -> torch.Tensor:
        return self.stages(image)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projection(self.features(image).mean(dim=(2, 3))), dim=-1)


GLOBAL_FUSIONS = ("difference", "concat", "sum")
FUSIONS = tuple(f"gff-{op}" for op in GLOBAL_FUSIONS) + ("tff",)


class BitemporalEncoder(nn.Module):
    """Embed a before/after image pair for cross-modal text - image time series retrieval (text-ITSR:
    Hoxha, Angyal, Demir, "Self-Supervised Cross-Modal Text-Image Time Series Retrieval in Remote
    Sensing", IEEE TGRS 2025, arXiv:2501.19043): modality-specific encoders with projection heads
    into a shared space, trained contrastively, with the two dates fused.

    One shared image backbone (``TileImageEncoder.features``) encodes both dates, then:

    - Global Feature Fusion ``gff-difference | gff-concat | gff-sum``: the two global (mean-pooled)
      features are combined by after - before, [before, after] or before + after, and projected;
    - Transformer Feature Fusion ``tff``: the feature-map tokens of both dates, each with a learned
      date embedding and a 2-D position embedding, go through a transformer encoder together with a
      summary token, whose output is projected.
    """

    def __init__(self, backbone: TileImageEncoder, fusion: str, dim: int = MINILM_DIM, tokens: int = 16,
                 layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        self.backbone, self.fusion = backbone, fusion
        width = backbone.feature_dim
        if fusion == "tff":
            self.summary = nn.Parameter(torch.zeros(1, 1, width))
            self.date_embedding = nn.Parameter(torch.zeros(2, 1, width))
            self.position_embedding = nn.Parameter(torch.zeros(1, tokens, width))
            nn.init.trunc_normal_(self.position_embedding, std=0.02)
            nn.init.trunc_normal_(self.date_embedding, std=0.02)
            layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, batch_first=True, norm_first=True)
            self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.tokens_side = int(tokens**0.5)
        fused = 2 * width if fusion == "gff-concat" else width
        self.projection = nn.Sequential(nn.Linear(fused, 2 * width), nn.GELU(), nn.Linear(2 * width, dim))

    def forward(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        first, second = self.backbone.features(before), self.backbone.features(after)
        if self.fusion == "tff":
            fused = self._transformer_fusion(first, second)
        else:
            first, second = first.mean(dim=(2, 3)), second.mean(dim=(2, 3))
            fused = {
                "gff-difference": lambda: second - first,
                "gff-concat": lambda: torch.cat([first, second], dim=1),
                "gff-sum": lambda: first + second,
            }[self.fusion]()
        return F.normalize(self.projection(fused), dim=-1)

    def _transformer_fusion(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """Feature maps are pooled to a fixed ``tokens_side`` grid, so any tile size gives the same
        token count and position embedding."""
        tokens = []
        for date, feature_map in enumerate((first, second)):
            pooled = F.adaptive_avg_pool2d(feature_map, self.tokens_side).flatten(2).transpose(1, 2)
            tokens.append(pooled + self.position_embedding + self.date_embedding[date])
        sequence = torch.cat([self.summary.expand(first.shape[0], -1, -1), *tokens], dim=1)
        return self.transformer(sequence)[:, 0]


class EmbeddingMap(nn.Module):
    """The ONNX image convention: ``image`` -> ``[N, D]`` embeddings as ``[N, D, 1, 1]``."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.encoder(image)[:, :, None, None]


class ChangeEmbeddingMap(nn.Module):
    """The ONNX change convention: ``before``, ``after`` -> ``[N, D, 1, 1]``."""

    def __init__(self, encoder: BitemporalEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        return self.encoder(before, after)[:, :, None, None]


class ClipTextGraph(nn.Module):
    """open_clip text tower under the text-encoder ONNX convention: ``(input_ids, attention_mask)``
    ``[N, 77]`` -> L2-normalised ``[N, D]``. Padding positions are set to open_clip's pad id 0 (the
    causal tower never lets them influence the end-of-text token it pools)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(input_ids * attention_mask, normalize=True)


class ClipImageGraph(nn.Module):
    """open_clip image tower under the image ONNX convention (input already normalised)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(image, normalize=True)[:, :, None, None]


def build_open_clip(model_name: str, model_config: dict | None = None) -> nn.Module:
    """An open_clip model with random weights and NO download (``pretrained=None``): a built-in
    architecture name (``ViT-B-32``, ``RN50``, ...) or, when ``model_config`` is given, that
    open_clip model config (the JSON of ``open_clip/model_configs``)."""
    import open_clip

    if model_config is not None and model_name not in open_clip.list_models():
        folder = Path(tempfile.mkdtemp(prefix="open_clip_config_"))
        (folder / f"{model_name}.json").write_text(json.dumps(model_config))
        open_clip.add_model_config(folder)
    model = open_clip.create_model(model_name, pretrained=None)
    if getattr(model, "text_pool_type", None) != "argmax" or not hasattr(model, "token_embedding"):
        raise ValueError(
            f"{model_name}: only CLIP models with open_clip's own BPE text tower (argmax pooling) can be "
            "exported with a torch-free tokenizer; this one uses another text tower"
        )
    return model


def open_clip_config(model_name: str) -> tuple[str, dict]:
    """``(name, config)`` for a built-in architecture or an open_clip config JSON file."""
    import open_clip

    path = Path(model_name)
    if path.suffix == ".json":
        config = json.loads(path.read_text())
        return path.stem, config.get("model_cfg", config)
    return model_name, open_clip.get_model_config(model_name)


def load_open_clip_weights(model: nn.Module, checkpoint: Path) -> str:
    """Load a local open_clip-compatible checkpoint (RemoteCLIP's state dicts, GeoRSCLIP's training
    checkpoints with ``state_dict`` and ``module.`` prefixes, OpenAI's format); returns its SHA-256."""
    import open_clip

    open_clip.load_checkpoint(model, str(checkpoint))
    return file_sha256(checkpoint)


def clip_space(model_name: str, init_sha256: str, alpha: float | None = None, fine_tuned: bool = False) -> str:
    """Space id of an open_clip pair: architecture, weights' origin and, after fine-tuning, alpha."""
    origin = init_sha256[:12] if init_sha256 else "random-init"
    return f"open_clip:{model_name}:{origin}" + (f":wise-ft-{alpha:g}" if fine_tuned else "")

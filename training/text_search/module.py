"""Lightning modules of the text-search tasks, and their checkpoints.

- ``locked-text``: a tile image encoder trained contrastively (CLIP's loss, Radford et al. 2021)
  against a FROZEN pretrained text encoder (all-MiniLM-L6-v2). This is LiT's idea (Zhai et al.,
  "LiT: Zero-Shot Transfer with Locked-image text Tuning", CVPR 2022) with the towers swapped: the
  language side is the one with real pretraining here, so it is locked, and every image encoder
  aligned to it shares its space (and so works with the same shipped text encoder).
- ``clip-finetune``: fine-tune both towers of an open_clip model (from ``--init``, e.g. a
  RemoteCLIP or GeoRSCLIP checkpoint) on GAIA-format captions, then interpolate the weights
  between the zero-shot start and the fine-tuned end, ``(1 - alpha) * zero_shot + alpha *
  fine_tuned`` (WiSE-FT: Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022;
  PAINT: Ilharco et al., "Patching open-vocabulary models by interpolating weights", NeurIPS 2022):
  gains on the new distribution while keeping what the zero-shot model knew.
- ``align-modality``: a student encoder for another modality (multispectral, SAR) distilled on
  paired tiles to the teacher's image embedding of the RGB view: MSE to the teacher embedding plus
  a small zero-shot-head term (cross-entropy of the student's zero-shot class scores against the
  teacher's), stage 2 of "Mind the Modality Gap" (Zavras, Michail, Demir, Papoutsis, "Mind the
  Modality Gap: Towards a Remote Sensing Vision-Language Model via Cross-modal Alignment", 2024,
  arXiv:2402.09816). The student then answers text queries in the teacher's space with no
  task-specific parameters.
- ``bitemporal``: a before/after encoder (GFF or TFF fusion, ``model.BitemporalEncoder``)
  trained contrastively against frozen MiniLM embeddings of change sentences (text-ITSR: Hoxha,
  Angyal, Demir, "Self-Supervised Cross-Modal Text-Image Time Series Retrieval in Remote Sensing",
  IEEE TGRS 2025, arXiv:2501.19043).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning import LightningModule
from torch import nn

from training.checkpoint import load_checkpoint
from training.schedule import adam_with_cosine_decay
from training.task_io import NormalisedInput
from training.text_search.data import radiometric_jitter, random_orientation
from training.text_search.model import (
    MINILM_SPACE,
    BitemporalEncoder,
    ChangeEmbeddingMap,
    ClipTextGraph,
    EmbeddingMap,
    TileImageEncoder,
    build_open_clip,
    clip_space,
    embed_sentences,
    minilm_embeddings,
)
from training.text_search.retrieval import caption_clip_loss
from training.text_search.tokenization import clip_tokenizer_json

INITIAL_TEMPERATURE = 0.07  # CLIP's
MAX_LOGIT_SCALE = 100.0  # CLIP clips the learned scale here
ZERO_SHOT_LOGIT_SCALE = 100.0


def sampled_captions(caption_set: torch.Tensor) -> torch.Tensor:
    """One random caption per item (of its ``caption_set``)."""
    return caption_set[torch.arange(len(caption_set)), torch.randint(caption_set.shape[1], (len(caption_set),))]


class FrozenTextContrast(NormalisedInput):
    """An image (or image-pair) encoder trained with CLIP's loss against the frozen MiniLM embeddings
    of the training sentences (``caption_embeddings``, set before fit), in MiniLM's space:
    ``locked-text`` and ``bitemporal``."""

    text_space = MINILM_SPACE

    def contrast(self, embedding: torch.Tensor, caption_set: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
        """The training loss of the items' ``embedding`` against their sampled captions ``choice``."""
        text = self.caption_embeddings.to(embedding.device)[choice]
        scale = self.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)
        loss = caption_clip_loss(embedding, text, caption_set, choice, scale)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self) -> dict:
        return adam_with_cosine_decay(self, self.hparams.lr)

    def embed_texts(self, sentences: list[str]) -> torch.Tensor:
        return minilm_embeddings(sentences)


class LockedTextAlignment(FrozenTextContrast):
    """Task ``locked-text`` (see the module docstring). Batches: ``image`` raw values, ``caption_set``."""

    def __init__(self, bands: list[str], band_mean: list[float], band_std: list[float], dim: int = 384,
                 width: int = 32, lr: float = 1e-3, image_size: int = 32, jitter: bool = True) -> None:
        super().__init__(band_mean, band_std)
        self.save_hyperparameters()
        self.encoder = TileImageEncoder(len(bands), dim, width)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / INITIAL_TEMPERATURE)))
        self.caption_embeddings: torch.Tensor | None = None  # frozen text table, set before fit

    def training_step(self, batch: dict, _: int) -> torch.Tensor:
        (image,) = random_orientation(batch["image"])
        if self.hparams.jitter:
            image = radiometric_jitter(image)
        choice = sampled_captions(batch["caption_set"])
        return self.contrast(self.encoder(self.normalise(image)), batch["caption_set"], choice)

    def embed_images(self, batch: dict) -> torch.Tensor:
        return self.encoder(self.normalise(batch["image"]))

    def export_graph(self) -> nn.Module:
        return EmbeddingMap(self.encoder)


class ClipFinetune(LightningModule):
    """Task ``clip-finetune`` (see the module docstring). Batches: ``image`` uint8-range RGB at the
    model's size, ``caption_set``; the captions' token table is set before fit."""

    def __init__(self, model_name: str, model_config: dict, lr: float = 1e-5, weight_decay: float = 0.1,
                 wise_ft_alpha: float = 0.5, init: str = "", init_sha256: str = "") -> None:
        super().__init__()
        if not 0.0 <= wise_ft_alpha <= 1.0:
            raise ValueError(f"wise_ft_alpha must be in [0, 1], got {wise_ft_alpha}")
        self.save_hyperparameters()
        self.model = build_open_clip(model_name, model_config)
        preprocess = self.model.visual.preprocess_cfg
        self.register_buffer("pixel_mean", 255.0 * torch.tensor(preprocess["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", 255.0 * torch.tensor(preprocess["std"]).view(1, 3, 1, 1), persistent=False)
        self.caption_tokens: torch.Tensor | None = None
        self.zero_shot_state: dict | None = None

    @property
    def image_size(self) -> int:
        return int(self.model.visual.preprocess_cfg["size"][0])

    @property
    def text_space(self) -> str:
        return clip_space(self.hparams.model_name, self.hparams.init_sha256, self.hparams.wise_ft_alpha, fine_tuned=True)

    def normalise(self, image: torch.Tensor) -> torch.Tensor:
        return (image - self.pixel_mean) / self.pixel_std

    def on_fit_start(self) -> None:
        self.zero_shot_state = {k: v.detach().clone().cpu() for k, v in self.model.state_dict().items()}

    def training_step(self, batch: dict, _: int) -> torch.Tensor:
        (image,) = random_orientation(batch["image"])
        choice = sampled_captions(batch["caption_set"])
        tokens = self.caption_tokens.to(image.device)[choice]
        image_embedding = self.model.encode_image(self.normalise(image), normalize=True)
        text_embedding = self.model.encode_text(tokens, normalize=True)
        scale = self.model.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)
        loss = caption_clip_loss(image_embedding, text_embedding, batch["caption_set"], choice, scale)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def on_fit_end(self) -> None:
        """WiSE-FT: replace the fine-tuned weights by their interpolation with the zero-shot ones."""
        fine_tuned = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(wise_ft(self.zero_shot_state, fine_tuned, self.hparams.wise_ft_alpha))

    def configure_optimizers(self) -> dict:
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        decay = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": decay, "interval": "step"}}

    def embed_images(self, batch: dict) -> torch.Tensor:
        return self.model.encode_image(self.normalise(batch["image"]), normalize=True)

    def embed_texts(self, sentences: list[str]) -> torch.Tensor:
        return embed_sentences(ClipTextGraph(self.model), clip_tokenizer_json(self.model.context_length), sentences)


class ModalityAlignment(NormalisedInput):
    """Task ``align-modality`` (see the module docstring). Batches: ``rgb`` (teacher view, raw),
    ``other`` (student view, raw); the teacher is attached with ``attach_teacher`` before fit."""

    def __init__(self, bands: list[str], band_mean: list[float], band_std: list[float], teacher_checkpoint: str,
                 class_prompts: list[str], dim: int = 384, width: int = 32, lr: float = 1e-3,
                 zero_shot_weight: float = 0.1, image_size: int = 32, text_space: str = MINILM_SPACE) -> None:
        super().__init__(band_mean, band_std)
        self.save_hyperparameters()
        self.student = TileImageEncoder(len(bands), dim, width)
        self.teacher: LightningModule | None = None
        self.class_embeddings: torch.Tensor | None = None

    @property
    def text_space(self) -> str:
        return self.hparams.text_space

    def state_dict(self, *args, **kwargs) -> dict:
        """The student only: the teacher is its own checkpoint (``teacher_checkpoint``)."""
        return {k: v for k, v in super().state_dict(*args, **kwargs).items() if not k.startswith("teacher.")}

    def attach_teacher(self, teacher: LightningModule) -> None:
        self.teacher = teacher.eval().requires_grad_(False)
        self.class_embeddings = teacher.embed_texts(list(self.hparams.class_prompts))

    def training_step(self, batch: dict, _: int) -> torch.Tensor:
        rgb, other = random_orientation(batch["rgb"], batch["other"])
        with torch.no_grad():
            target = self.teacher.embed_images({"image": rgb})
        student = self.student(self.normalise(other))
        distance = (student - target).pow(2).sum(dim=1).mean()
        classes = self.class_embeddings.to(student.device).T
        teacher_scores = F.softmax(ZERO_SHOT_LOGIT_SCALE * target @ classes, dim=1)
        zero_shot = -(teacher_scores * F.log_softmax(ZERO_SHOT_LOGIT_SCALE * student @ classes, dim=1)).sum(1).mean()
        loss = distance + self.hparams.zero_shot_weight * zero_shot
        self.log_dict({"train_loss": loss, "train_mse": distance, "train_zero_shot": zero_shot}, prog_bar=True)
        return loss

    def configure_optimizers(self) -> dict:
        return adam_with_cosine_decay(self, self.hparams.lr)

    def embed_images(self, batch: dict) -> torch.Tensor:
        return self.student(self.normalise(batch["image"]))

    def embed_texts(self, sentences: list[str]) -> torch.Tensor:
        teacher, _ = load_checkpoint(Path(self.hparams.teacher_checkpoint))
        return teacher.embed_texts(sentences)

    def export_graph(self) -> nn.Module:
        return EmbeddingMap(self.student)


class BitemporalRetrieval(FrozenTextContrast):
    """Task ``bitemporal`` (see the module docstring). Batches: ``before``, ``after`` raw RGB,
    ``caption_set``."""

    def __init__(self, band_mean: list[float], band_std: list[float], fusion: str, dim: int = 384, width: int = 32,
                 lr: float = 1e-3, image_size: int = 32, jitter: bool = True) -> None:
        super().__init__(band_mean, band_std)
        self.save_hyperparameters()
        self.encoder = BitemporalEncoder(TileImageEncoder(len(band_mean), dim, width), fusion, dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / INITIAL_TEMPERATURE)))
        self.caption_embeddings: torch.Tensor | None = None

    def training_step(self, batch: dict, _: int) -> torch.Tensor:
        before, after = random_orientation(batch["before"], batch["after"])
        if self.hparams.jitter:
            both = radiometric_jitter(torch.cat([before, after]))  # each date its own random rendering
            before, after = both[: len(before)], both[len(before):]
        choice = sampled_captions(batch["caption_set"])
        return self.contrast(self.encoder(self.normalise(before), self.normalise(after)), batch["caption_set"], choice)

    def embed_images(self, batch: dict) -> torch.Tensor:
        return self.encoder(self.normalise(batch["before"]), self.normalise(batch["after"]))

    def export_graph(self) -> nn.Module:
        return ChangeEmbeddingMap(self.encoder)


MODULES = {
    "locked-text": LockedTextAlignment,
    "clip-finetune": ClipFinetune,
    "align-modality": ModalityAlignment,
    "bitemporal": BitemporalRetrieval,
}


def wise_ft(zero_shot: dict, fine_tuned: dict, alpha: float) -> dict:
    """WiSE-FT / PAINT weight-space ensemble: ``(1 - alpha) * zero_shot + alpha * fine_tuned`` for
    every floating-point tensor (integer buffers, e.g. counters, are taken from ``fine_tuned``)."""
    if zero_shot.keys() != fine_tuned.keys():
        raise ValueError("WiSE-FT needs two state dicts of the same architecture")
    return {
        key: torch.lerp(zero_shot[key].to(value.dtype), value, alpha) if value.is_floating_point() else value
        for key, value in fine_tuned.items()
    }

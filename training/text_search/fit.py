"""Fit the text-search tasks (``training.text_search.module``) and write a safe checkpoint."""
from __future__ import annotations

import copy
from pathlib import Path

import lightning
import torch

from training.checkpoint import load_checkpoint
from training.simulation.land_cover import LAND_COVER
from training.simulation.land_cover_captions import SHORT_NOUNS
from training.text_search.data import CaptionData, ChangeData, PairedData, SearchData, band_statistics, sample_images
from training.text_search.model import load_open_clip_weights, minilm_embeddings, open_clip_config
from training.text_search.module import (
    BitemporalRetrieval,
    ClipFinetune,
    LockedTextAlignment,
    ModalityAlignment,
)
from training.text_search.tokenization import clip_tokenizer_json, tokenize
from training.trainer import FitRun, fit_and_save, fit_trainer, start_fit

BATCH_SIZE = 32  # when the run gives none
RGB_BANDS = ["red", "green", "blue"]
TEACHER_TASKS = ("locked-text", "clip-finetune")  # align-modality students learn an RGB encoder's space
DEFAULT_CLASS_PROMPTS = tuple(
    f"A satellite image of {'water' if name == 'water' else SHORT_NOUNS[name]}." for name in LAND_COVER
)


def fit_locked_text(run: FitRun, image_size: int | None = None, embedding_width: int = 32) -> Path:
    """Image encoder for GAIA-format RGB captions, aligned to frozen all-MiniLM-L6-v2. ``image_size``:
    the model's input side (default: the data's tile size); ``embedding_width``: the encoder's first
    stage."""
    start_fit(run)
    captions = CaptionData(run.data, "train", run.batch_size or BATCH_SIZE, image_size)
    mean, std = band_statistics(sample_images(captions.train_set, "image", seed=run.seed))
    module = LockedTextAlignment(RGB_BANDS, mean, std, width=embedding_width, lr=run.lr or 1e-3,
                                 image_size=captions.size)
    module.caption_embeddings = minilm_embeddings(captions.vocabulary.sentences)
    return _train(module, captions, run, "locked-text", _caption_record(run.data, captions))


def fit_clip_finetune(run: FitRun, model: str, init: Path | None, wise_ft_alpha: float, weight_decay: float) -> Path:
    """Fine-tune an open_clip model (``--init``: a local checkpoint) and apply WiSE-FT; the input side is
    the model's."""
    start_fit(run)
    name, config = open_clip_config(model)
    module = ClipFinetune(name, config, lr=run.lr or 1e-5, weight_decay=weight_decay, wise_ft_alpha=wise_ft_alpha,
                          init=str(init or ""))
    if init is not None:
        module.hparams.init_sha256 = load_open_clip_weights(module.model, init)
    captions = CaptionData(run.data, "train", run.batch_size or BATCH_SIZE, module.image_size)
    module.caption_tokens = torch.from_numpy(
        tokenize(clip_tokenizer_json(module.model.context_length), captions.vocabulary.sentences)["input_ids"]
    )
    return _train(module, captions, run, "clip-finetune", _caption_record(run.data, captions))


def fit_align_modality(run: FitRun, teacher_checkpoint: Path, zero_shot_weight: float,
                       image_size: int | None = None, embedding_width: int = 32,
                       modality_folder: str = "multispectral") -> Path:
    """Distil a multispectral (or other) student to a teacher's RGB image embeddings (``image_size``
    default: the teacher's)."""
    start_fit(run)
    teacher, saved = load_checkpoint(teacher_checkpoint)
    if saved["task"] not in TEACHER_TASKS:
        raise ValueError(f"{teacher_checkpoint} holds a {saved['task']!r} model; the teacher is a "
                         f"{' or '.join(TEACHER_TASKS)} checkpoint")
    size = image_size or teacher.hparams.get("image_size") or teacher.image_size
    pairs = PairedData(run.data, "train", run.batch_size or BATCH_SIZE, size, modality_folder)
    mean, std = band_statistics(sample_images(pairs.train_set, "other", seed=run.seed))
    module = ModalityAlignment(
        list(pairs.dataset.band_names), mean, std, str(teacher_checkpoint), list(DEFAULT_CLASS_PROMPTS),
        dim=int(teacher.embed_texts(["x"]).shape[1]), width=embedding_width, lr=run.lr or 1e-3,
        zero_shot_weight=zero_shot_weight, image_size=size, text_space=teacher.text_space,
    )
    module.attach_teacher(teacher)
    data_record = {
        "dataset": f"paired RGB / {modality_folder} tiles (GAIA layout + {modality_folder}/)", "root": str(run.data),
        "train_items": len(pairs.dataset), "bands": list(pairs.dataset.band_names), "image_size": size,
        "teacher_checkpoint": str(teacher_checkpoint), "modality_folder": modality_folder, "units": pairs.dataset.units,
    }
    return _train(module, pairs, run, "align-modality", data_record)


def fit_bitemporal(run: FitRun, fusion: str, init: Path | None, image_size: int | None = None,
                   embedding_width: int = 32) -> Path:
    """GFF / TFF change encoder on LEVIR-CC-format pairs, aligned to frozen MiniLM sentences."""
    start_fit(run)
    pairs = ChangeData(run.data, "train", run.batch_size or BATCH_SIZE, image_size)
    images = sample_images(pairs.train_set, "before", seed=run.seed) + sample_images(pairs.train_set, "after",
                                                                                     seed=run.seed)
    mean, std = band_statistics(images)
    if init is not None:
        teacher, _ = load_checkpoint(init, "locked-text")
        mean, std = list(teacher.hparams.band_mean), list(teacher.hparams.band_std)
    module = BitemporalRetrieval(mean, std, fusion, width=embedding_width, lr=run.lr or 1e-3, image_size=pairs.size)
    if init is not None:
        _copy_encoder_weights(module.encoder.backbone, init)
    module.caption_embeddings = minilm_embeddings(pairs.vocabulary.sentences)
    data_record = {
        "dataset": "LEVIR-CC format", "root": str(run.data), "train_items": len(pairs.dataset),
        "sentences": len(pairs.vocabulary), "bands": RGB_BANDS, "image_size": pairs.size, "init": str(init or ""),
    }
    return _train(module, pairs, run, "bitemporal", data_record)


def _copy_encoder_weights(target: torch.nn.Module, checkpoint: Path) -> None:
    """Start a bitemporal backbone from a ``locked-text`` image encoder (read again here: rebuilding it
    draws its random initialisation, which the fit's random stream has always followed)."""
    source, _ = load_checkpoint(checkpoint, "locked-text")
    target.load_state_dict(copy.deepcopy(source.encoder.state_dict()))


def _caption_record(root: Path, captions: CaptionData) -> dict:
    return {
        "dataset": "GAIA format", "root": str(root), "train_items": len(captions.dataset),
        "sentences": len(captions.vocabulary), "bands": RGB_BANDS, "image_size": captions.size,
    }


def _train(module: lightning.LightningModule, data: SearchData, run: FitRun, task: str, record: dict) -> Path:
    """Fits ``module`` for the run's steps (its epochs only when it gives no steps) and writes the
    checkpoint with the data ``record``."""
    trainer = fit_trainer(run, run.max_steps or -1, run.epochs if not run.max_steps else -1)
    return fit_and_save(trainer, module, data, run, task, lambda: record, lambda: {
        "batch_size": data.batch_size,
        "parameters": sum(p.numel() for p in module.parameters() if p.requires_grad),  # not a frozen teacher
        "final_train_loss": float(trainer.callback_metrics.get("train_loss", float("nan"))),
    })

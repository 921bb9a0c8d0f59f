"""Fit the text-search tasks (``training.text_search.module``) and write a safe checkpoint."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import lightning
import torch

from training.checkpoint import load_checkpoint, save_fit_checkpoint
from training.scale_out import SINGLE_DEVICE, ScaleOut
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
from training.trainer import fit_provenance, fit_trainer

CHECKPOINT_NAME = "checkpoint.pt"
RGB_BANDS = ["red", "green", "blue"]
TEACHER_TASKS = ("locked-text", "clip-finetune")  # align-modality students learn an RGB encoder's space
DEFAULT_CLASS_PROMPTS = tuple(
    f"A satellite image of {'water' if name == 'water' else SHORT_NOUNS[name]}." for name in LAND_COVER
)


@dataclass
class FitOptions:
    max_steps: int | None = None
    epochs: int | None = None
    batch_size: int = 32
    lr: float | None = None
    seed: int = 0
    image_size: int | None = None  # default: the data's tile size (open_clip: the model's)
    embedding_width: int = 32
    accelerator: str = "auto"
    command: str = ""
    scale_out: ScaleOut = SINGLE_DEVICE


def fit_locked_text(data: Path, out: Path, options: FitOptions) -> Path:
    """Image encoder for GAIA-format RGB captions, aligned to frozen all-MiniLM-L6-v2."""
    lightning.seed_everything(options.seed, workers=True)
    captions = CaptionData(data, "train", options.batch_size, options.image_size)
    mean, std = band_statistics(sample_images(captions.train_set, "image", seed=options.seed))
    module = LockedTextAlignment(RGB_BANDS, mean, std, width=options.embedding_width, lr=options.lr or 1e-3,
                                 image_size=captions.size)
    module.caption_embeddings = minilm_embeddings(captions.vocabulary.sentences)
    return _train(module, captions, out, "locked-text", _caption_record(data, captions), options)


def fit_clip_finetune(data: Path, out: Path, model: str, init: Path | None, wise_ft_alpha: float,
                      weight_decay: float, options: FitOptions) -> Path:
    """Fine-tune an open_clip model (``--init``: a local checkpoint) and apply WiSE-FT."""
    lightning.seed_everything(options.seed, workers=True)
    name, config = open_clip_config(model)
    module = ClipFinetune(name, config, lr=options.lr or 1e-5, weight_decay=weight_decay, wise_ft_alpha=wise_ft_alpha,
                          init=str(init or ""))
    if init is not None:
        module.hparams.init_sha256 = load_open_clip_weights(module.model, init)
    captions = CaptionData(data, "train", options.batch_size, module.image_size)
    module.caption_tokens = torch.from_numpy(
        tokenize(clip_tokenizer_json(module.model.context_length), captions.vocabulary.sentences)["input_ids"]
    )
    return _train(module, captions, out, "clip-finetune", _caption_record(data, captions), options)


def fit_align_modality(data: Path, out: Path, teacher_checkpoint: Path, zero_shot_weight: float,
                       options: FitOptions, modality_folder: str = "multispectral") -> Path:
    """Distil a multispectral (or other) student to a teacher's RGB image embeddings."""
    lightning.seed_everything(options.seed, workers=True)
    teacher, saved = load_checkpoint(teacher_checkpoint)
    if saved["task"] not in TEACHER_TASKS:
        raise ValueError(f"{teacher_checkpoint} holds a {saved['task']!r} model; the teacher is a "
                         f"{' or '.join(TEACHER_TASKS)} checkpoint")
    size = options.image_size or teacher.hparams.get("image_size") or teacher.image_size
    pairs = PairedData(data, "train", options.batch_size, size, modality_folder)
    mean, std = band_statistics(sample_images(pairs.train_set, "other", seed=options.seed))
    module = ModalityAlignment(
        list(pairs.dataset.band_names), mean, std, str(teacher_checkpoint), list(DEFAULT_CLASS_PROMPTS),
        dim=int(teacher.embed_texts(["x"]).shape[1]), width=options.embedding_width, lr=options.lr or 1e-3,
        zero_shot_weight=zero_shot_weight, image_size=size, text_space=teacher.text_space,
    )
    module.attach_teacher(teacher)
    data_record = {
        "dataset": f"paired RGB / {modality_folder} tiles (GAIA layout + {modality_folder}/)", "root": str(data),
        "train_items": len(pairs.dataset), "bands": list(pairs.dataset.band_names), "image_size": size,
        "teacher_checkpoint": str(teacher_checkpoint), "modality_folder": modality_folder, "units": pairs.dataset.units,
    }
    return _train(module, pairs, out, "align-modality", data_record, options)


def fit_bitemporal(data: Path, out: Path, fusion: str, init: Path | None, options: FitOptions) -> Path:
    """GFF / TFF change encoder on LEVIR-CC-format pairs, aligned to frozen MiniLM sentences."""
    lightning.seed_everything(options.seed, workers=True)
    pairs = ChangeData(data, "train", options.batch_size, options.image_size)
    images = sample_images(pairs.train_set, "before", seed=options.seed) + sample_images(pairs.train_set, "after",
                                                                                         seed=options.seed)
    mean, std = band_statistics(images)
    if init is not None:
        teacher, _ = load_checkpoint(init, "locked-text")
        mean, std = list(teacher.hparams.band_mean), list(teacher.hparams.band_std)
    module = BitemporalRetrieval(mean, std, fusion, width=options.embedding_width, lr=options.lr or 1e-3,
                                 image_size=pairs.size)
    if init is not None:
        _copy_encoder_weights(module.encoder.backbone, init)
    module.caption_embeddings = minilm_embeddings(pairs.vocabulary.sentences)
    data_record = {
        "dataset": "LEVIR-CC format", "root": str(data), "train_items": len(pairs.dataset),
        "sentences": len(pairs.vocabulary), "bands": RGB_BANDS, "image_size": pairs.size, "init": str(init or ""),
    }
    return _train(module, pairs, out, "bitemporal", data_record, options)


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


def _train(module: lightning.LightningModule, data: SearchData, out: Path, task: str, record: dict,
           options: FitOptions) -> Path:
    if not options.max_steps and not options.epochs:
        raise ValueError("give max_steps or epochs")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    trainer = fit_trainer(out, options.accelerator, options.max_steps or -1,
                          options.epochs if not options.max_steps else -1, options.scale_out)
    started = time.monotonic()
    trainer.fit(module, datamodule=data)
    provenance = {
        **fit_provenance(trainer, options.command, options.seed, started), "batch_size": options.batch_size,
        "parameters": sum(p.numel() for p in module.parameters() if p.requires_grad),  # not a frozen teacher
        "final_train_loss": float(trainer.callback_metrics.get("train_loss", float("nan"))),
    }
    return save_fit_checkpoint(trainer, out / CHECKPOINT_NAME, task, module, record, provenance)

"""Fit the text-search tasks (``training.text_search.tasks``) and write a safe checkpoint."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import lightning
from torch.utils.data import DataLoader

from training.scale_out import SINGLE_DEVICE, ScaleOut
from training.text_search.captions import SHORT_NOUNS
from training.text_search.data import (
    CaptionedTiles,
    CaptionVocabulary,
    ChangeTiles,
    PairedTiles,
    band_statistics,
    sample_images,
)
from training.text_search.gaia import GaiaCaptions
from training.text_search.land_cover import LAND_COVER
from training.text_search.levir_cc import LevirCCPairs
from training.text_search.paired import PairedModalities
from training.text_search.tasks import (
    BitemporalRetrieval,
    ClipFinetune,
    LockedTextAlignment,
    ModalityAlignment,
    copy_encoder_weights,
    load_open_clip_weights,
    load_search_checkpoint,
    minilm_embeddings,
    open_clip_config,
    save_search_checkpoint,
)
from training.text_search.tokenization import clip_tokenizer_json, tokenize
from training.trainer import fit_provenance, fit_trainer

CHECKPOINT_NAME = "checkpoint.pt"
RGB_BANDS = ["red", "green", "blue"]
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
    captions = GaiaCaptions(data, "train")
    vocabulary = CaptionVocabulary(s.captions for s in captions.samples)
    size = options.image_size or captions[0]["image"].shape[-1]
    tiles = CaptionedTiles(captions, vocabulary, size)
    mean, std = band_statistics(sample_images(tiles, "image", seed=options.seed))
    module = LockedTextAlignment(RGB_BANDS, mean, std, width=options.embedding_width, lr=options.lr or 1e-3, image_size=size)
    module.caption_embeddings = minilm_embeddings(vocabulary.sentences)
    return _train(module, tiles, out, "locked-text", _caption_data(data, captions, vocabulary, size), options)


def fit_clip_finetune(data: Path, out: Path, model: str, init: Path | None, wise_ft_alpha: float,
                      weight_decay: float, options: FitOptions) -> Path:
    """Fine-tune an open_clip model (``--init``: a local checkpoint) and apply WiSE-FT."""
    lightning.seed_everything(options.seed, workers=True)
    name, config = open_clip_config(model)
    module = ClipFinetune(name, config, lr=options.lr or 1e-5, weight_decay=weight_decay, wise_ft_alpha=wise_ft_alpha,
                          init=str(init or ""))
    if init is not None:
        module.hparams.init_sha256 = load_open_clip_weights(module.model, init)
    captions = GaiaCaptions(data, "train")
    vocabulary = CaptionVocabulary(s.captions for s in captions.samples)
    tiles = CaptionedTiles(captions, vocabulary, module.image_size)
    module.caption_tokens = _clip_tokens(vocabulary.sentences, module.model.context_length)
    return _train(module, tiles, out, "clip-finetune", _caption_data(data, captions, vocabulary, module.image_size), options)


def fit_align_modality(data: Path, out: Path, teacher_checkpoint: Path, zero_shot_weight: float,
                       options: FitOptions, modality_folder: str = "multispectral") -> Path:
    """Distil a multispectral (or other) student to a teacher's RGB image embeddings."""
    lightning.seed_everything(options.seed, workers=True)
    teacher, _ = load_search_checkpoint(teacher_checkpoint)
    pairs = PairedModalities(data, "train", modality_folder)
    size = options.image_size or teacher.hparams.get("image_size") or teacher.image_size
    tiles = PairedTiles(pairs, size)
    mean, std = band_statistics(sample_images(tiles, "other", seed=options.seed))
    module = ModalityAlignment(
        list(pairs.band_names), mean, std, str(teacher_checkpoint), list(DEFAULT_CLASS_PROMPTS),
        dim=int(teacher.embed_texts(["x"]).shape[1]), width=options.embedding_width, lr=options.lr or 1e-3,
        zero_shot_weight=zero_shot_weight, image_size=size, text_space=teacher.text_space,
    )
    module.attach_teacher(teacher)
    data_record = {
        "dataset": f"paired RGB / {modality_folder} tiles (GAIA layout + {modality_folder}/)", "root": str(data),
        "train_items": len(pairs), "bands": list(pairs.band_names), "image_size": size,
        "teacher_checkpoint": str(teacher_checkpoint), "modality_folder": modality_folder, "units": pairs.units,
    }
    return _train(module, tiles, out, "align-modality", data_record, options)


def fit_bitemporal(data: Path, out: Path, fusion: str, init: Path | None, options: FitOptions) -> Path:
    """GFF / TFF change encoder on LEVIR-CC-format pairs, aligned to frozen MiniLM sentences."""
    lightning.seed_everything(options.seed, workers=True)
    pairs = LevirCCPairs(data, "train")
    vocabulary = CaptionVocabulary(s.captions for s in pairs.samples)
    size = options.image_size or pairs[0]["before"].shape[-1]
    tiles = ChangeTiles(pairs, vocabulary, size)
    images = sample_images(tiles, "before", seed=options.seed) + sample_images(tiles, "after", seed=options.seed)
    mean, std = band_statistics(images)
    if init is not None:
        teacher, _ = load_search_checkpoint(init, "locked-text")
        mean, std = list(teacher.hparams.band_mean), list(teacher.hparams.band_std)
    module = BitemporalRetrieval(mean, std, fusion, width=options.embedding_width, lr=options.lr or 1e-3, image_size=size)
    if init is not None:
        copy_encoder_weights(module.encoder.backbone, init)
    module.caption_embeddings = minilm_embeddings(vocabulary.sentences)
    data_record = {
        "dataset": "LEVIR-CC format", "root": str(data), "train_items": len(pairs), "sentences": len(vocabulary),
        "bands": RGB_BANDS, "image_size": size, "init": str(init or ""),
    }
    return _train(module, tiles, out, "bitemporal", data_record, options)


def _clip_tokens(sentences: list[str], context_length: int):
    import torch

    return torch.from_numpy(tokenize(clip_tokenizer_json(context_length), sentences)["input_ids"])


def _caption_data(root: Path, captions: GaiaCaptions, vocabulary: CaptionVocabulary, size: int) -> dict:
    return {
        "dataset": "GAIA format", "root": str(root), "train_items": len(captions), "sentences": len(vocabulary),
        "bands": RGB_BANDS, "image_size": size,
    }


def _train(module, dataset, out: Path, task: str, data: dict, options: FitOptions) -> Path:
    if not options.max_steps and not options.epochs:
        raise ValueError("give max_steps or epochs")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    trainer = fit_trainer(out, options.accelerator, options.max_steps or -1,
                          options.epochs if not options.max_steps else -1, options.scale_out)
    started = time.monotonic()
    loader = DataLoader(dataset, batch_size=options.batch_size, shuffle=True, drop_last=len(dataset) > options.batch_size)
    trainer.fit(module, loader)
    provenance = {
        **fit_provenance(trainer, options.command, options.seed, started), "batch_size": options.batch_size,
        "parameters": sum(p.numel() for p in module.parameters() if p.requires_grad),  # not a frozen teacher
        "final_train_loss": float(trainer.callback_metrics.get("train_loss", float("nan"))),
    }
    path = out / CHECKPOINT_NAME
    if trainer.is_global_zero:
        save_search_checkpoint(path, task, module.cpu(), data, provenance)
    return path

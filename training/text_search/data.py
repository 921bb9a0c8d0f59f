"""Training views of the caption datasets: captions as indices into a vocabulary of unique
sentences, images resized to the model's input, and the augmentations."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from training.text_search.gaia import GaiaCaptions
from training.text_search.levir_cc import LevirCCPairs
from training.text_search.paired import PairedModalities


class CaptionVocabulary:
    """The unique sentences of one or more datasets, in first-seen order."""

    def __init__(self, caption_sets) -> None:
        self.sentences: list[str] = []
        self.index: dict[str, int] = {}
        for captions in caption_sets:
            for caption in captions:
                if caption not in self.index:
                    self.index[caption] = len(self.sentences)
                    self.sentences.append(caption)

    def __len__(self) -> int:
        return len(self.sentences)

    def indices(self, captions) -> torch.Tensor:
        return torch.tensor([self.index[c] for c in captions], dtype=torch.int64)

    def relevance(self, caption_sets: list[tuple[str, ...]]) -> torch.Tensor:
        """bool ``[N, V]``: sentence ``v`` describes item ``n``."""
        relevant = torch.zeros(len(caption_sets), len(self), dtype=torch.bool)
        for row, captions in enumerate(caption_sets):
            relevant[row, self.indices(captions)] = True
        return relevant


def resize(image: np.ndarray, size: int) -> torch.Tensor:
    """float32 ``[C, size, size]`` from any ``[C, H, W]`` array (bilinear, as GAIA's varied sizes need)."""
    tensor = torch.from_numpy(np.asarray(image, dtype=np.float32))
    if tensor.shape[1:] == (size, size):
        return tensor
    return F.interpolate(tensor[None], size=(size, size), mode="bilinear", align_corners=False)[0]


class CaptionedTiles(Dataset):
    """GAIA items as ``{"image": float32 [3, S, S] raw values, "caption_set": int64 [5]}``."""

    def __init__(self, dataset: GaiaCaptions, vocabulary: CaptionVocabulary, size: int) -> None:
        self.dataset, self.vocabulary, self.size = dataset, vocabulary, size

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        item = self.dataset[index]
        return {"image": resize(item["image"], self.size), "caption_set": self.vocabulary.indices(item["captions"])}


class ChangeTiles(Dataset):
    """LEVIR-CC items as ``{"before", "after": float32 [3, S, S], "caption_set": int64 [5]}``."""

    def __init__(self, dataset: LevirCCPairs, vocabulary: CaptionVocabulary, size: int) -> None:
        self.dataset, self.vocabulary, self.size = dataset, vocabulary, size

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        item = self.dataset[index]
        return {
            "before": resize(item["before"], self.size), "after": resize(item["after"], self.size),
            "caption_set": self.vocabulary.indices(item["captions"]),
        }


class PairedTiles(Dataset):
    """Paired items as ``{"rgb": float32 [3, S, S], "other": float32 [C, S, S]}``."""

    def __init__(self, dataset: PairedModalities, size: int) -> None:
        self.dataset, self.size = dataset, size

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        item = self.dataset[index]
        return {"rgb": resize(item["rgb"], self.size), "other": resize(item["other"], self.size)}


def band_statistics(images: list[torch.Tensor]) -> tuple[list[float], list[float]]:
    """Per-band mean and std over ``images`` (``[C, H, W]`` each)."""
    stacked = torch.stack(images).transpose(0, 1).flatten(1).double()
    return stacked.mean(1).tolist(), stacked.std(1).clamp(min=1e-3).tolist()


def sample_images(dataset: Dataset, key: str, count: int = 256, seed: int = 0) -> list[torch.Tensor]:
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(dataset), min(count, len(dataset)), replace=False)
    return [dataset[int(i)][key] for i in chosen]


def random_orientation(*images: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The same random flip / quarter turn for every batch in ``images`` (``[N, C, H, W]``); the
    ground seen from above has no preferred orientation."""
    turns = int(torch.randint(4, ()))
    flip = bool(torch.randint(2, ()))
    result = []
    for image in images:
        image = torch.rot90(image, turns, dims=(2, 3))
        result.append(image.flip(3) if flip else image)
    return tuple(result)


def radiometric_jitter(image: torch.Tensor, gain: float = 0.25, offset: float = 12.0) -> torch.Tensor:
    """Per-image, per-band random gain (1 +- ``gain``) and offset (+- ``offset`` raw units), clipped
    to 0..255: 8-bit renderings of the same ground differ by stretch and haze."""
    shape = (image.shape[0], image.shape[1], 1, 1)
    common = 1 + gain * (2 * torch.rand(image.shape[0], 1, 1, 1) - 1)
    per_band = 1 + 0.3 * gain * (2 * torch.rand(shape) - 1)
    shift = offset * (2 * torch.rand(shape) - 1)
    return (image * common * per_band + shift).clamp(0, 255)

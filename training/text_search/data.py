"""The text-search training data: GAIA-format captioned tiles, LEVIR-CC-format change pairs and
paired modalities (``training/datasets/``) as model inputs, with captions as indices into a
vocabulary of unique sentences and images resized to the model's input; the data modules of the
fits and of evaluation; and the augmentations."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from training.datasets.gaia import GaiaCaptions
from training.datasets.levir_cc import LevirCCPairs
from training.datasets.paired_modalities import PairedModalities
from training.trainer import FamilyData


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


class ModelInputs(Dataset):
    """Items of a caption dataset as ``{input: float32 [C, S, S] raw values, ..., "caption_set": int64
    [5]}``: the item's images (``images``: input name -> the item's key) resized to ``size``, and its
    captions as indices into ``vocabulary``."""

    def __init__(self, dataset: Dataset, images: dict[str, str], size: int, vocabulary: CaptionVocabulary) -> None:
        self.dataset, self.images, self.size, self.vocabulary = dataset, images, size, vocabulary

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        item = self.dataset[index]
        inputs = {name: resize(item[key], self.size) for name, key in self.images.items()}
        return inputs | {"caption_set": self.vocabulary.indices(item["captions"])}


class SearchData(FamilyData):
    """One split of a caption dataset as batches of ``ModelInputs``: fitting shuffles it
    (``train_set``), evaluation ranks it whole (``test_set``, the same items). ``caption_sets``: each
    item's captions; ``vocabulary``: their unique sentences; ``size``: the model's input side."""

    def __init__(self, dataset: Dataset, caption_sets: list[tuple[str, ...]], images: dict[str, str], size: int,
                 batch_size: int) -> None:
        super().__init__(batch_size)
        self.dataset, self.caption_sets, self.size = dataset, caption_sets, size
        self.vocabulary = CaptionVocabulary(caption_sets)
        self.train_set = self.test_set = ModelInputs(dataset, images, size, self.vocabulary)


class CaptionData(SearchData):
    """GAIA-format captioned RGB tiles (``locked-text``, ``clip-finetune``): ``image``, ``caption_set``;
    ``size`` defaults to the first tile's side."""

    def __init__(self, root, split: str, batch_size: int, size: int | None = None) -> None:
        captions = GaiaCaptions(root, split)
        super().__init__(captions, [s.captions for s in captions.samples], {"image": "image"},
                         size or captions[0]["image"].shape[-1], batch_size)


class ChangeData(SearchData):
    """LEVIR-CC-format change pairs (``bitemporal``): ``before``, ``after``, ``caption_set``; ``size``
    defaults to the first pair's side."""

    def __init__(self, root, split: str, batch_size: int, size: int | None = None) -> None:
        pairs = LevirCCPairs(root, split)
        super().__init__(pairs, [s.captions for s in pairs.samples], {"before": "before", "after": "after"},
                         size or pairs[0]["before"].shape[-1], batch_size)


class PairedData(SearchData):
    """Paired RGB / other-modality tiles (``align-modality``) from ``modality_folder``: ``rgb`` (the
    teacher's view) and ``other`` (the student's) for fitting; with ``student_view`` the other
    modality alone, as ``image`` (what the student embeds)."""

    def __init__(self, root, split: str, batch_size: int, size: int, modality_folder: str = "multispectral",
                 student_view: bool = False) -> None:
        pairs = PairedModalities(root, split, modality_folder)
        images = {"image": "other"} if student_view else {"rgb": "rgb", "other": "other"}
        super().__init__(pairs, [s.captions for s in pairs.rgb.samples], images, size, batch_size)


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

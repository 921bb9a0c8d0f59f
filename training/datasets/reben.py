"""reBEN (BigEarthNet v2.0) samples for scene multi-label classification (Clasen et al., 2024).

Two sources give the same torchgeo sample dict (``image`` or ``image_s1`` + ``image_s2``,
``mask``, ``label``): the GeoTIFF tree through ``BigEarthNetV2Nearest`` and the LMDB store of
``training.datasets.ben_store``. ``ReferenceInputs`` then turns either into what the model sees,
in the reference conventions of ``reben_format`` and the label order of ``ben_labels``.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torchgeo.datasets import BigEarthNetV2

from training.datasets.ben_labels import CLASS_FROM_TORCHGEO, NO_CLASS, REFERENCE_FROM_TORCHGEO
from training.datasets.reben_format import (
    MODALITY_BANDS,
    S1_BANDS,
    S1_FILE_BANDS,
    S2_BANDS,
    S2_FILE_BANDS,
    read_s1_files,
    read_s2_files,
    upsample_nearest,
)

Sample = dict[str, Tensor]
MODALITIES = tuple(MODALITY_BANDS)
_S1_FROM_FILE = [S1_FILE_BANDS.index(band) for band in S1_BANDS]  # [VH, VV] -> [VV, VH]
_S2_FROM_FILE = [S2_FILE_BANDS.index(band) for band in S2_BANDS]  # drops B01 and B09
_LABEL_FROM_TORCHGEO = torch.tensor(REFERENCE_FROM_TORCHGEO)
# torchgeo mask value -> our class index: ordinals 0-18 are torchgeo's classes; any other value
# is a CLC code outside the nomenclature, which torchgeo leaves unmapped.
_CLASS_OF_TORCHGEO_MASK = torch.full((2**16,), NO_CLASS, dtype=torch.long)
_CLASS_OF_TORCHGEO_MASK[: len(CLASS_FROM_TORCHGEO)] = torch.tensor(CLASS_FROM_TORCHGEO)


class BigEarthNetV2Nearest(BigEarthNetV2):
    """torchgeo's ``BigEarthNetV2`` reading the files as the reference preprocessing does.

    torchgeo (0.8) reads every band through int32, which rounds Sentinel-1 backscatter to whole
    dB, and resamples the 20 m and 60 m Sentinel-2 bands bilinearly; here S1 keeps its float
    values and S2 bands are nearest-upsampled (pixels repeated). Split selection, reference-map
    remapping, labels and band order are torchgeo's own.
    """

    def _load_image(self, index: int, sensor: str) -> Tensor:
        row = self.metadata_df.loc[index]
        if sensor == "s1":
            return s1_image(read_s1_files(self.root, row["s1_name"]))
        return s2_image(read_s2_files(self.root, row["patch_id"]))


def s1_image(files: dict[str, np.ndarray]) -> Tensor:
    """[2, 120, 120] float32 in torchgeo's S1 order (VH, VV)."""
    return torch.from_numpy(np.stack([files[band] for band in S1_FILE_BANDS]).astype(np.float32))


def s2_image(files: dict[str, np.ndarray]) -> Tensor:
    """[12, 120, 120] float32 in torchgeo's S2 order, every band nearest-upsampled to 10 m."""
    bands = [upsample_nearest(files[band]) for band in S2_FILE_BANDS]
    return torch.from_numpy(np.stack(bands).astype(np.float32))


class ReferenceInputs:
    """torchgeo sample -> ``{"image", "mask", "label"}`` in the reference conventions.

    ``image``: float32 [C, 120, 120] raw values (dB, reflectance x 10000) in the band order of
    ``reben_format.MODALITY_BANDS[modalities]``; ``mask``: int64 [120, 120] class index per pixel
    (``NO_CLASS`` outside the nomenclature); ``label``: float32 [19] multi-hot, ``ben_labels`` order.
    """

    def __init__(self, modalities: str) -> None:
        if modalities not in MODALITIES:
            raise ValueError(f"modalities must be one of {MODALITIES}, got {modalities!r}")
        self.modalities = modalities

    def __call__(self, sample: Sample) -> Sample:
        if self.modalities == "s1,s2":
            image = torch.cat([sample["image_s1"][_S1_FROM_FILE], sample["image_s2"][_S2_FROM_FILE]])
        elif self.modalities == "s1":
            image = sample["image"][_S1_FROM_FILE]
        else:
            image = sample["image"][_S2_FROM_FILE]
        return {
            "image": image,
            "mask": _CLASS_OF_TORCHGEO_MASK[sample["mask"][0].clamp(0, 2**16 - 1)],
            "label": sample["label"][_LABEL_FROM_TORCHGEO].float(),
        }


def random_flips(sample: Sample) -> Sample:
    """Flip image and mask alike, horizontally and vertically, each with probability 1/2."""
    for dimension in (-1, -2):
        if torch.rand(()) < 0.5:
            sample = sample | {key: sample[key].flip(dimension) for key in ("image", "mask")}
    return sample

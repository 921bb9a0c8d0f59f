"""PASTIS-R with observation dates and several modalities per sample, and a collate for series of
different lengths.

Garnot, Landrieu, Chehata, ISPRS J. 2022 (PASTIS-R). torchgeo's ``PASTIS`` reads one modality and
no dates; ``PASTISR`` subclasses it (same layout, folds and file list; see
``training.datasets.pastis_r_format``) and returns, per modality ``m`` ("s2", "s1"), the model
inputs of the crop-map convention before normalisation::

    m        float32 [T_m, C_m, H, W]  raw values (S2 reflectance x 10000; S1 dB)
    m_doy    int64 [T_m]               day of year 1..366 of each date (metadata dates-S2 / dates-S1A)
    m_mask   float32 [T_m, H, W]       1 where the pixel is valid on that date
    label    int64 [H, W]              PASTIS semantic class (0 background .. 18, 19 void)

PASTIS has no cloud masks (cloudy dates are kept), so validity is derived: nodata (every band 0)
is invalid in both modalities, non-finite S1 values too, and an S2 pixel whose blue reflectance
exceeds ``CLOUD_BLUE_REFLECTANCE`` is taken as cloud (the first test of classic threshold cloud
screening: bright in blue, where clear land is dark).
"""
from __future__ import annotations

import datetime
import json
import os
from collections.abc import Callable, Sequence

import geopandas as gpd
import numpy as np
import torch
from torch import Tensor
from torchgeo.datasets import PASTIS

from training.datasets.pastis_r_format import DATE_KEYS, DIRECTORY, METADATA_FILE, S2_BANDS, S2_SCALE, dataset_root

CLOUD_BLUE_REFLECTANCE = 0.18
MODALITY_NAMES = ("s2", "s1")  # contract / ONNX names; "s1" reads the orbit given by s1_orbit


def day_of_year(yyyymmdd: int) -> int:
    text = str(int(yyyymmdd))
    return datetime.date(int(text[:4]), int(text[4:6]), int(text[6:])).timetuple().tm_yday


def s2_validity(values: Tensor) -> Tensor:
    """[T, C, H, W] reflectance x 10000 -> float [T, H, W]: not nodata and not bright in blue."""
    blue = values[:, S2_BANDS.index("B02")]
    return ((values != 0).any(dim=1) & (blue < CLOUD_BLUE_REFLECTANCE * S2_SCALE)).float()


def s1_validity(values: Tensor) -> Tensor:
    """[T, C, H, W] backscatter -> float [T, H, W]: every channel finite and not all zero."""
    return (torch.isfinite(values).all(dim=1) & (values != 0).any(dim=1)).float()


class PASTISR(PASTIS):
    """PASTIS-R samples with Sentinel-2 and/or Sentinel-1 series, their dates and validity masks."""

    def __init__(
        self,
        root: str | os.PathLike = "data",
        folds: Sequence[int] = (1, 2, 3, 4, 5),
        modalities: Sequence[str] = ("s2", "s1"),
        s1_orbit: str = "s1a",
        transforms: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None,
    ) -> None:
        """``root`` holds ``PASTIS-R/`` (or is it); ``modalities`` from ("s2", "s1") in that order;
        ``s1_orbit``: "s1a" (ascending) or "s1d" (descending) for "s1"."""
        if not modalities or any(m not in MODALITY_NAMES for m in modalities):
            raise ValueError(f"modalities must be from {MODALITY_NAMES}, got {tuple(modalities)}")
        if s1_orbit not in ("s1a", "s1d"):
            raise ValueError(f"s1_orbit must be 's1a' or 's1d', got {s1_orbit!r}")
        self.modalities = tuple(modalities)
        self.sources = {m: "s2" if m == "s2" else s1_orbit for m in self.modalities}
        super().__init__(str(dataset_root(root)), folds, bands="s2", mode="semantic", transforms=transforms)

    def _load_files(self) -> list[dict[str, str]]:
        files = super()._load_files()
        metadata = gpd.read_file(os.path.join(self.root, DIRECTORY, METADATA_FILE))
        metadata = metadata.set_index(metadata["ID_PATCH"].astype(int))
        self.day_of_year = [
            {source: self._days(metadata.loc[int(patch_id), DATE_KEYS[source]]) for source in set(self.sources.values())}
            for patch_id in self.idxs
        ]
        return files

    @staticmethod
    def _days(dates: dict | str) -> list[int]:
        """A ``dates-*`` entry ({"0": YYYYMMDD, ...}, or its JSON text) -> days of year in array order."""
        dates = json.loads(dates) if isinstance(dates, str) else dates
        return [day_of_year(dates[key]) for key in sorted(dates, key=int)]

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        sample = {}
        for modality, source in self.sources.items():
            values = torch.from_numpy(np.load(self.files[index][source]).astype(np.float32))
            days = torch.tensor(self.day_of_year[index][source], dtype=torch.int64)
            if len(days) != len(values):
                raise ValueError(f"{self.files[index][source]}: {len(values)} dates, metadata lists {len(days)}")
            mask = s2_validity(values) if modality == "s2" else s1_validity(values)
            sample[modality] = torch.nan_to_num(values) * mask[:, None]
            sample[f"{modality}_doy"] = days
            sample[f"{modality}_mask"] = mask
        sample["label"] = self._load_semantic_targets(index)
        return self.transforms(sample) if self.transforms is not None else sample


def collate_series(samples: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Stack samples whose series differ in length: each modality is padded at the end to the
    batch's longest series with zero values, day of year 0 and mask 0 (padding is never valid)."""
    batch = {}
    for key in samples[0]:
        tensors = [sample[key] for sample in samples]
        if key == "label":
            batch[key] = torch.stack(tensors)
            continue
        longest = max(t.shape[0] for t in tensors)
        padded = tensors[0].new_zeros((len(tensors), longest, *tensors[0].shape[1:]))
        for row, tensor in enumerate(tensors):
            padded[row, : tensor.shape[0]] = tensor
        batch[key] = padded
    return batch

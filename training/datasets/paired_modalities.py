"""Paired RGB / multispectral (or SAR) tiles of the same ground, for aligning a new modality to a
CLIP-style image space by distillation ("Mind the Modality Gap", see ``training.text_search.module``).

On disk: a GAIA-format root (``training.datasets.gaia``) for the RGB side, plus::

    {root}/multispectral/{id}.tif   the same footprint in the other modality, one GeoTIFF per GAIA id,
                                    band descriptions naming the bands (e.g. B02 B03 B04 B08 B11 B12),
                                    optionally a dataset tag ``units`` saying what the values are

Any other modality works the same way (Sentinel-1 VV/VH as ``{id}.tif`` in another folder:
``modality_folder``; ``make-caption-fixtures --sar`` writes a simulated one to ``sar/``). Pixel
sizes may differ between the two sides; each is resized to its encoder's input by the training code.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from torchgeo.datasets import NonGeoDataset

from training.datasets.gaia import GaiaCaptions


class PairedModalities(NonGeoDataset):
    """Items: ``{"rgb": uint8 [3, H, W], "other": float32 [C, H', W'], "captions", "id"}``."""

    def __init__(self, root: Path, split: str = "train", modality_folder: str = "multispectral") -> None:
        self.rgb = GaiaCaptions(root, split)
        self.folder = Path(root) / modality_folder
        missing = [s.id for s in self.rgb.samples if not (self.folder / f"{s.id}.tif").exists()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} GAIA ids have no {self.folder}/<id>.tif (first: {missing[0]})")
        with rasterio.open(self.folder / f"{self.rgb.samples[0].id}.tif") as source:
            self.band_names = tuple(d or f"band{i + 1}" for i, d in enumerate(source.descriptions))
            self.gsd_m = float(abs(source.res[0])) if source.crs and source.crs.is_projected else None
            self.units: str | None = source.tags().get("units")

    def __len__(self) -> int:
        return len(self.rgb)

    def __getitem__(self, index: int) -> dict:
        item = self.rgb[index]
        with rasterio.open(self.folder / f"{item['id']}.tif") as source:
            other = source.read().astype(np.float32)
        return {"rgb": item["image"], "other": other, "captions": item["captions"], "id": item["id"]}

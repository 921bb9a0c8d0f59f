"""reBEN / BigEarthNet v2.0 on disk and the reference input convention, without torch.

Clasen et al., "reBEN: Refined BigEarthNet Dataset for Remote Sensing Image Analysis", 2024.
The layout is the one torchgeo's ``BigEarthNetV2`` reads::

    <root>/metadata.parquet          patch_id, labels (19-class names), split (train | validation |
                                     test), country, s1_name, s2v1_name, contains_seasonal_snow,
                                     contains_cloud_or_shadow
    <root>/BigEarthNet-S2/<tile acquisition>/<patch_id>/<patch_id>_<band>.tif
        12 uint16 L2A bands (reflectance x 10000): 10 m bands 120x120, 20 m bands 60x60,
        60 m bands (B01, B09) 20x20; <tile acquisition> is patch_id less its "_<row>_<col>"
    <root>/BigEarthNet-S1/<acquisition>/<s1_name>/<s1_name>_{VV,VH}.tif
        float32 backscatter in dB, 120x120; <acquisition> is s1_name less "_<tile>_<row>_<col>"
    <root>/Reference_Maps/<tile acquisition>/<patch_id>/<patch_id>_reference_map.tif
        uint16 CLC level-3 codes, 120x120

Every patch covers 1200 m x 1200 m of a UTM grid. Model input follows the reference weights
(v0.2.0): S1 = [VV, VH], S2 = [B02, B03, B04, B05, B06, B07, B08, B8A, B11, B12], both = S1 then
S2, 20 m bands nearest-upsampled to 120x120, each band standardised with ``BAND_MEAN`` /
``BAND_STD`` (dataset statistics of the reference code, see shared/papers.md).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio

S1_FOLDER = "BigEarthNet-S1"
S2_FOLDER = "BigEarthNet-S2"
MAPS_FOLDER = "Reference_Maps"
METADATA_FILE = "metadata.parquet"
SPLITS = {"train": "train", "val": "validation", "test": "test"}  # torchgeo name -> metadata value

PATCH_PIXELS = 120  # at 10 m
PATCH_SIDE_M = 1200
S2_BAND_GSD_M = {
    "B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20,
    "B07": 20, "B08": 10, "B8A": 20, "B09": 60, "B11": 20, "B12": 20,
}
# File order of torchgeo's samples: S2 sorted with B8A as "B08A", S1 sorted by name.
S2_FILE_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
S1_FILE_BANDS = ("VH", "VV")

S1_BANDS = ("VV", "VH")
S2_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
MODALITY_BANDS = {"s1": S1_BANDS, "s2": S2_BANDS, "s1,s2": S1_BANDS + S2_BANDS}
TORCHGEO_BANDS = {"s1": "s1", "s2": "s2", "s1,s2": "all"}  # BigEarthNetV2(bands=...)
BAND_MEAN = {
    "VV": -12.644, "VH": -19.353, "B02": 438.37, "B03": 614.06, "B04": 588.41, "B05": 942.84,
    "B06": 1769.93, "B07": 2049.55, "B08": 2193.29, "B8A": 2235.56, "B11": 1568.23, "B12": 997.73,
}
BAND_STD = {
    "VV": 5.133, "VH": 5.591, "B02": 607.03, "B03": 603.30, "B04": 684.57, "B05": 738.43,
    "B06": 1100.46, "B07": 1275.81, "B08": 1369.37, "B8A": 1356.54, "B11": 1070.16, "B12": 813.53,
}

FIXTURE_RECORD = "fixture.json"  # written beside a generated fixture (training/simulation/bigearthnet_fixture.py)


def fixture_record(root: Path) -> dict | None:
    """What the fixture generator recorded under ``root`` (None for real data)."""
    path = Path(root) / FIXTURE_RECORD
    return json.loads(path.read_text()) if path.exists() else None


def s2_patch_folder(root: Path, patch_id: str) -> Path:
    return Path(root) / S2_FOLDER / "_".join(patch_id.split("_")[:-2]) / patch_id


def s1_patch_folder(root: Path, s1_name: str) -> Path:
    return Path(root) / S1_FOLDER / "_".join(s1_name.split("_")[:-3]) / s1_name


def reference_map_path(root: Path, patch_id: str) -> Path:
    folder = Path(root) / MAPS_FOLDER / "_".join(patch_id.split("_")[:-2]) / patch_id
    return folder / f"{patch_id}_reference_map.tif"


def band_pixels(band: str) -> int:
    """Side in pixels of a band's file: 120 (10 m, S1), 60 (20 m) or 20 (60 m)."""
    return PATCH_SIDE_M // S2_BAND_GSD_M.get(band, 10)


def read_s2_files(root: Path, patch_id: str) -> dict[str, np.ndarray]:
    """The 12 Sentinel-2 bands of a patch at their native sizes (uint16)."""
    folder = s2_patch_folder(root, patch_id)
    return {band: _read(folder / f"{patch_id}_{band}.tif") for band in S2_FILE_BANDS}


def read_s1_files(root: Path, s1_name: str) -> dict[str, np.ndarray]:
    """VH and VV of a patch (float32 dB)."""
    folder = s1_patch_folder(root, s1_name)
    return {band: _read(folder / f"{s1_name}_{band}.tif") for band in S1_FILE_BANDS}


def read_reference_map(root: Path, patch_id: str) -> np.ndarray:
    """The CLC-coded reference map of a patch."""
    return _read(reference_map_path(root, patch_id))


def upsample_nearest(band: np.ndarray, pixels: int = PATCH_PIXELS) -> np.ndarray:
    """Repeat each pixel to reach ``pixels`` per side (20 m -> 2x2, 60 m -> 6x6 blocks)."""
    factor = pixels // band.shape[-1]
    return band.repeat(factor, axis=-2).repeat(factor, axis=-1)


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as source:
        return source.read(1)

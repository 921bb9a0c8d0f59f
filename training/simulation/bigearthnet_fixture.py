"""Generated patches in BigEarthNet v2.0's exact on-disk layout (reBEN, Clasen et al., 2024).

Like torchgeo's ``tests/data/bigearthnet/v2/data.py`` the fixture reproduces the layout
(``training.datasets.reben_format``): 12 Sentinel-2 band files at their native 10/20/60 m sizes,
Sentinel-1 VV/VH, a CLC-coded reference map and ``metadata.parquet``. Unlike it, the content is
coherent so that a model trained on it learns something:

- each patch sits on a real UTM grid (the zone of its Sentinel-2 tile), 1200 m square, with the
  same georeferencing for S1, S2 and the map;
- the reference map is a mosaic of irregular regions of one to four classes (CLC level-3 codes
  of the 19-class nomenclature; some patches also hold a road, CLC 122, which has no class);
- the labels are exactly the classes that cover pixels of the map;
- every class has its own L2A reflectance spectrum and S1 backscatter (typical values of water,
  forest, crops, built-up land, ...), varied per patch and textured, with speckle on S1; the
  20 m and 60 m bands are block averages of the 10 m field;
- the split is geographic, as in reBEN: whole tiles go to train, validation or test.

It is NOT Sentinel imagery and a model trained on it is not a land-cover classifier.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
from rasterio.transform import from_origin

from training.datasets.ben_labels import CLASS_NAMES, CLASSES, CLC_TO_CLASS
from training.datasets.reben_format import (
    FIXTURE_RECORD,
    METADATA_FILE,
    PATCH_PIXELS,
    PATCH_SIDE_M,
    S1_FILE_BANDS,
    S2_BAND_GSD_M,
    S2_FILE_BANDS,
    reference_map_path,
    s1_patch_folder,
    s2_patch_folder,
)
ROAD_CLC_CODE = 122  # road and rail networks: in reference maps, not in the 19-class nomenclature


@dataclass(frozen=True)
class Tile:
    name: str  # Sentinel-2 MGRS tile
    epsg: int  # its UTM zone
    upper_left: tuple[float, float]  # tile origin, metres
    country: str
    s2_acquisition: str
    s1_acquisition: str
    split: str


TILES = (
    Tile("T33UUP", 32633, (399960.0, 5300040.0), "Austria",
         "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP", "S1A_IW_GRDH_1SDV_20170613T165043", "train"),
    Tile("T29SND", 32629, (499980.0, 4300020.0), "Portugal",
         "S2A_MSIL2A_20170717T113321_N9999_R080_T29SND", "S1A_IW_GRDH_1SDV_20170717T183412", "train"),
    Tile("T35VLJ", 32635, (300000.0, 6800040.0), "Finland",
         "S2B_MSIL2A_20180525T094029_N9999_R036_T35VLJ", "S1B_IW_GRDH_1SDV_20180525T155019", "train"),
    Tile("T29UPU", 32629, (600000.0, 5900040.0), "Ireland",
         "S2A_MSIL2A_20180417T114351_N9999_R123_T29UPU", "S1A_IW_GRDH_1SDV_20180417T065439", "validation"),
    Tile("T34UFD", 32634, (600000.0, 6100020.0), "Lithuania",
         "S2B_MSIL2A_20170924T093029_N9999_R136_T34UFD", "S1B_IW_GRDH_1SDV_20170924T161517", "test"),
)
PATCHES_PER_TILE_SIDE = 91  # a 109.8 km tile holds 91 x 91 patches of 1.2 km

# L2A reflectance x 10000 per class in S2_FILE_BANDS order
# (B01, B02, B03, B04, B05, B06, B07, B08, B8A, B09, B11, B12).
SPECTRA = {
    "Agro-forestry areas": (400, 450, 700, 650, 1100, 2000, 2400, 2600, 2700, 2700, 2200, 1400),
    "Arable land": (700, 700, 900, 1100, 1400, 1900, 2200, 2400, 2500, 2500, 2600, 1900),
    "Beaches, dunes, sands": (1800, 2000, 2400, 2700, 2900, 3000, 3100, 3200, 3300, 3300, 3800, 3300),
    "Broad-leaved forest": (250, 300, 550, 300, 900, 2600, 3300, 3600, 3700, 3700, 1800, 800),
    "Coastal wetlands": (500, 500, 700, 600, 850, 1200, 1400, 1500, 1550, 1550, 900, 500),
    "Complex cultivation patterns": (550, 600, 850, 850, 1250, 2300, 2800, 3000, 3100, 3100, 2500, 1600),
    "Coniferous forest": (200, 250, 400, 220, 600, 1500, 1900, 2100, 2200, 2200, 1000, 450),
    "Industrial or commercial units": (1400, 1400, 1500, 1600, 1700, 1800, 1850, 1900, 1950, 1900, 2300, 2100),
    "Inland waters": (500, 450, 550, 400, 380, 300, 260, 230, 200, 150, 90, 60),
    "Inland wetlands": (350, 380, 600, 450, 800, 1500, 1800, 1900, 2000, 2000, 1100, 550),
    "Land principally occupied by agriculture, with significant areas of natural vegetation":
        (450, 500, 750, 650, 1050, 2200, 2700, 2900, 3000, 3000, 2000, 1100),
    "Marine waters": (700, 600, 500, 300, 220, 180, 150, 130, 110, 90, 50, 30),
    "Mixed forest": (230, 280, 480, 260, 750, 2000, 2600, 2800, 2900, 2900, 1400, 620),
    "Moors, heathland and sclerophyllous vegetation":
        (400, 450, 650, 600, 950, 1600, 1900, 2100, 2200, 2200, 2000, 1200),
    "Natural grassland and sparsely vegetated areas":
        (550, 600, 900, 900, 1300, 2100, 2500, 2700, 2800, 2800, 2700, 1800),
    "Pastures": (350, 400, 750, 500, 1100, 2800, 3400, 3700, 3800, 3800, 2200, 1100),
    "Permanent crops": (500, 550, 800, 800, 1200, 2000, 2400, 2600, 2700, 2700, 2300, 1500),
    "Transitional woodland, shrub": (350, 400, 650, 500, 1000, 2100, 2600, 2800, 2900, 2900, 2000, 1000),
    "Urban fabric": (1100, 1000, 1100, 1200, 1350, 1500, 1600, 1700, 1750, 1700, 2100, 1800),
}
# Mean backscatter (VV, VH) in dB per class.
BACKSCATTER_DB = {
    "Agro-forestry areas": (-9.0, -15.5),
    "Arable land": (-11.0, -18.0),
    "Beaches, dunes, sands": (-16.0, -25.0),
    "Broad-leaved forest": (-7.5, -13.0),
    "Coastal wetlands": (-13.0, -21.0),
    "Complex cultivation patterns": (-10.0, -16.5),
    "Coniferous forest": (-8.0, -14.0),
    "Industrial or commercial units": (-4.0, -11.0),
    "Inland waters": (-20.0, -27.0),
    "Inland wetlands": (-12.0, -19.5),
    "Land principally occupied by agriculture, with significant areas of natural vegetation": (-9.5, -15.5),
    "Marine waters": (-18.0, -26.0),
    "Mixed forest": (-7.8, -13.5),
    "Moors, heathland and sclerophyllous vegetation": (-10.5, -17.0),
    "Natural grassland and sparsely vegetated areas": (-11.5, -18.5),
    "Pastures": (-10.0, -17.0),
    "Permanent crops": (-9.0, -16.0),
    "Transitional woodland, shrub": (-8.8, -15.0),
    "Urban fabric": (-5.0, -12.0),
}
# Relative frequency of each class in the generated maps (common: crops and forests).
FREQUENCY = {
    "Arable land": 3.0, "Coniferous forest": 2.5, "Mixed forest": 2.0, "Broad-leaved forest": 2.0,
    "Pastures": 2.0, "Complex cultivation patterns": 1.5, "Transitional woodland, shrub": 1.5,
    "Land principally occupied by agriculture, with significant areas of natural vegetation": 1.5,
    "Urban fabric": 1.2, "Inland waters": 1.0, "Marine waters": 0.8, "Inland wetlands": 0.7,
    "Natural grassland and sparsely vegetated areas": 0.7, "Industrial or commercial units": 0.6,
    "Permanent crops": 0.6, "Moors, heathland and sclerophyllous vegetation": 0.6,
    "Agro-forestry areas": 0.5, "Beaches, dunes, sands": 0.5, "Coastal wetlands": 0.5,
}
SPECKLE_LOOKS = 4.4  # equivalent number of looks of a GRD product
CLASS_OF_CLC_CODE = np.full(1000, -1)  # CLC code -> class index, -1 outside the nomenclature
CLASS_OF_CLC_CODE[list(CLC_TO_CLASS)] = list(CLC_TO_CLASS.values())


def write_bigearthnet_fixture(root: Path, patches: int, seed: int = 0) -> pd.DataFrame:
    """Write ``patches`` patches (spread over ``TILES``) under ``root``; returns the metadata."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    tile_cells = {
        tile.name: rng.permutation(PATCHES_PER_TILE_SIDE**2)[: -(-patches // len(TILES))] for tile in TILES
    }
    records = []
    for index in range(patches):
        tile = TILES[index % len(TILES)]
        row, col = divmod(int(tile_cells[tile.name][index // len(TILES)]), PATCHES_PER_TILE_SIDE)
        records.append(_write_patch(root, tile, row, col, rng))
    metadata = pd.DataFrame.from_records(records)
    metadata.to_parquet(root / METADATA_FILE)
    (root / FIXTURE_RECORD).write_text(
        json.dumps({"generator": __name__, "patches": patches, "seed": seed}, indent=2) + "\n"
    )
    return metadata


def _write_patch(root: Path, tile: Tile, row: int, col: int, rng: np.random.Generator) -> dict:
    patch_id = f"{tile.s2_acquisition}_{row}_{col}"
    s1_name = f"{tile.s1_acquisition}_{tile.name[1:]}_{row}_{col}"
    west = tile.upper_left[0] + col * PATCH_SIDE_M
    north = tile.upper_left[1] - row * PATCH_SIDE_M
    reference_map = _reference_map(rng)
    classes = CLASS_OF_CLC_CODE[reference_map]
    reflectance = _reflectance(classes, rng)
    backscatter = _backscatter(classes, rng)

    def write(path: Path, array: np.ndarray, gsd: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        profile = {
            "driver": "GTiff", "width": array.shape[1], "height": array.shape[0], "count": 1,
            "dtype": array.dtype, "crs": f"EPSG:{tile.epsg}", "transform": from_origin(west, north, gsd, gsd),
        }
        with rasterio.open(path, "w", **profile) as target:
            target.write(array, 1)

    for band_index, band in enumerate(S2_FILE_BANDS):
        gsd = S2_BAND_GSD_M[band]
        block = gsd // 10
        native = reflectance[band_index].reshape(PATCH_PIXELS // block, block, PATCH_PIXELS // block, block)
        write(
            s2_patch_folder(root, patch_id) / f"{patch_id}_{band}.tif",
            np.rint(native.mean(axis=(1, 3))).astype(np.uint16),
            gsd,
        )
    for band in S1_FILE_BANDS:
        write(s1_patch_folder(root, s1_name) / f"{s1_name}_{band}.tif", backscatter[band], 10)
    write(reference_map_path(root, patch_id), reference_map, 10)
    present = sorted({code for code in np.unique(reference_map).tolist() if code in CLC_TO_CLASS})
    labels = list(dict.fromkeys(CLASS_NAMES[CLC_TO_CLASS[code]] for code in present))
    return {
        "patch_id": patch_id,
        "labels": labels,
        "split": tile.split,
        "country": tile.country,
        "s1_name": s1_name,
        "s2v1_name": f"{'_'.join(tile.s2_acquisition.split('_')[:3])}_{row}_{col}",
        "contains_seasonal_snow": False,
        "contains_cloud_or_shadow": False,
    }


def _reference_map(rng: np.random.Generator) -> np.ndarray:
    """A mosaic of 1-4 classes in irregular (warped Voronoi) regions, as CLC codes (uint16)."""
    weights = np.array([FREQUENCY[name] for name in CLASS_NAMES])
    class_count = int(rng.choice([1, 2, 3, 4], p=[0.2, 0.35, 0.3, 0.15]))
    chosen = rng.choice(len(CLASS_NAMES), size=class_count, replace=False, p=weights / weights.sum())
    regions = class_count + int(rng.integers(0, 4))
    region_class = np.concatenate([chosen, rng.choice(chosen, size=regions - class_count)])
    seeds = rng.uniform(0, PATCH_PIXELS, size=(regions, 2))
    rows, cols = np.mgrid[0:PATCH_PIXELS, 0:PATCH_PIXELS].astype(float)
    rows += 12 * _smooth_field(rng, 20)
    cols += 12 * _smooth_field(rng, 20)
    distance = (rows[None] - seeds[:, 0, None, None]) ** 2 + (cols[None] - seeds[:, 1, None, None]) ** 2
    region = distance.argmin(axis=0)
    region[seeds[:, 0].astype(int), seeds[:, 1].astype(int)] = np.arange(regions)  # no region vanishes
    codes = np.array([rng.choice(CLASSES[index][1]) for index in region_class], dtype=np.uint16)
    reference_map = codes[region]
    if rng.random() < 0.15:  # a road crossing the patch
        offset = int(rng.integers(10, PATCH_PIXELS - 10))
        along = np.arange(PATCH_PIXELS)
        across = np.clip(offset + ((along - 60) * rng.uniform(-0.5, 0.5)).astype(int), 0, PATCH_PIXELS - 2)
        for width in range(2):
            reference_map[along, across + width] = ROAD_CLC_CODE
    return reference_map


def _reflectance(classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """12-band 10 m reflectance x 10000 [12, 120, 120] from the class of each pixel."""
    spectra = np.array([SPECTRA[name] for name in CLASS_NAMES] + [SPECTRA["Urban fabric"]], dtype=float)
    class_gain = rng.normal(1.0, 0.08, size=len(spectra))[:, None]  # this patch's variety of each class
    image = (spectra * class_gain)[classes].transpose(2, 0, 1)  # -1 (no class: roads) -> urban-like
    texture = 1 + 0.06 * _smooth_field(rng, 6)
    noise = 1 + 0.03 * rng.standard_normal(image.shape)
    illumination = rng.normal(1.0, 0.05)
    return np.clip(image * texture * noise * illumination, 1, 15000)


def _backscatter(classes: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """S1 VV and VH in dB with multiplicative speckle (gamma-distributed intensity)."""
    means = np.array([BACKSCATTER_DB[name] for name in CLASS_NAMES] + [BACKSCATTER_DB["Urban fabric"]])
    incidence_offset = rng.normal(0.0, 0.7)
    result = {}
    for polarisation_index, polarisation in enumerate(("VV", "VH")):
        decibels = means[classes, polarisation_index] + incidence_offset + 0.8 * _smooth_field(rng, 8)
        speckle = rng.gamma(SPECKLE_LOOKS, 1 / SPECKLE_LOOKS, size=classes.shape)
        result[polarisation] = (decibels + 10 * np.log10(speckle)).astype(np.float32)
    return result


def _smooth_field(rng: np.random.Generator, correlation_px: float) -> np.ndarray:
    """Gaussian random field [120, 120] with unit std and the given correlation length."""
    frequencies = np.fft.fftfreq(PATCH_PIXELS)
    radius2 = frequencies[:, None] ** 2 + frequencies[None, :] ** 2
    spectrum = np.fft.fft2(rng.standard_normal((PATCH_PIXELS, PATCH_PIXELS)))
    field = np.fft.ifft2(spectrum * np.exp(-2 * (np.pi * correlation_px) ** 2 * radius2)).real
    return (field - field.mean()) / field.std()

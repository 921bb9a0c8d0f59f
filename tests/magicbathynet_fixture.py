"""A tiny MagicBathyNet written like the real files (torchgeo style: random values, real form).

Agrafiotis, Janowski, Skarlatos, Demir, IGARSS 2024; layout from the dataset's README
(github.com/pagraf/MagicBathyNet). Written independently of the toolbox's own writers, so the
readers are tested against the real form rather than against themselves. What is confirmed and
what is assumed:

- patches cover 180 m: Sentinel-2 18x18 px at 10 m, SPOT-6 30x30 px at 6 m, co-registered; depth
  float32 GeoTIFFs in metres, negative below the surface, 0 where unknown, small positive values
  (land) in Puck Lagoon; CRS EPSG:32636 (Agia Napa) and EPSG:25834 (Puck Lagoon) - all as read
  from the real files by allenai/olmoearth_pretrain (``open_set_segmentation_data/datasets/
  magicbathynet.py`` and its notes). Assumed: the same CRS for SPOT-6, uint16 images, uint8 gts.
- gts: RGB colours of the README's class table, black undefined (the notebooks' palette).
- split files: the same reader calls them "labelled Python-list blocks", the first after
  ``annotated sample:`` holding every annotated id; the ``train sample:``/``test sample:`` labels
  of the other blocks are assumed. Agia Napa ids are the authors' notebook ids; Puck Lagoon's are
  made up. The img folders also hold unannotated patches (the README's img_339 is one).
- norm_param: ``norm_param_<modality>_<an|pl>.txt`` (README) holding minima, then maxima (the
  notebooks' ``np.load``ed (2, 3) arrays); the text layout (here ``np.savetxt``) is assumed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

CRS = {"agia_napa": "EPSG:32636", "puck_lagoon": "EPSG:25834"}
UPPER_LEFT = {"agia_napa": (588000.0, 3873000.0), "puck_lagoon": (347000.0, 6070000.0)}
SUFFIX = {"agia_napa": "an", "puck_lagoon": "pl"}
PATCH_PX = {"s2": 18, "spot6": 30}
PATCH_M = 180.0
IDS = {
    "agia_napa": {"train": ("409", "418", "350", "399"), "test": ("411", "387")},
    "puck_lagoon": {"train": ("3051", "3052", "3060", "3061"), "test": ("3070", "3071")},
}
UNANNOTATED_ID = "339"
COLOURS = {
    "agia_napa": ((0, 128, 0), (0, 0, 255), (255, 0, 0), (255, 128, 0)),
    "puck_lagoon": ((255, 128, 0), (0, 128, 0)),
}
UNDEFINED = (0, 0, 0)


def write_magicbathynet(root: Path, seed: int = 0) -> Path:
    """Write both areas, S2 and SPOT-6, as ``<root>/<area>/...``; returns ``root``."""
    rng = np.random.default_rng(seed)
    for area in CRS:
        area_root = Path(root) / area
        ids = IDS[area]
        annotated = [*ids["train"], *ids["test"]]
        for modality, size in PATCH_PX.items():
            images = [
                _write_patch(area_root, area, modality, size, patch_id, index, rng, patch_id in annotated)
                for index, patch_id in enumerate([*annotated, UNANNOTATED_ID])
            ]
            pixels = np.concatenate([image.reshape(3, -1) for image in images], axis=1)
            pixels = pixels[:, (pixels != 0).any(axis=0)]  # minima and maxima of valid pixels
            np.savetxt(area_root / f"norm_param_{modality}_{SUFFIX[area]}.txt",
                       np.stack([pixels.min(axis=1), pixels.max(axis=1)]).astype(np.float64))
            for task in ("bathymetry", "pixel_class"):
                (area_root / f"{modality}_split_{task}.txt").write_text(
                    f"annotated sample: {annotated}\ntrain sample: {list(ids['train'])}\n"
                    f"test sample: {list(ids['test'])}\n"
                )
    return Path(root)


def _write_patch(area_root, area, modality, size, patch_id, index, rng, annotated) -> np.ndarray:
    west, north = UPPER_LEFT[area]
    pixel = PATCH_M / size
    profile = dict(driver="GTiff", width=size, height=size, crs=CRS[area],
                   transform=from_origin(west + index * PATCH_M, north, pixel, pixel))
    depth = -rng.uniform(0.5, 25.0 if area == "agia_napa" else 10.0, (size, size)).astype(np.float32)
    depth[: size // 6] = 0.0  # unsurveyed rows
    if area == "puck_lagoon":
        depth[-1, -1] = 0.4  # emergent land in the surface model
    # Brighter where shallow, as seen through water; 0 (no data) in one corner of the first patch.
    offset = np.reshape([700, 900, 1100], (3, 1, 1))
    image = (offset + 60 * depth[None] + rng.normal(0, 20, (3, size, size))).clip(1, None).astype(np.uint16)
    if index == 0:
        image[:, -3:, :3] = 0
    classes = rng.integers(-1, len(COLOURS[area]), (size, size))
    palette = np.array([*COLOURS[area], UNDEFINED], dtype=np.uint8)  # index -1: undefined
    files = {
        "img": (image, "uint16"),
        "depth": (depth[None], "float32"),
        "gts": (palette[classes].transpose(2, 0, 1), "uint8"),
    }
    for kind, (data, dtype) in files.items():
        if kind != "img" and not annotated:
            continue
        folder = area_root / kind / modality
        folder.mkdir(parents=True, exist_ok=True)
        with rasterio.open(folder / f"{kind}_{patch_id}.tif", "w", count=len(data), dtype=dtype, **profile) as dst:
            dst.write(data)
    return image

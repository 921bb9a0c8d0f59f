"""MagicBathyNet's on-disk conventions (Agrafiotis et al., IGARSS 2024), free of torch and numpy.

Shared by the dataset class and the simulator that writes data in the same layout.
"""
from __future__ import annotations

import zlib
from pathlib import Path

AREAS = ("agia_napa", "puck_lagoon")
MODALITIES = ("s2", "spot6", "aerial")
# Class index -> (name, colour in the gts files), in the order of the dataset's README.
AREA_CLASSES = {
    "agia_napa": (
        ("seagrass", (0, 128, 0)),
        ("rock", (0, 0, 255)),
        ("macroalgae", (255, 0, 0)),
        ("sand", (255, 128, 0)),
    ),
    "puck_lagoon": (("sand", (255, 128, 0)), ("eelgrass", (0, 128, 0))),
}
UNDEFINED_COLOUR = (0, 0, 0)
# The paper divides depth by a per-site constant so that the network regresses values near [0, 1].
DEPTH_SCALE_M = {"agia_napa": 30.443, "puck_lagoon": 11.0}
# Bands as stored in the img files (red, green, blue) and the ground sampling distance.
MODALITY_BANDS = {
    "s2": ("B04", "B03", "B02"),
    "spot6": ("red", "green", "blue"),
    "aerial": ("red", "green", "blue"),
}
MODALITY_GSD_M = {"s2": 10.0, "spot6": 6.0, "aerial": None}
SPLIT_TASK_NAMES = {"bathymetry": "bathymetry", "seabed": "pixel_class"}
SPLITS = ("train", "test")


def split_file(area_root: Path, modality: str, task: str) -> Path:
    """``<area>/<modality>_split_{bathymetry,pixel_class}.txt``."""
    return Path(area_root) / f"{modality}_split_{SPLIT_TASK_NAMES[task]}.txt"


def format_split_file(splits: dict[str, list]) -> str:
    """One line per split: ``train: 0, 3, 4``."""
    return "".join(f"{name}: {', '.join(map(str, ids))}\n" for name, ids in splits.items())


def read_split_file(path: Path) -> dict[str, set[str]]:
    """Parse ``<split>: id, id, ...`` lines (commas or spaces between ids)."""
    splits: dict[str, set[str]] = {}
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        name, separator, ids = line.partition(":")
        if not separator:
            raise ValueError(f"{path}: expected '<split>: id, id, ...', got {line!r}")
        splits[name.strip()] = set(ids.replace(",", " ").split())
    return splits


def default_split(patch_id: str, test_percent: int = 20) -> str:
    """Deterministic split for areas without a split file: a CRC32 hash of the id."""
    return "test" if zlib.crc32(patch_id.encode()) % 100 < test_percent else "train"

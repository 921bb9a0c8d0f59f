"""MagicBathyNet dataset (Agrafiotis et al., IGARSS 2024) for bathymetry and seabed classes."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import rasterio
import torch
from torchgeo.datasets import NonGeoDataset

from training.datasets.magicbathynet_format import (
    AREA_CLASSES,
    AREAS,
    MODALITIES,
    MODALITY_BANDS,
    SPLITS,
    UNDEFINED_COLOUR,
    norm_param_file,
    read_norm_param,
    read_split_file,
    split_file,
)

IGNORE_INDEX = 255
TASKS = ("bathymetry", "seabed")


class MagicBathyNet(NonGeoDataset):
    """MagicBathyNet: co-registered Sentinel-2, SPOT-6 and aerial patches of shallow sea.

    Agrafiotis, Janowski, Skarlatos, Demir, "MagicBathyNet: A Multimodal Remote Sensing Dataset
    for Bathymetry Prediction and Pixel-based Classification in Shallow Waters", IGARSS 2024.
    Areas: Agia Napa (Cyprus) and Puck Lagoon (Poland).

    On disk (the dataset's README; real patches cover 180 m: S2 18x18 px, SPOT-6 30x30 px)::

        <root>/<area>/img/<modality>/img_<id>.tif       image (red, green, blue), 0 = no data
        <root>/<area>/depth/<modality>/depth_<id>.tif   float metres, negative down, 0 = unknown
        <root>/<area>/gts/<modality>/gts_<id>.tif       seabed classes as RGB colours
        <root>/<area>/<modality>_split_bathymetry.txt   annotated ids and their train/test split
        <root>/<area>/<modality>_split_pixel_class.txt  (``read_split_file`` says which forms)
        <root>/<area>/norm_param_<modality>_<an|pl>.txt per-band minima, then maxima (or .npy)

    Only the ids of the task's split file are read: the img folders also hold unannotated patches.
    Colours -> class index (``AREA_CLASSES``): Agia Napa (0, 128, 0) seagrass 0, (0, 0, 255)
    rock 1, (255, 0, 0) macroalgae 2, (255, 128, 0) sand 3; Puck Lagoon (255, 128, 0) sand 0,
    (0, 128, 0) eelgrass 1; black (0, 0, 0) is "undefined" and becomes ``IGNORE_INDEX``, as does any
    pixel whose image is 0 in every band.

    Samples are whole patches at their native size (no crop or zoom; the models pad inside):
    ``image`` float32 ``[C, H, W]`` (file values; ``norm_params[area]`` holds the area's
    (minimum, maximum) for min/max normalisation as the reference) and, for ``task="bathymetry"``,
    ``depth`` float32 ``[H, W]`` metres positive down (file value negated; positive file values,
    land in Puck Lagoon's surface model, become negative depths as in the reference), NaN where the
    file says 0 or the image has no data; for ``task="seabed"``, ``mask`` int64 ``[H, W]``.
    """

    def __init__(
        self,
        root: str | Path,
        areas: Sequence[str] = ("agia_napa",),
        modality: str = "s2",
        task: str = "bathymetry",
        split: str = "train",
        transforms: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
    ) -> None:
        for name, value, allowed in (
            ("modality", modality, MODALITIES), ("task", task, TASKS), ("split", split, SPLITS)
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        unknown = set(areas) - set(AREAS)
        if unknown:
            raise ValueError(f"unknown area(s) {sorted(unknown)}; MagicBathyNet has {AREAS}")
        if task == "seabed" and len({AREA_CLASSES[area] for area in areas}) > 1:
            raise ValueError(f"areas {list(areas)} have different seabed classes; train one area at a time")
        self.root = Path(root)
        self.modality = modality
        self.task = task
        self.transforms = transforms
        self.classes = tuple(name for name, _ in AREA_CLASSES[areas[0]])
        self.colours = tuple(colour for _, colour in AREA_CLASSES[areas[0]])
        target_kind = "depth" if task == "bathymetry" else "gts"
        bands = len(MODALITY_BANDS[modality])
        self.norm_params = {}  # area -> (per-band minimum, maximum)
        self.patches = []  # (image path, target path)
        for area in areas:
            area_root = self.root / area
            if not (area_root / "img" / modality).is_dir():
                raise FileNotFoundError(f"{area_root / 'img' / modality} is missing: is {self.root} a MagicBathyNet folder?")
            self.norm_params[area] = read_norm_param(norm_param_file(area_root, modality, area), bands)
            splits_file = split_file(area_root, modality, task)
            if not splits_file.is_file():
                raise FileNotFoundError(
                    f"{splits_file} does not exist: MagicBathyNet lists each task's annotated patches and their "
                    f"train/test split in {splits_file.name}; copy it from the dataset"
                )
            image_folder, target_folder = area_root / "img" / modality, area_root / target_kind / modality
            pairs = [
                (image_folder / f"img_{i}.tif", target_folder / f"{target_kind}_{i}.tif")
                for i in sorted(read_split_file(splits_file)[split], key=int)
            ]
            missing = [str(path) for pair in pairs for path in pair if not path.is_file()]
            if missing:
                raise FileNotFoundError(f"{splits_file.name} lists patches whose files are missing: {missing[:3]}")
            self.patches += pairs
        if not self.patches:
            raise FileNotFoundError(f"no {split} patches for {task} under {self.root} (areas {list(areas)})")

    def __len__(self) -> int:
        return len(self.patches)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image_path, target_path = self.patches[index]
        with rasterio.open(image_path) as src:
            image = src.read().astype(np.float32)
        with rasterio.open(target_path) as src:
            target = src.read()
        image_valid = (image != 0).any(axis=0)
        if self.task == "bathymetry":
            depth = -target[0].astype(np.float32)
            known = image_valid & (depth != 0) & np.isfinite(depth)
            sample = {"depth": torch.from_numpy(np.where(known, depth, np.nan).astype(np.float32))}
        else:
            mask = self._classes_from_colours(target, target_path)
            sample = {"mask": torch.from_numpy(np.where(image_valid, mask, IGNORE_INDEX).astype(np.int64))}
        sample["image"] = torch.from_numpy(image)
        return self.transforms(sample) if self.transforms is not None else sample

    def _classes_from_colours(self, rgb: np.ndarray, path: Path) -> np.ndarray:
        mask = np.full(rgb.shape[1:], IGNORE_INDEX, dtype=np.int64)
        matched = np.zeros(rgb.shape[1:], dtype=bool)
        for index, colour in [(IGNORE_INDEX, UNDEFINED_COLOUR), *enumerate(self.colours)]:
            here = (rgb[:3] == np.reshape(colour, (3, 1, 1))).all(axis=0)
            mask[here] = index
            matched |= here
        if not matched.all():
            strange = tuple(int(v) for v in rgb[:3, ~matched][:, 0])
            raise ValueError(f"{path}: colour {strange} is not a seabed class of this area ({self.classes})")
        return mask


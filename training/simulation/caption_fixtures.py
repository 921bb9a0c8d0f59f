"""Write the text-search fixtures from scenes (``training.simulation.caption_scenes``): a GAIA-format
caption dataset of RGB tiles, the paired multispectral tiles, optionally paired SIMULATED
Sentinel-1-like VV / VH tiles made from each tile's land cover
(``training.simulation.sar_backscatter``), and LEVIR-CC-style change pairs.

Tiles are cut on a 4 x 4 block grid of each scene; whole blocks go to one split (test: the
diagonal blocks, validation: the two off-diagonal corners, train: the other ten), so evaluation
tiles never overlap training ground. Training tiles overlap by ``train_stride``, evaluation tiles
by half a tile; random subsets cap each scene's share (a large scene would otherwise dominate).
Captions come from the measured land cover of each tile (``land_cover_captions.image_captions``).

Change pairs: "after" is "before" with part of the tile (a smooth random blob, 20-50 % of it)
replaced by the same pixels of another tile of the same scene and split that is mostly one other
land cover (real texture of that class), or, for a third of the pairs, left unchanged but for a
small gain change. Their sentences come from the land cover measured on both dates
(``land_cover_captions.change_captions``), so an accidental non-change reads as "no change".
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.warp import transform as warp_transform
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from training.simulation import sar_backscatter
from training.simulation.shallow_water import smooth_field
from training.simulation.land_cover_captions import NO_CHANGE, change_captions, image_captions
from training.datasets.gaia_format import write_gaia_split
from training.simulation.land_cover import (
    LAND_COVER,
    MULTISPECTRAL_BANDS,
    RGB_FROM_MULTISPECTRAL,
    classify,
    fractions,
)
from training.datasets.levir_cc_format import write_levir_cc
from training.simulation.caption_scenes import Scene

S2_NAMES = ("B02", "B03", "B04", "B08", "B11", "B12")  # the Sentinel-2 bands matching MULTISPECTRAL_BANDS
BLOCKS = 4
DONOR_SHARE = 0.7  # a donor tile is at least this much of the class it brings


@dataclass
class Tile:
    id: str
    split: str
    scene: Scene
    row: int
    col: int
    multispectral: np.ndarray
    classes: np.ndarray

    @property
    def rgb(self) -> np.ndarray:
        return self.multispectral[list(RGB_FROM_MULTISPECTRAL)]


def block_split(block_row: int, block_col: int) -> str:
    if block_row == block_col:
        return "test"
    if {block_row, block_col} == {0, BLOCKS - 1}:
        return "val"
    return "train"


def cut_tiles(scene: Scene, size: int, train_stride: int, max_train: int | None, max_eval: int | None,
              rng: np.random.Generator) -> list[Tile]:
    """Tiles of one scene, each inside one block; at most ``max_train`` training and ``max_eval``
    validation and test tiles each (random subsets)."""
    height, width = scene.multispectral.shape[1:]
    block_h, block_w = height // BLOCKS, width // BLOCKS
    tiles: dict[str, list[Tile]] = {"train": [], "val": [], "test": []}
    for block_row in range(BLOCKS):
        for block_col in range(BLOCKS):
            split = block_split(block_row, block_col)
            stride = train_stride if split == "train" else size // 2
            for row in range(block_row * block_h, (block_row + 1) * block_h - size + 1, stride):
                for col in range(block_col * block_w, (block_col + 1) * block_w - size + 1, stride):
                    data = scene.multispectral[:, row:row + size, col:col + size]
                    tiles[split].append(Tile("", split, scene, row, col, data, classify(data, scene.context)))
    for split, most in (("train", max_train), ("val", max_eval), ("test", max_eval)):
        if most is not None and len(tiles[split]) > most:
            keep = np.sort(rng.choice(len(tiles[split]), most, replace=False))
            tiles[split] = [tiles[split][i] for i in keep]
    prefix = scene.name.replace(" ", "-")
    for split, items in tiles.items():
        for index, tile in enumerate(items):
            tile.id = f"{prefix}-{split}-{index:05d}"
    return [tile for items in tiles.values() for tile in items]


def write_caption_fixtures(
    out: Path, scenes: list[Scene], size: int = 32, train_stride: int = 16, max_train_per_scene: int | None = None,
    max_eval_per_scene: int | None = None, change_pairs_per_scene: int = 0, seed: int = 0, sar: bool = False,
) -> dict[str, int]:
    """Write ``out/gaia``, ``out/gaia/multispectral``, with ``sar`` ``out/gaia/sar`` (float32 VV, VH
    in dB; the speckle of tile number ``i`` is seeded with ``(seed, i)``, so the other files do not
    depend on ``sar``) and with change pairs ``out/levir_cc``; returns the number of tiles per split."""
    rng = np.random.default_rng(seed)
    out = Path(out)
    tiles = [tile for scene in scenes for tile in cut_tiles(scene, size, train_stride, max_train_per_scene, max_eval_per_scene, rng)]
    counts = {}
    for split in ("train", "val", "test"):
        chosen = [tile for tile in tiles if tile.split == split]
        counts[split] = len(chosen)
        annotations = [_annotation(tile, sar) for tile in chosen]
        write_gaia_split(out / "gaia", split, annotations, [tile.rgb for tile in chosen])
        for tile in chosen:
            _write_tile(out / "gaia" / "multispectral" / f"{tile.id}.tif", tile, tile.multispectral, S2_NAMES,
                        [{"role": role} for role in MULTISPECTRAL_BANDS])
    if sar:
        for index, tile in enumerate(tiles):
            backscatter = sar_backscatter.simulate_backscatter(tile.classes, LAND_COVER, (seed, index))
            _write_tile(out / "gaia" / "sar" / f"{tile.id}.tif", tile, backscatter, sar_backscatter.POLARISATIONS,
                        [{"units": "dB"}] * len(sar_backscatter.POLARISATIONS), units=sar_backscatter.UNITS)
    if change_pairs_per_scene:
        pairs = [pair for scene in scenes for pair in _change_pairs(
            [t for t in tiles if t.scene is scene], change_pairs_per_scene, rng
        )]
        write_levir_cc(out / "levir_cc", pairs)
        counts["change_pairs"] = len(pairs)
    (out / "fixture.json").write_text(json.dumps({
        "scenes": [{"name": s.name, "location": s.location, "sensor": s.sensor, "gsd_m": s.gsd_m} for s in scenes],
        "tile_size": size, "train_stride": train_stride, "max_train_per_scene": max_train_per_scene,
        "max_eval_per_scene": max_eval_per_scene,
        "seed": seed, "counts": counts, "sar": sar_backscatter.UNITS if sar else None,
    }, indent=1))
    return counts


def _annotation(tile: Tile, sar: bool) -> dict:
    scene = tile.scene
    centre_x, centre_y = scene.transform * (tile.col + tile.multispectral.shape[2] / 2, tile.row + tile.multispectral.shape[1] / 2)
    (lon,), (lat,) = warp_transform(scene.crs, "EPSG:4326", [centre_x], [centre_y])
    share = fractions(tile.classes)
    return {
        "id": tile.id,
        "image_alt": f"{scene.sensor} true-colour tile, {scene.location}",
        "captions": image_captions(tile.classes, scene.context),
        "credits": "USGS Landsat 7 (public domain), via the file named in training/simulation/caption_scenes.py"
        if scene.sensor.startswith("Landsat") else "simulated",
        "location": scene.location, "lat": round(lat, 5), "lon": round(lon, 5),
        "tag": ", ".join(name for name in LAND_COVER if share[name] >= 0.1),
        "resolution": f"{scene.gsd_m:g} m", "satellite": scene.sensor.split(" ")[0], "sensor": scene.sensor,
        "modalities": ["RGB", "multispectral"] + (["SAR VV/VH (simulated)"] if sar else []),
    }


def _write_tile(path: Path, tile: Tile, data: np.ndarray, names: tuple[str, ...], band_tags: list[dict],
                **tags: str) -> None:
    """``data`` ``[C, H, W]`` on the footprint of ``tile``, bands described ``names``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    bands, height, width = data.shape
    with rasterio.open(
        path, "w", driver="GTiff", width=width, height=height, count=bands, dtype=data.dtype.name, crs=tile.scene.crs,
        transform=window_transform(Window(tile.col, tile.row, width, height), tile.scene.transform),
    ) as target:
        target.write(data)
        target.update_tags(**tags)
        for index, (name, band_tags_of) in enumerate(zip(names, band_tags), start=1):
            target.set_band_description(index, name)
            target.update_tags(index, **band_tags_of)


def _change_pairs(tiles: list[Tile], per_scene: int, rng: np.random.Generator) -> list[dict]:
    pairs = []
    for split, share in (("train", 0.6), ("val", 0.1), ("test", 0.3)):
        candidates = [t for t in tiles if t.split == split]
        if not candidates:
            continue
        donors = {
            name: [t for t in candidates if fractions(t.classes)[name] >= DONOR_SHARE] for name in LAND_COVER
        }
        for _ in range(max(1, round(per_scene * share))):
            before = candidates[rng.integers(len(candidates))]
            pairs.append(_change_pair(before, donors, rng) | {"split": split})
    return pairs


def _change_pair(before: Tile, donors: dict[str, list[Tile]], rng: np.random.Generator) -> dict:
    context = before.scene.context
    present = fractions(before.classes)
    newcomers = [name for name, tiles in donors.items() if tiles and present[name] < 0.5]
    if rng.random() < 1 / 3 or not newcomers:
        gain = rng.uniform(0.97, 1.03)
        after = np.clip(before.multispectral * gain, 0, 255).astype(np.uint8)
    else:
        grown = newcomers[rng.integers(len(newcomers))]
        donor = donors[grown][rng.integers(len(donors[grown]))]
        field = smooth_field(rng, before.classes.shape, rng.uniform(3.0, 6.0))
        blob = field > np.quantile(field, 1.0 - rng.uniform(0.2, 0.5))
        after = np.where(blob[None], donor.multispectral, before.multispectral)
    after_classes = classify(after, context)
    captions = change_captions(before.classes, after_classes, context)
    return {
        "before": before.rgb, "after": after[list(RGB_FROM_MULTISPECTRAL)], "captions": captions,
        "changed": captions[0] != NO_CHANGE[0],
    }

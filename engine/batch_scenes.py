"""What a batch run processes: the scenes named by ``--inputs``, and the task request for each.

``inputs`` is one of:

- a glob pattern (``scenes/**/*.tif``; ``**`` descends into folders): each matched raster file is a
  scene, each matched folder is one scene of the raster files in it (one area: files per band, the dated
  files of one tile, a BigEarthNet patch);
- an existing folder: its raster files are the scenes, or for tasks whose scene is a folder of files
  (``classify_scenes``, ``map_crops``) the folders below it that hold rasters;
- a text file (``.txt``): one path (file or folder) per line, relative to the list's folder; ``#`` comments;
- a STAC ItemCollection (``.json``, or a single Item / a FeatureCollection of Items): each Item is a scene
  of the local files of the assets that ``asset_bands`` maps to model bands (``blue=B02,nir=B08``; a
  multi-band asset ``visual=B04+B03+B02``), read in that order.

A scene's name is its path relative to the common folder of all scenes, without the suffix (a STAC Item:
its id); outputs mirror it under the output folder (``out/<name>.tif``), so equal file names in different
folders never collide.

Scene labels, BigEarthNet layout (Clasen et al., "reBEN", 2024; engine/tasks/scene_labels.py): a Sentinel-2
patch folder ``<root>/BigEarthNet-S2/<tile acquisition>/<patch>`` gets its Sentinel-1 partner
``<root>/BigEarthNet-S1/<acquisition>/<s1 name>``, the one whose name ends with the same
``<tile>_<row>_<col>`` (each S2 patch has one S1 patch; metadata.parquet is not needed). Given the root
folder, the scenes are the S2 patch folders.

Crop maps (engine/tasks/crop_map.py): a tile's folder holds its dated Sentinel-2 and Sentinel-1 files; a
file belongs to Sentinel-1 when its name has the token S1 (S1A, S1B, ...), else to Sentinel-2; dates come
from the file names as in a single run (engine/time_series_io.py).
"""
from __future__ import annotations

import glob
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import EngineError

RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img")
FOLDER_SCENE_TASKS = ("classify_scenes", "map_crops")  # a scene is a folder of files by default
VECTOR_OUTPUT_TASKS = ("classify_scenes",)  # GeoPackage output
EXTRA_OUTPUTS = ("probabilities", "quality_layer", "uncertainty")  # written as out/<name>.<kind>.tif
S1_TOKEN = re.compile(r"(?<![A-Za-z0-9])S1[A-D]?(?![0-9])", re.IGNORECASE)
BEN_S2, BEN_S1 = "BigEarthNet-S2", "BigEarthNet-S1"


@dataclass(frozen=True)
class Scene:
    name: str  # unique within the run; outputs are named after it
    files: tuple[str, ...]  # input rasters
    bands: dict[str, int] | None = field(default=None, hash=False)  # model band -> 1-based band of the files

    @property
    def key(self) -> str:
        """The manifest's name for the scene's input: its file, or its files joined."""
        return self.files[0] if len(self.files) == 1 else " + ".join(self.files)


def is_raster(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in RASTER_SUFFIXES


def rasters_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if is_raster(p))


def find_scenes(inputs: str, task: str, asset_bands: str | None = None) -> list[Scene]:
    """The scenes ``inputs`` names for ``task`` (see the module docstring); a clear error when none."""
    source = Path(inputs)
    if source.suffix.lower() == ".json" and source.is_file():
        return stac_scenes(source, parse_asset_bands(asset_bands))
    if asset_bands:
        raise EngineError("asset_bands applies to STAC ItemCollection inputs (a .json file) only")
    if source.suffix.lower() == ".txt" and source.is_file():
        paths = listed_paths(source)
    elif source.is_dir():
        paths = folder_members(source, task)
    else:
        paths = [Path(p) for p in sorted(glob.glob(inputs, recursive=True))]
        paths = [p for p in paths if is_raster(p) or (p.is_dir() and rasters_in(p))]
    if not paths:
        raise EngineError(f"inputs {inputs!r} names no raster file or folder of rasters; give a glob pattern such as "
                          "'scenes/**/*.tif', a folder, a .txt list of paths or a STAC ItemCollection .json")
    s1_partners = ben_s1_partners(paths) if task == "classify_scenes" else {}
    groups = []
    for path in paths:
        files = [path] if path.is_file() else rasters_in(path)
        if path in s1_partners:
            files += rasters_in(s1_partners[path])
        groups.append((path, files))
    return named_scenes(groups)


def listed_paths(listing: Path) -> list[Path]:
    paths = []
    for number, line in enumerate(listing.read_text().splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        path = listing.parent / line
        if not (is_raster(path) or path.is_dir()):
            raise EngineError(f"{listing} line {number}: {line} is not a raster file or folder (paths are relative "
                              f"to the list's folder {listing.parent})")
        paths.append(path)
    return paths


def folder_members(folder: Path, task: str) -> list[Path]:
    """The scenes of a folder given as inputs: its rasters, or its folders of rasters for folder tasks."""
    if task not in FOLDER_SCENE_TASKS:
        return sorted(p for p in folder.rglob("*") if is_raster(p))
    if task == "classify_scenes" and (folder / BEN_S2).is_dir():
        folder = folder / BEN_S2
    return sorted(p for p in [folder, *folder.rglob("*")] if p.is_dir() and rasters_in(p))


def ben_s1_partners(paths: list[Path]) -> dict[Path, Path]:
    """S2 patch folder -> the S1 patch folder of the same tile, row and column, for patches in a BigEarthNet tree."""
    partners, lookups = {}, {}
    for path in paths:
        if not (path.is_dir() and path.parent.parent.name == BEN_S2):
            continue
        s1_root = path.parent.parent.parent / BEN_S1
        if not s1_root.is_dir():
            continue
        if s1_root not in lookups:
            lookups[s1_root] = {patch_place(p.name): p for p in s1_root.glob("*/*") if p.is_dir()}
        partner = lookups[s1_root].get(patch_place(path.name).lstrip("T"))
        if partner is None:
            raise EngineError(f"{path.name} has no Sentinel-1 patch in {s1_root} (none ends with "
                              f"{patch_place(path.name).lstrip('T')}); remove the patch from the inputs or add its "
                              "S1 folder")
        partners[path] = partner
    return partners


def patch_place(name: str) -> str:
    """'<tile>_<row>_<col>' at the end of a BigEarthNet patch name (S2: T33UUP_26_57, S1: 33UUP_26_57)."""
    return "_".join(name.split("_")[-3:])


def named_scenes(groups: list[tuple[Path, list[Path]]]) -> list[Scene]:
    """Scenes named by their paths relative to the folder all of them share, without suffix."""
    resolved = [path.resolve() for path, _ in groups]
    common = Path(os.path.commonpath([p if p.is_dir() else p.parent for p in resolved]))
    scenes = [Scene(str(path.relative_to(common).with_suffix("")) if path != common else path.name,
                    tuple(str(f) for f in files)) for path, (_, files) in zip(resolved, groups)]
    return unique(scenes)


def unique(scenes: list[Scene]) -> list[Scene]:
    seen = {}
    for scene in scenes:
        if scene.name in seen:
            raise EngineError(f"two scenes would write the same outputs {scene.name!r}: {seen[scene.name]} and "
                              f"{scene.key}; give each scene once")
        seen[scene.name] = scene.key
    return scenes


def parse_asset_bands(text: str | None) -> list[tuple[str, tuple[str, ...]]]:
    """'blue=B02,nir=B08,visual=B04+B03+B02' -> [(asset key, model bands in the asset's band order)]."""
    if not text:
        raise EngineError("a STAC ItemCollection needs asset_bands: which asset holds which model band, e.g. "
                          "'blue=B02,green=B03,red=B04' (CLI: --asset-bands)")
    pairs = []
    for part in text.split(","):
        key, sep, bands = part.partition("=")
        if not (sep and key.strip() and bands.strip()):
            raise EngineError(f"asset_bands item {part.strip()!r} is not ASSET=BAND; write it like "
                              "'blue=B02,green=B03' (a multi-band asset: 'visual=B04+B03+B02')")
        pairs.append((key.strip(), tuple(b.strip() for b in bands.split("+"))))
    return pairs


def stac_scenes(collection: Path, asset_bands: list[tuple[str, tuple[str, ...]]]) -> list[Scene]:
    try:
        data = json.loads(collection.read_text())
    except ValueError as err:
        raise EngineError(f"{collection} is not JSON ({err}); give a STAC ItemCollection") from None
    items = [data] if data.get("type") == "Feature" else data.get("features") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise EngineError(f"{collection} holds no STAC Items (a FeatureCollection with 'features', or one Item)")
    scenes = []
    for item in items:
        item_id, assets = item.get("id"), item.get("assets") or {}
        files, mapping = [], {}
        for key, bands in asset_bands:
            if key not in assets:
                raise EngineError(f"STAC item {item_id}: no asset {key!r} (it has {', '.join(sorted(assets))}); "
                                  "correct asset_bands")
            stated = assets[key].get("eo:bands") or assets[key].get("raster:bands")
            if stated and len(stated) != len(bands):
                raise EngineError(f"STAC item {item_id}: asset {key!r} has {len(stated)} bands, asset_bands gives "
                                  f"{len(bands)} ({'+'.join(bands)}); name every band of it in its order")
            files.append(asset_file(collection, item_id, key, assets[key].get("href", "")))
            for band in bands:
                mapping[band] = len(mapping) + 1
        scenes.append(Scene(str(item_id), tuple(files), mapping))
    return unique(scenes)


def asset_file(collection: Path, item_id: str, key: str, href: str) -> str:
    """The local file of an asset: an absolute path, file:// URL or a path relative to the collection."""
    if href.startswith("file://"):
        href = href[len("file://"):]
    if "://" in href:
        raise EngineError(f"STAC item {item_id}: asset {key!r} is remote ({href}); batch runs read local or "
                          "shared-filesystem files: download the assets first and point the hrefs at them")
    path = collection.parent / href
    if not path.is_file():
        raise EngineError(f"STAC item {item_id}: asset {key!r} file {path} does not exist")
    return str(path)


def output_path(output_dir: Path, scene: Scene, task: str, kind: str = "output") -> str:
    """Where a scene's output of ``kind`` (output, or one of EXTRA_OUTPUTS) goes: mirrors the scene's name."""
    suffix = ".gpkg" if task in VECTOR_OUTPUT_TASKS and kind == "output" else ".tif"
    infix = "" if kind == "output" else f".{kind}"
    return str(output_dir / f"{scene.name}{infix}{suffix}")


def scene_request(task: str, scene: Scene, output_dir: Path, params: dict, extra_outputs: list[str]) -> dict:
    """The request of ``task`` for one scene: its inputs, its outputs in ``output_dir``, the run's parameters."""
    request = dict(params)
    if task == "map_crops":
        s1 = [f for f in scene.files if S1_TOKEN.search(Path(f).name)]
        request["s2"] = [f for f in scene.files if f not in s1]
        if s1:
            request["s1"] = s1
    else:
        request["input"] = scene.files[0] if len(scene.files) == 1 else list(scene.files)
    if scene.bands:
        request["bands"] = scene.bands
    request["output"] = output_path(output_dir, scene, task)
    for kind in extra_outputs:
        request[kind] = output_path(output_dir, scene, task, kind)
    return request

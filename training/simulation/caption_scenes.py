"""Multispectral scenes that the caption fixtures are cut from: real Landsat 7 files fetched from
package registries, or simulated scenes (no network, for tests).

Real scenes (``fetch_caption_imagery.sh`` puts them in one folder; nothing is committed):

- ``great-salt-lake``: ``landsat.tif`` from the ``localtileserver==1.0.0`` wheel
  (``localtileserver/tiler/data/``): Landsat 7 ETM+, 1489 x 1482 px, about 30 m (EPSG:4326
  grid), 8-bit DN, bands B1 B2 B3 B4 B5 B6 B7, the south shore of the Great Salt Lake (Utah):
  lake water and evaporation ponds, salt flats, arid ranges with some vegetated slopes.
- ``olinda``: ``L7_ETMs.tif`` from Debian's ``r-cran-stars`` package
  (``/usr/lib/R/site-library/stars/tif/``): Landsat 7 ETM+, 349 x 352 px, 28.5 m (UTM 25S),
  8-bit DN, bands B1 B2 B3 B4 B5 B7, Olinda / Recife (Brazil): city, forest, Atlantic coast.

Simulated scenes: regions of water, vegetation, built-up land (concrete, asphalt), arid soil and
bright evaporite crust (calcite's spectrum) with the reflectance spectra of
``training.simulation.hyperspectral`` sampled at the Landsat band centres, textured, plus sensor
noise, stored as 8-bit values (reflectance x 400).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

from training.simulation.hyperspectral import endmember_spectrum
from training.simulation.shallow_water import smooth_field
from training.simulation.land_cover import LandUseContext

LANDSAT_BAND_CENTRES_NM = np.array([485.0, 560.0, 660.0, 835.0, 1650.0, 2220.0])  # ETM+ B1 B2 B3 B4 B5 B7
SIMULATED_DN_PER_REFLECTANCE = 400.0


@dataclass(frozen=True)
class Scene:
    name: str
    multispectral: np.ndarray  # uint8 [6, H, W] in land_cover.MULTISPECTRAL_BANDS order
    context: LandUseContext
    transform: rasterio.Affine
    crs: str
    gsd_m: float
    location: str
    sensor: str


@dataclass(frozen=True)
class RealSceneSource:
    file: str
    band_indexes: tuple[int, ...]  # 1-based, blue green red nir swir1 swir2
    context: LandUseContext
    gsd_m: float
    location: str


REAL_SCENES = {
    "great-salt-lake": RealSceneSource(
        "landsat.tif", (1, 2, 3, 4, 5, 7),
        LandUseContext("lake", vegetation_ndvi=0.3, bare_land=("arid land", "salt flat"), bright_land_threshold=70.0),
        30.0, "Great Salt Lake south shore, Utah, USA",
    ),
    "olinda": RealSceneSource(
        "L7_ETMs.tif", (1, 2, 3, 4, 5, 6), LandUseContext("sea", vegetation_ndvi=0.15, bare_land=("built-up",)),
        28.5, "Olinda and Recife, Pernambuco, Brazil",
    ),
}

SIMULATED_LANDSCAPES = {
    "coastal city": (
        LandUseContext("sea", bare_land=("built-up",)),
        {"water": ("clear water",), "vegetation": ("green vegetation",), "built-up": ("concrete", "asphalt")},
    ),
    "desert lake": (
        LandUseContext("lake", bare_land=("arid land", "salt flat"), bright_land_threshold=0.3 * SIMULATED_DN_PER_REFLECTANCE),
        {"water": ("turbid water",), "arid land": ("dry soil",), "salt flat": ("calcite",), "vegetation": ("green vegetation",)},
    ),
}


def read_real_scene(name: str, imagery_dir: Path) -> Scene:
    source = REAL_SCENES[name]
    path = Path(imagery_dir) / source.file
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: run training/simulation/fetch_caption_imagery.sh {imagery_dir}")
    with rasterio.open(path) as raster:
        data = raster.read(list(source.band_indexes))
        return Scene(name, data.astype(np.uint8), source.context, raster.transform, raster.crs.to_string(),
                     source.gsd_m, source.location, "Landsat 7 ETM+ (8-bit DN)")


def simulate_scene(landscape: str, size: int, seed: int) -> Scene:
    """A ``size`` x ``size`` simulated scene of one of ``SIMULATED_LANDSCAPES``."""
    context, endmembers = SIMULATED_LANDSCAPES[landscape]
    rng = np.random.default_rng(seed)
    shape = (size, size)
    fields = np.stack([smooth_field(rng, shape, rng.uniform(4.0, 10.0)) + rng.normal(0.0, 0.6) for _ in endmembers])
    region = np.argmax(fields, axis=0)
    reflectance = np.zeros((len(LANDSAT_BAND_CENTRES_NM), *shape))
    for index, materials in enumerate(endmembers.values()):
        mixture = rng.dirichlet(np.ones(len(materials)), size=shape).transpose(2, 0, 1)
        spectrum = sum(
            endmember_spectrum(m, LANDSAT_BAND_CENTRES_NM)[:, None, None] * w[None] for m, w in zip(materials, mixture)
        )
        texture = np.exp(0.15 * smooth_field(rng, shape, 1.5))
        reflectance += np.where(region == index, spectrum * texture, 0.0)
    reflectance += rng.normal(0.0, 0.004, reflectance.shape)
    values = np.clip(np.rint(reflectance * SIMULATED_DN_PER_REFLECTANCE), 0, 255).astype(np.uint8)
    return Scene(
        f"simulated {landscape} {seed}", values, context, from_origin(500000.0, 4000000.0, 30.0, 30.0), "EPSG:32633",
        30.0, f"simulated {landscape}", "simulated Landsat-like (reflectance x 400)",
    )

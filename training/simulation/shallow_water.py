"""Physically grounded simulation of Sentinel-2-like shallow-water scenes (numpy + rasterio only).

No real bathymetry data can be downloaded here, so the shipped bathymetry and seabed models learn
from scenes simulated with the exponential attenuation model behind the log-ratio methods of
Lyzenga (1978, "Passive remote sensing techniques for mapping water depth and bottom features",
Applied Optics 17(3)) and Stumpf et al. (2003, "Determination of water depth with high-resolution
satellite imagery over variable bottom types", Limnology and Oceanography 48(1)):

    R(band) = R_deep(band) + (A_b(band) - R_deep(band)) * exp(-2 * K(band) * z)

z is the depth, K the diffuse attenuation of the water, A_b the reflectance of the bottom type seen
through a vanishing water column and R_deep the reflectance of optically deep water. The seabed
follows Dean's equilibrium profile h = A * x^(2/3) (Dean 1991, J. Coastal Research 7(1)) plus
smooth reefs and bars; bottom types are smooth random patches whose plausibility depends on depth.
Water clarity and illumination vary smoothly; the sensor adds noise and quantises to uint16.

For the quality layers (engine/quality.py) a scene also has a NIR band (B08, which pure water
absorbs within decimetres: K about 3 per m, after Pope & Fry's absorption of about 2.9 per m at
840 nm, Applied Optics 36(33), 1997), optional opaque clouds and sun-glint patches, and a truth of
what each pixel is: the reasons of engine/quality.py, where optically deep means that the bottom
adds less than the sensor noise to every visible band. None of this changes the visible bands of
a scene without clouds or glint, so the shipped models' training data stays as it was.

Arrays and files (bands always in MagicBathyNet's red, green, blue order: B04, B03, B02):

- image: uint16 ``[3, H, W]``, surface reflectance x 10000 (0 would be nodata; never produced).
- depth: float32 metres, positive down, NaN where unknown (land, beyond the survey depth, survey
  gaps). The MagicBathyNet layout stores it as Agrafiotis et al. (IGARSS 2024) do: negative down,
  0 where unknown.
- classes: uint8, 0..n-1 = ``site.classes`` in MagicBathyNet's order (the seabed model's output
  channels), 255 = undefined (land, beyond the survey depth), as the engine writes class maps.
  The MagicBathyNet layout stores the class map as RGB colours (``Site.class_colours``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from engine.quality import CLOUD, DEEP, GLINT, LAND, VALID
from training.datasets.magicbathynet_format import (
    AREA_CLASSES,
    MODALITY_BANDS,
    SPLIT_TASK_NAMES,
    UNDEFINED_COLOUR,
    format_split_file,
    norm_param_name,
    split_file,
    write_norm_param,
)

BANDS = MODALITY_BANDS["s2"]
BAND_DESCRIPTIONS = ("red (665 nm)", "green (560 nm)", "blue (490 nm)")
NIR_BAND, NIR_DESCRIPTION = "B08", "NIR (842 nm)"
NIR_ATTENUATION_PER_M = 3.0
NIR_DEEP_WATER, NIR_LAND = 0.002, 0.30  # reflectance
NIR_NOISE = 0.0010
CLOUD_REFLECTANCE = 0.5  # opaque cloud tops, spectrally flat
GLINT_REFLECTANCE = 0.09  # added to every band where the sun's reflection reaches the sensor
REFLECTANCE_SCALE = 10000.0
GSD_M = 10.0
UNDEFINED = 255
SENSOR_NOISE = (0.0010, 0.0010, 0.0012)  # reflectance std per band, Sentinel-2's order of magnitude
SIMULATION_RECORD = "simulation.json"  # written beside simulated areas: how the data was made


@dataclass(frozen=True)
class SeabedClass:
    name: str
    bottom_reflectance: tuple[float, float, float]  # A_b for B04, B03, B02
    depth_range_m: tuple[float, float]  # where this bottom type is plausible
    abundance: float  # prior weight against the other classes


@dataclass(frozen=True)
class Site:
    name: str
    crs: str
    upper_left: tuple[float, float]  # map coordinates of the first scene's corner
    attenuation_per_m: tuple[float, float, float]  # K for B04, B03, B02
    deep_water_reflectance: tuple[float, float, float]
    land_reflectance: tuple[float, float, float]
    survey_depth_m: float  # deepest depth with ground truth
    classes: tuple[SeabedClass, ...]  # in MagicBathyNet's class order

    def __post_init__(self) -> None:
        expected = tuple(name for name, _ in AREA_CLASSES[self.name])
        if tuple(c.name for c in self.classes) != expected:
            raise ValueError(f"site {self.name!r} must list its classes as MagicBathyNet does: {expected}")

    @property
    def class_colours(self) -> tuple[tuple[int, int, int], ...]:
        """Each class's colour in MagicBathyNet's gts files."""
        colours = dict(AREA_CLASSES[self.name])
        return tuple(colours[c.name] for c in self.classes)


# Clear oligotrophic Eastern Mediterranean (Jerlov type I-II): blue penetrates deepest, red is
# absorbed by water itself within a few metres. Classes in MagicBathyNet's order.
AGIA_NAPA = Site(
    name="agia_napa",
    crs="EPSG:32636",
    upper_left=(588000.0, 3873000.0),
    attenuation_per_m=(0.45, 0.075, 0.04),
    deep_water_reflectance=(0.004, 0.018, 0.042),
    land_reflectance=(0.22, 0.18, 0.13),
    survey_depth_m=25.0,
    classes=(
        SeabedClass("seagrass", (0.020, 0.055, 0.035), (3.0, 40.0), 1.0),
        SeabedClass("rock", (0.080, 0.090, 0.075), (0.0, 15.0), 1.6),
        SeabedClass("macroalgae", (0.070, 0.065, 0.035), (0.0, 12.0), 1.6),
        SeabedClass("sand", (0.220, 0.230, 0.190), (0.0, 40.0), 1.0),
    ),
)
# Brackish, CDOM-rich southern Baltic: green penetrates deepest, blue is absorbed by CDOM.
PUCK_LAGOON = Site(
    name="puck_lagoon",
    crs="EPSG:25834",
    upper_left=(347000.0, 6070000.0),
    attenuation_per_m=(0.55, 0.22, 0.40),
    deep_water_reflectance=(0.010, 0.028, 0.020),
    land_reflectance=(0.20, 0.17, 0.12),
    survey_depth_m=11.0,
    classes=(
        SeabedClass("sand", (0.170, 0.180, 0.130), (0.0, 20.0), 1.0),
        SeabedClass("eelgrass", (0.030, 0.060, 0.030), (0.5, 6.0), 1.0),
    ),
)
SITES = {site.name: site for site in (AGIA_NAPA, PUCK_LAGOON)}


@dataclass(frozen=True)
class SimulatedScene:
    image: np.ndarray  # uint16 [3, H, W]
    depth: np.ndarray  # float32 [H, W], metres positive down, NaN where unknown
    classes: np.ndarray  # uint8 [H, W], class index, 255 = undefined
    transform: rasterio.Affine
    site: Site
    nir: np.ndarray  # uint16 [H, W], B08 reflectance x 10000
    surface: np.ndarray  # uint8 [H, W], what each pixel is: engine.quality's VALID, LAND, CLOUD, GLINT, DEEP


def water_leaving_reflectance(
    depth_m: np.ndarray, bottom_reflectance: np.ndarray, site: Site, clarity: np.ndarray | float = 1.0
) -> np.ndarray:
    """Lyzenga's two-way attenuation model per band; returns ``[3, ...]`` reflectance.

    ``bottom_reflectance`` is ``[3, ...]`` (A_b per band), ``clarity`` scales the attenuation.
    """
    attenuation = np.reshape(site.attenuation_per_m, (3,) + (1,) * np.ndim(depth_m)) * clarity
    deep = np.reshape(site.deep_water_reflectance, (3,) + (1,) * np.ndim(depth_m))
    return deep + (bottom_reflectance - deep) * np.exp(-2.0 * attenuation * depth_m)


def deep_ratio_tolerance(site: Site) -> float:
    """How far ln(green / blue) may lie from deep water's where the water is optically deep, for the
    quality layer's test (engine/quality.py, reason 4): over the site's bottom types, the largest
    deviation where a bottom's signal has just fallen below the sensor noise in every band (the
    truth's definition). Over clear water with seagrass both bands still carry signal there, of
    opposite signs (0.079 at Agia Napa); over CDOM-rich water blue vanishes first and only green's
    noise-level signal is left (0.036 at Puck Lagoon)."""
    depths = np.arange(0.0, 200.0, 0.01)
    deep = np.asarray(site.deep_water_reflectance)[:, None]
    noise = np.asarray(SENSOR_NOISE)[:, None]
    largest = 0.0
    for seabed_class in site.classes:
        signal = (np.asarray(seabed_class.bottom_reflectance)[:, None] - deep) * np.exp(
            -2.0 * np.asarray(site.attenuation_per_m)[:, None] * depths)
        first = int(np.argmax(np.all(np.abs(signal) < noise, axis=0)))
        red, green, blue = deep[:, 0] + signal[:, first]
        largest = max(largest, abs(np.log(green / blue) - np.log(deep[1, 0] / deep[2, 0])))
    return round(float(largest), 4)


def simulate_scene(
    height: int,
    width: int,
    seed: int,
    site: str | Site = "agia_napa",
    upper_left: tuple[float, float] | None = None,
    clouds: float = 0.0,
    glint: float = 0.0,
    noise_scale: float = 1.0,
) -> SimulatedScene:
    """Simulate one georeferenced scene: image, ground-truth depth and seabed classes, NIR and the
    surface truth; ``clouds`` and ``glint`` are the shares of the scene and of its water covered.
    ``noise_scale`` scales the sensor noise added to the visible bands (0: only the reflectance x 10000
    rounded to integers); the same scene otherwise, and the same truth, whose optically deep water is
    defined by ``SENSOR_NOISE`` whatever the scale."""
    site = SITES[site] if isinstance(site, str) else site
    rng = np.random.default_rng(seed)
    shape = (height, width)
    true_depth = _seabed_depth(rng, shape, site)
    land = true_depth <= 0.0
    seabed = _seabed_classes(rng, true_depth, site)  # defined everywhere under water

    bottom = np.stack([np.asarray(c.bottom_reflectance) for c in site.classes], axis=1)[:, seabed]
    clarity = np.exp(0.12 * smooth_field(rng, shape, 150.0))
    reflectance = water_leaving_reflectance(np.maximum(true_depth, 0.0), bottom, site, clarity)
    land_texture = 1.0 + 0.25 * smooth_field(rng, shape, 8.0)
    land_reflectance = np.reshape(site.land_reflectance, (3, 1, 1)) * land_texture
    reflectance = np.where(land, land_reflectance, reflectance)
    reflectance *= 1.0 + 0.03 * smooth_field(rng, shape, 200.0)  # illumination, thin haze
    reflectance += rng.standard_normal((3, *shape)) * np.reshape(SENSOR_NOISE, (3, 1, 1)) * noise_scale
    quality_rng = np.random.default_rng([seed, 1])  # draws of their own: the visible bands stay as they were
    water_depth = np.maximum(true_depth, 0.0)
    bottom_signal = np.abs(bottom - np.reshape(site.deep_water_reflectance, (3, 1, 1))) * np.exp(
        -2.0 * np.reshape(site.attenuation_per_m, (3, 1, 1)) * clarity * water_depth)
    surface = np.where(land, LAND, VALID).astype(np.uint8)
    surface[~land & np.all(bottom_signal < np.reshape(SENSOR_NOISE, (3, 1, 1)), axis=0)] = DEEP
    nir = NIR_DEEP_WATER + (1.2 * bottom[0] - NIR_DEEP_WATER) * np.exp(-2.0 * NIR_ATTENUATION_PER_M * water_depth)
    nir = np.where(land, NIR_LAND * land_texture, nir) + quality_rng.standard_normal(shape) * NIR_NOISE
    if glint and (~land).any():
        field = smooth_field(quality_rng, shape, 20.0)
        glinted = ~land & (field > np.quantile(field[~land], 1.0 - glint))
        reflectance[:, glinted] += GLINT_REFLECTANCE
        nir[glinted] += GLINT_REFLECTANCE
        surface[glinted] = GLINT
    if clouds:
        field = smooth_field(quality_rng, shape, 30.0)
        cloudy = field > np.quantile(field, 1.0 - clouds)
        reflectance[:, cloudy] = CLOUD_REFLECTANCE
        nir[cloudy] = CLOUD_REFLECTANCE
        surface[cloudy] = CLOUD
    image = np.clip(np.rint(reflectance * REFLECTANCE_SCALE), 1, np.iinfo(np.uint16).max).astype(np.uint16)
    nir = np.clip(np.rint(nir * REFLECTANCE_SCALE), 1, np.iinfo(np.uint16).max).astype(np.uint16)

    surveyed = ~land & (true_depth <= site.survey_depth_m)
    survey_gap = smooth_field(rng, shape, 12.0) > 2.0  # a few percent: lidar dropouts
    depth = np.where(surveyed & ~survey_gap, true_depth, np.nan).astype(np.float32)
    classes = np.where(surveyed, seabed, UNDEFINED).astype(np.uint8)
    west, north = site.upper_left if upper_left is None else upper_left
    return SimulatedScene(image, depth, classes, from_origin(west, north, GSD_M, GSD_M), site, nir, surface)


def write_scene_geotiffs(scene: SimulatedScene, image_path, depth_path, classes_path) -> None:
    """Write a scene as three tiled, compressed GeoTIFFs (image, depth positive down, classes)."""
    common = dict(
        driver="GTiff", height=scene.image.shape[1], width=scene.image.shape[2], crs=scene.site.crs,
        transform=scene.transform, tiled=True, blockxsize=256, blockysize=256, compress="deflate",
    )
    with rasterio.open(image_path, "w", count=3, dtype="uint16", nodata=0, **common) as dst:
        dst.write(scene.image)
        _describe_image_bands(dst)
    with rasterio.open(depth_path, "w", count=1, dtype="float32", nodata=float("nan"), **common) as dst:
        dst.write(scene.depth, 1)
        dst.set_band_description(1, "depth below the water surface (m, positive down)")
        dst.update_tags(1, units="m")
    with rasterio.open(classes_path, "w", count=1, dtype="uint8", nodata=UNDEFINED, **common) as dst:
        dst.write(scene.classes, 1)
        dst.set_band_description(1, "seabed class")
        dst.write_colormap(1, {code: (*colour, 255) for code, colour in enumerate(scene.site.class_colours)}
                           | {UNDEFINED: (*UNDEFINED_COLOUR, 0)})
        dst.update_tags(1, classes=json.dumps(
            {str(code): c.name for code, c in enumerate(scene.site.classes)} | {str(UNDEFINED): "undefined"}
        ))


def write_magicbathynet_layout(
    root,
    area: str,
    n_patches: int,
    patch_size: int,
    seed: int,
    modality: str = "s2",
    test_fraction: float = 0.2,
) -> list[int]:
    """Write simulated patches in MagicBathyNet's on-disk layout; returns the patch ids.

    ``<root>/<area>/{img,depth,gts}/<modality>/{img,depth,gts}_<id>.tif`` as in Agrafiotis et al.
    (2024): 3-band uint16 image, float32 depth (negative down, 0 where unknown), RGB class colours;
    plus the split files ``<modality>_split_{bathymetry,pixel_class}.txt`` and the normalisation
    file ``norm_param_<modality>_<an|pl>.txt`` (per-band minimum and maximum over the patches) in
    the forms ``magicbathynet_format`` reads for the real data, and ``simulation.json`` saying how
    the data was made.
    Patches are drawn at random from a grid over whole scenes (one per derived seed); only patches
    with ground-truth depth on at least 30% of their pixels qualify, as real patches cover
    surveyed water.
    """
    site = SITES[area]
    area_root = Path(root) / area
    folders = {kind: area_root / kind / modality for kind in ("img", "depth", "gts")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    scene_size = max(8 * patch_size, 384)
    written: list[int] = []
    low, high = np.full(3, np.inf), np.full(3, -np.inf)
    scene_index = 0
    while len(written) < n_patches:
        west = site.upper_left[0] + scene_index * (scene_size + 50) * GSD_M
        scene_seed = int(np.random.SeedSequence([seed, scene_index]).generate_state(1)[0])
        scene = simulate_scene(scene_size, scene_size, scene_seed, site, (west, site.upper_left[1]))
        windows = [
            Window(col, row, patch_size, patch_size)
            for row in range(0, scene_size, patch_size)
            for col in range(0, scene_size, patch_size)
            if np.isfinite(scene.depth[row : row + patch_size, col : col + patch_size]).mean() >= 0.3
        ]
        for index in np.random.default_rng(scene_seed).permutation(len(windows))[: n_patches - len(written)]:
            image = _write_patch(len(written), scene, windows[index], folders).reshape(3, -1)
            low, high = np.minimum(low, image.min(axis=1)), np.maximum(high, image.max(axis=1))
            written.append(len(written))
        scene_index += 1

    order = np.random.default_rng(seed).permutation(written)
    n_test = max(1, round(test_fraction * len(written)))
    train, test = sorted(order[n_test:].tolist()), sorted(order[:n_test].tolist())
    for task in SPLIT_TASK_NAMES:
        split_file(area_root, modality, task).write_text(format_split_file(train, test))
    write_norm_param(area_root / norm_param_name(modality, area), low, high)
    (area_root / SIMULATION_RECORD).write_text(json.dumps({
        "simulator": "training/simulation/shallow_water.py",
        "description": "SIMULATED Sentinel-2-like shallow-water patches (Lyzenga/Stumpf attenuation "
        "model), not real MagicBathyNet data",
        "area": area, "modality": modality, "patches": len(written), "patch_size": patch_size,
        "seed": seed, "scenes": scene_index,
    }, indent=2) + "\n")
    return written


def simulation_records(root, areas) -> dict[str, dict]:
    """The ``simulation.json`` of each simulated area under ``root`` (plain JSON, never executed)."""
    records = {}
    for area in areas:
        record = Path(root) / area / SIMULATION_RECORD
        if record.exists():
            records[area] = json.loads(record.read_text())
    return records


def _write_patch(patch_id: int, scene: SimulatedScene, window: Window, folders: dict[str, Path]) -> np.ndarray:
    """Write one patch's img, depth and gts files; returns the image."""
    rows, cols = window.toslices()
    depth = scene.depth[rows, cols]
    classes = scene.classes[rows, cols]
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[: len(scene.site.classes)] = scene.site.class_colours
    palette[UNDEFINED] = UNDEFINED_COLOUR
    profile = dict(
        driver="GTiff", height=window.height, width=window.width, crs=scene.site.crs,
        transform=window_transform(window, scene.transform),
    )
    path = {kind: folders[kind] / f"{kind}_{patch_id}.tif" for kind in folders}
    image = scene.image[:, rows, cols]
    with rasterio.open(path["img"], "w", count=3, dtype="uint16", **profile) as dst:
        dst.write(image)
        _describe_image_bands(dst)
    with rasterio.open(path["depth"], "w", count=1, dtype="float32", **profile) as dst:
        dst.write(np.where(np.isfinite(depth), -depth, 0.0).astype(np.float32), 1)
    with rasterio.open(path["gts"], "w", count=3, dtype="uint8", **profile) as dst:
        dst.write(np.moveaxis(palette[classes], -1, 0))
    return image


def _describe_image_bands(dst) -> None:
    for index, (band, description) in enumerate(zip(BANDS, BAND_DESCRIPTIONS), start=1):
        dst.set_band_description(index, band)
        dst.update_tags(index, name=band, wavelength=description)
    dst.update_tags(units="surface reflectance x 10000", sensor="Sentinel-2 MSI (simulated)")


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], correlation_px: float) -> np.ndarray:
    """Zero-mean, unit-std Gaussian random field with the given correlation length (pixels)."""
    noise = rng.standard_normal(shape)
    freq_y = np.fft.fftfreq(shape[0])[:, None]
    freq_x = np.fft.rfftfreq(shape[1])[None, :]
    gaussian_filter = np.exp(-2.0 * (np.pi * correlation_px) ** 2 * (freq_x**2 + freq_y**2))
    field = np.fft.irfft2(np.fft.rfft2(noise) * gaussian_filter, s=shape)
    return (field - field.mean()) / field.std()


def _seabed_depth(rng: np.random.Generator, shape: tuple[int, int], site: Site) -> np.ndarray:
    """True depth (m, positive down; <= 0 on land): Dean profile offshore of a wavy coastline."""
    rows, cols = np.indices(shape, dtype=np.float64)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    across_shore = (cols * np.cos(angle) + rows * np.sin(angle)) * GSD_M
    extent = across_shore.max() - across_shore.min()
    coastline = across_shore.min() + rng.uniform(0.04, 0.10) * extent
    offshore = across_shore - coastline + 0.03 * extent * smooth_field(rng, shape, 60.0)
    # Dean's A chosen so that the survey-depth isobath lies 70-95% of the way across the scene.
    survey_limit_distance = rng.uniform(0.70, 0.95) * extent
    dean_a = site.survey_depth_m / survey_limit_distance ** (2.0 / 3.0)
    profile = dean_a * np.sign(offshore) * np.abs(offshore) ** (2.0 / 3.0)
    reefs = 0.08 * site.survey_depth_m * smooth_field(rng, shape, 25.0)
    return profile + reefs * np.clip(profile / 3.0, 0.0, 1.0)


def _seabed_classes(rng: np.random.Generator, depth: np.ndarray, site: Site) -> np.ndarray:
    """Seabed class index: smooth random patches weighted by depth plausibility."""
    scores = []
    for seabed_class in site.classes:
        shallowest, deepest = seabed_class.depth_range_m
        plausibility = _logistic((depth - shallowest) / 1.5) * _logistic((deepest - depth) / 1.5)
        scores.append(
            smooth_field(rng, depth.shape, 15.0) + np.log(seabed_class.abundance * plausibility + 1e-3)
        )
    return np.argmax(np.stack(scores), axis=0)


def _logistic(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))

"""Physically grounded simulation of EnMAP-like hyperspectral scenes (numpy + rasterio only).

No real hyperspectral cube can be downloaded here, so the shipped HyCoT compression models
(Fuchs, Rasti & Demir, "HyCoT: A Transformer-Based Autoencoder for Hyperspectral Image Compression", 2024)
learn from scenes simulated the way imaging spectroscopy explains real ones:

- Spectral sampling: EnMAP's 224 band centres (VNIR 418-993 nm, SWIR 902-2445 nm; the two
  detectors overlap at 902-993 nm), ``ENMAP_BAND_CENTRES_NM``, from EnMAP's published spectral band
  list (EnMAP_Spectral_Bands_update.xlsx, the values torchgeo's ``EnMAP`` uses), rounded to 0.1 nm.
  As in HySpecNet-11k (Fuchs & Demir 2023) the bands most affected by atmospheric water vapour,
  EnMAP bands 127-141 (1295-1519 nm) and 161-167 (1739-1968 nm), are not used: 202 bands remain
  (``KEPT_BANDS``, ``WAVELENGTHS_NM``).
- Endmembers: reflectance spectra built from their physical features (a continuum times Gaussian
  absorption bands, plus Beer-Lambert liquid-water absorption in leaves and moist soil): green vegetation
  (chlorophyll absorption at 430-450 and 670 nm, red edge near 715 nm, NIR plateau, leaf water at
  970, 1200, 1450, 1940 nm and beyond 2400 nm), dry vegetation (cellulose/lignin at 2100, 2300 nm),
  conifer forest, dry and moist soil (monotonic rise, iron oxide near 900 nm, clay Al-OH at
  2205 nm), clear and turbid water, kaolinite (Al-OH doublet 2165/2205 nm), calcite (carbonate
  2340 nm), asphalt (hydrocarbon 1730/2310 nm) and concrete.
- Scenes: linear mixing with spatially smooth abundances (softmax of Gaussian random fields, a
  logistic-normal stand-in for Dirichlet abundances) over one of five landscape types, per-pixel
  brightness variability of each endmember, Lambertian topographic illumination from a random
  terrain and sun position plus diffuse skylight, a small Rayleigh-like (lambda^-4) residual of the
  atmospheric correction, and signal-dependent sensor noise with EnMAP-like SNR (about 400 in the
  VNIR, 180 in the SWIR, less at the spectral ends).
- Values: int16 surface reflectance x 10000 (as EnMAP L2A and HySpecNet-11k), -32768 = nodata.

``write_hyspecnet_layout`` writes HySpecNet-11k's on-disk layout so that torchgeo's own
``HySpecNet11k`` dataset reads it; ``write_scene_geotiff`` writes one georeferenced 202-band scene.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from training.simulation.shallow_water import smooth_field

# fmt: off
ENMAP_BAND_CENTRES_NM = np.array([
    418.4, 424.0, 429.5, 434.7, 439.8, 444.7, 449.5, 454.3, 459.0, 463.7, 468.4, 473.1,
    477.7, 482.4, 487.1, 491.8, 496.5, 501.2, 506.0, 510.8, 515.7, 520.6, 525.5, 530.4,
    535.4, 540.5, 545.6, 550.7, 555.9, 561.1, 566.4, 571.8, 577.2, 582.6, 588.2, 593.8,
    599.4, 605.2, 611.0, 616.9, 622.9, 629.0, 635.1, 641.3, 647.5, 653.8, 660.2, 666.6,
    673.1, 679.7, 686.3, 693.0, 699.8, 706.6, 713.5, 720.5, 727.5, 734.7, 741.8, 749.1,
    756.4, 763.7, 771.1, 778.6, 786.1, 793.6, 801.2, 808.9, 816.6, 824.4, 832.1, 840.0,
    847.8, 855.8, 863.7, 871.7, 879.7, 887.7, 895.8, 903.9, 912.0, 920.1, 928.2, 936.3,
    944.5, 952.6, 960.7, 968.9, 977.0, 985.2, 993.3, 902.0, 911.6, 921.3, 931.2, 941.2,
    951.4, 961.6, 972.0, 982.5, 993.1, 1003.9, 1014.7, 1025.7, 1036.7, 1047.8, 1059.1, 1070.4,
    1081.8, 1093.3, 1104.8, 1116.4, 1128.1, 1139.8, 1151.6, 1163.4, 1175.3, 1187.2, 1199.1, 1211.0,
    1223.0, 1235.0, 1246.9, 1258.9, 1270.9, 1282.9, 1294.9, 1306.9, 1318.9, 1330.9, 1342.8, 1354.8,
    1366.7, 1378.6, 1390.5, 1461.1, 1472.7, 1484.3, 1495.9, 1507.4, 1518.9, 1530.3, 1541.7, 1553.0,
    1564.3, 1575.6, 1586.8, 1597.9, 1609.0, 1620.1, 1631.1, 1642.1, 1653.0, 1663.9, 1674.7, 1685.5,
    1696.2, 1706.9, 1717.5, 1728.1, 1738.6, 1749.1, 1759.5, 1939.1, 1948.7, 1958.2, 1967.7, 1977.1,
    1986.4, 1995.8, 2005.1, 2014.3, 2023.5, 2032.7, 2041.8, 2050.9, 2060.0, 2069.0, 2077.9, 2086.9,
    2095.7, 2104.6, 2113.4, 2122.2, 2130.9, 2139.6, 2148.3, 2156.9, 2165.5, 2174.0, 2182.5, 2191.0,
    2199.5, 2207.9, 2216.2, 2224.6, 2232.9, 2241.2, 2249.4, 2257.6, 2265.8, 2273.9, 2282.0, 2290.1,
    2298.2, 2306.2, 2314.2, 2322.1, 2330.0, 2337.9, 2345.8, 2353.6, 2361.4, 2369.2, 2377.0, 2384.7,
    2392.3, 2400.0, 2407.6, 2415.2, 2422.8, 2430.3, 2437.8, 2445.3,
])
# fmt: on
VNIR_BANDS = 91  # EnMAP bands 1-91 come from the VNIR detector, 92-224 from the SWIR detector
WATER_VAPOUR_BANDS = (*range(127, 142), *range(161, 168))  # 1-based EnMAP band numbers
KEPT_BANDS = tuple(n for n in range(1, len(ENMAP_BAND_CENTRES_NM) + 1) if n not in WATER_VAPOUR_BANDS)
WAVELENGTHS_NM = ENMAP_BAND_CENTRES_NM[np.array(KEPT_BANDS) - 1]
REFLECTANCE_SCALE = 10000.0
NODATA = -32768
GSD_M = 30.0
SIMULATION_RECORD = "simulation.json"  # written beside the simulated data: how it was made

# Liquid-water absorption coefficient (1/cm), approximate values after Hale & Querry (1973,
# Applied Optics 12(3)), interpolated in log space.
_WATER_ABSORPTION_NM_PER_CM = np.array([
    (400, 0.0002), (700, 0.006), (800, 0.02), (900, 0.07), (970, 0.45), (1050, 0.16), (1100, 0.2),
    (1200, 1.05), (1300, 1.2), (1350, 3.0), (1400, 15.0), (1450, 31.0), (1500, 18.0), (1600, 7.0),
    (1700, 5.5), (1800, 9.0), (1850, 15.0), (1900, 60.0), (1940, 120.0), (2000, 70.0), (2100, 25.0),
    (2200, 17.0), (2300, 22.0), (2400, 45.0), (2500, 100.0),
])


def band_name(enmap_band: int) -> str:
    """Canonical name of an EnMAP band (1-based), e.g. ``b048``."""
    return f"b{enmap_band:03d}"


def band_label(enmap_band: int) -> str:
    """The band description written into GeoTIFFs: the centre wavelength, e.g. ``666.6 nm``."""
    return f"{ENMAP_BAND_CENTRES_NM[enmap_band - 1]:.1f} nm"


def liquid_water_absorption(wavelengths_nm: np.ndarray) -> np.ndarray:
    """Absorption coefficient of liquid water (1/cm) at the given wavelengths."""
    table = _WATER_ABSORPTION_NM_PER_CM
    return np.exp(np.interp(wavelengths_nm, table[:, 0], np.log(table[:, 1])))


def _absorption(wavelengths_nm: np.ndarray, centre: float, width: float, depth: float) -> np.ndarray:
    """Multiplicative Gaussian absorption band: 1 - depth at the centre, 1 far from it."""
    return 1.0 - depth * np.exp(-0.5 * ((wavelengths_nm - centre) / width) ** 2)


def _rise(wavelengths_nm: np.ndarray, centre: float, width: float) -> np.ndarray:
    """Logistic step from 0 to 1 around ``centre`` (a red edge, a water reflectance fall-off)."""
    return 1.0 / (1.0 + np.exp(-(wavelengths_nm - centre) / width))


def _leaf_water(wavelengths_nm: np.ndarray, dry: np.ndarray, water_cm: float, surface: float = 0.03) -> np.ndarray:
    """Beer-Lambert attenuation by ``water_cm`` of liquid water below a first-surface reflectance."""
    return surface + (dry - surface) * np.exp(-liquid_water_absorption(wavelengths_nm) * water_cm)


def _green_vegetation(wl: np.ndarray, nir: float = 0.47, visible: float = 0.10, water_cm: float = 0.06) -> np.ndarray:
    continuum = visible + (nir - visible) * _rise(wl, 716.0, 14.0)
    chlorophyll = _absorption(wl, 440.0, 35.0, 0.55) * _absorption(wl, 672.0, 22.0, 0.75)
    return _leaf_water(wl, continuum * chlorophyll, water_cm)


def _dry_vegetation(wl: np.ndarray) -> np.ndarray:
    continuum = 0.07 + 0.28 * _rise(wl, 640.0, 70.0) + 0.05 * _rise(wl, 1300.0, 200.0)
    cellulose_lignin = (
        _absorption(wl, 1730.0, 25.0, 0.05) * _absorption(wl, 2100.0, 40.0, 0.16) * _absorption(wl, 2300.0, 40.0, 0.10)
    )
    return _leaf_water(wl, continuum * cellulose_lignin, 0.004)


def _soil(wl: np.ndarray, brightness: float, moisture_cm: float) -> np.ndarray:
    continuum = brightness * (0.18 + 0.82 * (1.0 - np.exp(-(wl - 380.0) / 650.0)))
    minerals = _absorption(wl, 890.0, 90.0, 0.06) * _absorption(wl, 2205.0, 22.0, 0.12)
    return _leaf_water(wl, continuum * minerals, moisture_cm, surface=0.02)


def _clear_water(wl: np.ndarray) -> np.ndarray:
    return 0.002 + 0.036 * (1.0 - _rise(wl, 575.0, 28.0))


def _turbid_water(wl: np.ndarray) -> np.ndarray:
    sediment = 0.055 * np.exp(-0.5 * ((wl - 575.0) / 75.0) ** 2) + 0.014 * np.exp(-0.5 * ((wl - 810.0) / 25.0) ** 2)
    return 0.003 + sediment + 0.01 * (1.0 - _rise(wl, 480.0, 20.0))


def _kaolinite(wl: np.ndarray) -> np.ndarray:
    continuum = 0.58 + 0.24 * (1.0 - np.exp(-(wl - 380.0) / 280.0))
    al_oh = (
        _absorption(wl, 2165.0, 12.0, 0.16) * _absorption(wl, 2207.0, 14.0, 0.30) * _absorption(wl, 2350.0, 25.0, 0.07)
    )
    return continuum * al_oh * _absorption(wl, 1910.0, 25.0, 0.05)


def _calcite(wl: np.ndarray) -> np.ndarray:
    continuum = 0.50 + 0.15 * (1.0 - np.exp(-(wl - 380.0) / 350.0))
    carbonate = (
        _absorption(wl, 2340.0, 35.0, 0.30) * _absorption(wl, 2160.0, 25.0, 0.05) * _absorption(wl, 1995.0, 30.0, 0.08)
    )
    return continuum * carbonate


def _asphalt(wl: np.ndarray) -> np.ndarray:
    continuum = 0.05 + 0.10 * (wl - 400.0) / 2050.0
    return continuum * _absorption(wl, 1730.0, 20.0, 0.06) * _absorption(wl, 2310.0, 25.0, 0.06)


def _concrete(wl: np.ndarray) -> np.ndarray:
    continuum = 0.24 + 0.10 * (1.0 - np.exp(-(wl - 380.0) / 500.0)) - 0.03 * _rise(wl, 1900.0, 200.0)
    return continuum * _absorption(wl, 2340.0, 30.0, 0.05)


ENDMEMBER_SPECTRA = {
    "green vegetation": _green_vegetation,
    "dry vegetation": _dry_vegetation,
    "conifer forest": lambda wl: _green_vegetation(wl, nir=0.26, visible=0.06, water_cm=0.08),
    "dry soil": lambda wl: _soil(wl, 0.40, 0.004),
    "moist soil": lambda wl: _soil(wl, 0.24, 0.03),
    "clear water": _clear_water,
    "turbid water": _turbid_water,
    "kaolinite": _kaolinite,
    "calcite": _calcite,
    "asphalt": _asphalt,
    "concrete": _concrete,
}

# Landscape types: endmembers present and their prior weight (log-odds of the abundance field).
LANDSCAPES = {
    "agricultural": {"green vegetation": 1.0, "dry vegetation": 0.6, "dry soil": 0.6, "moist soil": 0.3,
                     "asphalt": -1.5, "clear water": -2.0},
    "forest": {"conifer forest": 1.0, "green vegetation": 0.4, "moist soil": -0.5, "clear water": -1.5},
    "urban": {"asphalt": 0.6, "concrete": 0.8, "green vegetation": 0.2, "dry soil": -0.5, "clear water": -1.5},
    "arid": {"dry soil": 0.8, "kaolinite": 0.0, "calcite": 0.0, "dry vegetation": -0.3},
    "coastal": {"clear water": 0.8, "turbid water": 0.2, "dry soil": -0.2, "green vegetation": 0.0, "concrete": -1.0},
}


def endmember_spectrum(name: str, wavelengths_nm: np.ndarray = WAVELENGTHS_NM) -> np.ndarray:
    """Reflectance (0-1) of a named endmember at the given wavelengths."""
    return ENDMEMBER_SPECTRA[name](np.asarray(wavelengths_nm, dtype=np.float64))


def sensor_noise_std(reflectance: np.ndarray, wavelengths_nm: np.ndarray) -> np.ndarray:
    """Noise std (reflectance units) for signal-dependent noise with EnMAP-like SNR at 30% reflectance."""
    snr = np.interp(wavelengths_nm, [420, 480, 900, 1000, 1600, 2200, 2450], [180, 400, 400, 200, 180, 150, 80])
    shape = (-1,) + (1,) * (reflectance.ndim - 1)
    return np.sqrt(np.clip(reflectance, 0.0, None) * 0.3 + 0.003**2) / snr.reshape(shape)


@dataclass(frozen=True)
class SimulatedScene:
    reflectance: np.ndarray  # int16 [224, H, W]: reflectance x 10000, water-vapour bands = NODATA
    abundances: np.ndarray  # float32 [endmembers, H, W], summing to 1 per pixel
    endmembers: tuple[str, ...]
    landscape: str
    transform: rasterio.Affine
    crs: str

    @property
    def kept_bands(self) -> np.ndarray:
        """int16 ``[202, H, W]``: the bands HySpecNet-11k and the HyCoT models use."""
        return self.reflectance[np.array(KEPT_BANDS) - 1]


def simulate_scene(
    height: int, width: int, seed: int, landscape: str | None = None,
    crs: str = "EPSG:32633", upper_left: tuple[float, float] = (400000.0, 5800000.0),
) -> SimulatedScene:
    """Simulate one EnMAP-like scene (all 224 bands; the water-vapour bands hold ``NODATA``)."""
    rng = np.random.default_rng(seed)
    landscape = landscape or str(rng.choice(sorted(LANDSCAPES)))
    shape = (height, width)
    names = tuple(LANDSCAPES[landscape])
    wavelengths = WAVELENGTHS_NM

    sharpness = rng.uniform(1.5, 4.0)
    logits = np.stack([
        LANDSCAPES[landscape][name] + sharpness * smooth_field(rng, shape, rng.uniform(2.0, 12.0)) for name in names
    ])
    abundances = np.exp(logits - logits.max(axis=0))
    abundances /= abundances.sum(axis=0)
    reflectance = np.zeros((len(wavelengths), *shape))
    for name, abundance in zip(names, abundances):
        variability = np.exp(0.08 * smooth_field(rng, shape, rng.uniform(1.0, 6.0)))
        reflectance += endmember_spectrum(name, wavelengths)[:, None, None] * (abundance * variability)[None]

    reflectance *= _illumination(rng, shape)[None]
    reflectance += rng.uniform(-0.004, 0.008) * (450.0 / wavelengths[:, None, None]) ** 4
    reflectance += rng.standard_normal(reflectance.shape) * sensor_noise_std(reflectance, wavelengths)
    scaled = np.clip(np.rint(reflectance * REFLECTANCE_SCALE), NODATA + 1, np.iinfo(np.int16).max)
    full = np.full((len(ENMAP_BAND_CENTRES_NM), *shape), NODATA, dtype=np.int16)
    full[np.array(KEPT_BANDS) - 1] = scaled.astype(np.int16)
    return SimulatedScene(
        full, abundances.astype(np.float32), names, landscape, from_origin(*upper_left, GSD_M, GSD_M), crs
    )


def _illumination(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Lambertian terrain illumination relative to flat ground, with 15% diffuse skylight."""
    relief_m = rng.uniform(0.0, 150.0)
    elevation = relief_m * smooth_field(rng, shape, rng.uniform(10.0, 40.0))
    d_row, d_col = np.gradient(elevation, GSD_M)
    slope = np.arctan(np.hypot(d_row, d_col))
    aspect = np.arctan2(-d_col, d_row)  # downslope direction, clockwise from north
    sun_zenith, sun_azimuth = np.radians(rng.uniform(25.0, 60.0)), np.radians(rng.uniform(120.0, 240.0))
    cos_incidence = (
        np.cos(sun_zenith) * np.cos(slope) + np.sin(sun_zenith) * np.sin(slope) * np.cos(sun_azimuth - aspect)
    )
    direct = np.clip(cos_incidence, 0.0, None) / np.cos(sun_zenith)
    return 0.85 * direct + 0.15 * (1.0 + np.cos(slope)) / 2.0


def write_scene_geotiff(scene: SimulatedScene, path) -> None:
    """One tiled, compressed GeoTIFF of the 202 kept bands, each described by its wavelength."""
    kept = scene.kept_bands
    profile = dict(
        driver="GTiff", height=kept.shape[1], width=kept.shape[2], count=len(KEPT_BANDS), dtype="int16",
        nodata=NODATA, crs=scene.crs, transform=scene.transform, tiled=True, blockxsize=128, blockysize=128,
        compress="deflate", predictor=2, interleave="band",
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(kept)
        for index, enmap_band in enumerate(KEPT_BANDS, start=1):
            dst.set_band_description(index, band_label(enmap_band))
            dst.update_tags(index, name=band_name(enmap_band), enmap_band=str(enmap_band),
                            wavelength_nm=f"{ENMAP_BAND_CENTRES_NM[enmap_band - 1]:.1f}")
        dst.update_tags(units="surface reflectance x 10000", sensor="EnMAP HSI (simulated)",
                        landscape=scene.landscape, endmembers=json.dumps(list(scene.endmembers)))


def write_hyspecnet_layout(
    root, n_patches: int, patch_size: int = 128, seed: int = 0, patches_per_tile: int = 9
) -> list[str]:
    """Write simulated patches in HySpecNet-11k's layout; returns the patch paths (split CSV lines).

    As torchgeo's ``HySpecNet11k`` reads it (Fuchs & Demir 2023)::

        <root>/hyspecnet-11k/patches/<tile>/<tile>-<patch>/<tile>-<patch>-SPECTRAL_IMAGE.TIF
        <root>/hyspecnet-11k/splits/{easy,hard}/{train,val,test}.csv

    ``<tile>`` is an EnMAP L2A product name (``ENMAP01-____L2A-DT<datatake>_<start>Z_<tile>_V010110_
    <processed>Z``) and ``<patch>`` ``Y<first row><last row>_X<first col><last col>`` (4 digits each,
    inclusive, within the tile). Each image has all 224 EnMAP bands, int16 reflectance x 10000 with
    nodata -32768 (which fills the water-vapour bands torchgeo drops by default). Split CSVs list
    ``<tile>/<tile>-<patch>/<tile>-<patch>-DATA.npy`` per line, as the real ones do; the
    preprocessed ``DATA.npy`` arrays themselves are not written (torchgeo reads the GeoTIFFs).
    Splits are 70/20/10% train/val/test: ``easy`` by patch, ``hard`` by tile (at least 3 tiles are
    simulated so every hard split has one). Each tile is one simulated scene with its own
    landscape, terrain, sun and UTM zone; patches are adjacent cells of a grid inside it.
    ``simulation.json`` beside ``patches`` records how the data was made.
    """
    if n_patches < 3:
        raise ValueError("HySpecNet-11k's splits need at least 3 patches")
    dataset = Path(root) / "hyspecnet-11k"
    rng = np.random.default_rng(seed)
    n_tiles = max(3, math.ceil(n_patches / patches_per_tile))
    paths_per_tile: list[list[str]] = []
    landscapes = {}
    for tile_index, count in enumerate(len(part) for part in np.array_split(np.arange(n_patches), n_tiles)):
        tile_name = _tile_name(rng, tile_index)
        grid = math.ceil(math.sqrt(count))
        offset_row, offset_col = (int(v) for v in rng.integers(0, 200, size=2))
        zone = int(rng.integers(29, 36))
        upper_left = (float(rng.integers(300, 600)) * 1000.0, float(rng.integers(4500, 6500)) * 1000.0)
        tile_seed = int(np.random.SeedSequence([seed, tile_index]).generate_state(1)[0])
        scene = simulate_scene(grid * patch_size, grid * patch_size, tile_seed, crs=f"EPSG:326{zone:02d}",
                               upper_left=(upper_left[0] + offset_col * GSD_M, upper_left[1] - offset_row * GSD_M))
        landscapes[tile_name] = scene.landscape
        paths = []
        for cell in range(count):
            row, col = (cell // grid) * patch_size, (cell % grid) * patch_size
            first_row, first_col = offset_row + row, offset_col + col
            patch_name = (f"Y{first_row:04d}{first_row + patch_size - 1:04d}"
                          f"_X{first_col:04d}{first_col + patch_size - 1:04d}")
            stem = f"{tile_name}-{patch_name}"
            image = dataset / "patches" / tile_name / stem / f"{stem}-SPECTRAL_IMAGE.TIF"
            image.parent.mkdir(parents=True, exist_ok=True)
            _write_patch(image, scene, row, col, patch_size)
            paths.append(f"{tile_name}/{stem}/{stem}-DATA.npy")
        paths_per_tile.append(paths)

    all_paths = [path for paths in paths_per_tile for path in paths]
    easy = _split_70_20_10([[path] for path in rng.permutation(all_paths).tolist()])
    hard = _split_70_20_10([paths_per_tile[i] for i in rng.permutation(n_tiles)])
    for strategy, splits in (("easy", easy), ("hard", hard)):
        folder = dataset / "splits" / strategy
        folder.mkdir(parents=True, exist_ok=True)
        for split, lines in splits.items():
            (folder / f"{split}.csv").write_text("".join(line + "\n" for line in lines))
    (dataset / SIMULATION_RECORD).write_text(json.dumps({
        "simulator": "training/simulation/hyperspectral.py",
        "description": "SIMULATED EnMAP-like patches (linear mixing of physically built endmember "
        "spectra, terrain illumination, sensor noise), not real HySpecNet-11k data",
        "patches": n_patches, "patch_size": patch_size, "seed": seed, "tiles": n_tiles,
        "landscapes": landscapes,
    }, indent=2) + "\n")
    return all_paths


def read_simulation_record(root) -> dict | None:
    """The ``simulation.json`` of a simulated HySpecNet-11k root (plain JSON), or None for real data."""
    record = Path(root) / "hyspecnet-11k" / SIMULATION_RECORD
    return json.loads(record.read_text()) if record.exists() else None


def _tile_name(rng: np.random.Generator, tile_index: int) -> str:
    """An EnMAP L2A product name acquired 2-9 November 2022, as HySpecNet-11k's tiles were."""
    day, seconds = int(rng.integers(2, 10)), int(rng.integers(0, 86400))
    start = f"202211{day:02d}T{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}"
    processed = f"202211{day + 12:02d}T{int(rng.integers(0, 24)):02d}0000"
    datatake = int(rng.integers(1000, 9999)) * 1000 + tile_index
    return f"ENMAP01-____L2A-DT{datatake:010d}_{start}Z_{tile_index % 999 + 1:03d}_V010110_{processed}Z"


def _split_70_20_10(groups: list[list[str]]) -> dict[str, list[str]]:
    """Assign whole groups in order to train/val/test at 70/20/10% of items, each split non-empty."""
    total = sum(len(group) for group in groups)
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for index, group in enumerate(groups):
        remaining = len(groups) - index
        taken = len(splits["train"]) + len(splits["val"])
        if not splits["train"] or (len(splits["train"]) < 0.7 * total and remaining > 2):
            splits["train"] += group
        elif not splits["val"] or (taken < 0.9 * total and remaining > 1):
            splits["val"] += group
        else:
            splits["test"] += group
    return splits


def _write_patch(path: Path, scene: SimulatedScene, row: int, col: int, size: int) -> None:
    window = Window(col, row, size, size)
    profile = dict(
        driver="GTiff", height=size, width=size, count=len(ENMAP_BAND_CENTRES_NM), dtype="int16",
        nodata=NODATA, crs=scene.crs, transform=window_transform(window, scene.transform),
        compress="deflate", predictor=2, interleave="band",
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(scene.reflectance[:, row : row + size, col : col + size])

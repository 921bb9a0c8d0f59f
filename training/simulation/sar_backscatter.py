"""SIMULATED Sentinel-1-like C-band backscatter (sigma0 in dB, VV and VH) from a land-cover map.

No Sentinel-1 scene paired with the Landsat 7 tiles of the text-search fixtures is available
offline, so the SAR view of each tile is made from its per-pixel land cover
(``training.simulation.land_cover.classify``, the classes the captions are measured from):

1. class-typical mean backscatter ``BACKSCATTER_DB`` (VV, VH) of C-band at Sentinel-1 IW
   incidence angles (about 30-45 degrees), plus one offset per call (``OFFSET_DB`` std, common to
   both polarisations) standing for the tile's place in the swath (incidence angle) and calibration;
2. a smooth texture in dB (Gaussian random field, ``TEXTURE_CORRELATION_PX``, a per-class std
   ``BACKSCATTER_DB[...][2]``): moisture, roughness and canopy vary within a class, built-up land
   most (orientation of the buildings);
3. multiplicative speckle in linear power: the L-look intensity of fully developed speckle is
   Gamma(L, 1/L) with mean 1 (Goodman 1976), with ``LOOKS`` = 4.4, the equivalent number of looks
   of an IW GRD high-resolution product (ESA Sentinel-1 User Handbook 2013; Sentinel-1 Product
   Definition). Converted back to dB, speckle has a mean of about -0.5 dB and a std of about
   2.3 dB per pixel.

Class means (VV, VH in dB) and where they come from:

- ``water`` -20 / -28: calm open water is a specular surface, well below -15 dB in VV (the flood
  thresholds of Twele, Cao, Plank, Martinis 2016, "Sentinel-1-based flood mapping: a fully
  automated processing chain", Int. J. Remote Sensing 37(13)); cross-polarised returns sit near the
  Sentinel-1 IW noise floor (NESZ about -22 dB or lower; thermal-noise-removed GRD reaches -25 to
  -30 dB).
- ``vegetation`` -7 / -13: forest canopies at C-band, volume scattering (Ulaby & Dobson 1989,
  "Handbook of Radar Scattering Statistics for Terrain", Artech House: trees about -6 to -9 dB
  like-polarised at 30-50 degrees); cross-polarised about 6 dB lower.
- ``built-up`` -3 / -10: dihedral (double-bounce) returns of walls and ground make cities the
  brightest class (Franceschetti, Iodice, Riccio 2002, "A canonical problem in electromagnetic
  backscattering from buildings", IEEE TGRS 40(8); Ulaby & Dobson 1989); double bounce keeps the
  polarisation, so VH is relatively weaker (about 7 dB) than for vegetation.
- ``arid land`` -12 / -20: dry bare soil and rock, surface scattering, VV about -10 to -15 dB at
  these angles and a cross-polarised ratio of about -8 to -12 dB (the empirical bare-soil model of Oh,
  Sarabandi, Ulaby 1992, "An empirical model and an inversion technique for radar scattering from
  bare soil surfaces", IEEE TGRS 30(2)).
- ``salt flat`` -15 / -24: assumed for dry, smooth salt crusts and playas, darker than rough arid
  land (near-specular) but brighter than calm water. Wet brine crusts can instead be bright (their
  permittivity is high: Lasne et al. 2009, "Effect of salinity on the dielectric properties of
  geological materials", IEEE TGRS 47(6)); that case is not simulated.

Not simulated: incidence-angle dependence within a tile, wind-roughened water (Bragg scattering
brightens VV by up to 10-15 dB), terrain (layover, foreshortening, shadow), the noise floor,
soil-moisture changes, radar-facing building orientation. The result is NOT Sentinel-1 imagery.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from training.simulation.shallow_water import smooth_field

POLARISATIONS = ("VV", "VH")
# class -> (VV dB, VH dB, texture std dB); sources in the module docstring
BACKSCATTER_DB = {
    "water": (-20.0, -28.0, 0.7),
    "vegetation": (-7.0, -13.0, 1.0),
    "built-up": (-3.0, -10.0, 2.5),
    "arid land": (-12.0, -20.0, 1.5),
    "salt flat": (-15.0, -24.0, 1.0),
}
LOOKS = 4.4  # equivalent number of looks, Sentinel-1 IW GRD high resolution
TEXTURE_CORRELATION_PX = 2.0
OFFSET_DB = 0.7
UNITS = "sigma0 in dB (10 log10), SIMULATED Sentinel-1-like VV, VH (training.simulation.sar_backscatter)"


def simulate_backscatter(classes: np.ndarray, class_names: Sequence[str], seed: int | Sequence[int],
                         looks: float = LOOKS) -> np.ndarray:
    """float32 ``[2, H, W]``: VV and VH sigma0 in dB for ``classes`` (int ``[H, W]``, indices into
    ``class_names``, each a key of ``BACKSCATTER_DB``); the same ``seed`` gives the same values."""
    rng = np.random.default_rng(seed)
    table = np.array([BACKSCATTER_DB[name] for name in class_names])[classes]  # [H, W, 3]
    texture = table[..., 2] * smooth_field(rng, classes.shape, TEXTURE_CORRELATION_PX)
    mean_db = table[..., :2].transpose(2, 0, 1) + texture + rng.normal(0.0, OFFSET_DB)
    power = 10.0 ** (mean_db / 10.0) * rng.gamma(looks, 1.0 / looks, size=mean_db.shape)
    return (10.0 * np.log10(power)).astype(np.float32)

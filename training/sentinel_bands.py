"""Sentinel-1 and Sentinel-2 band names as the families' contracts give them (engine.contract.Band): for each
name, the aliases the engine also matches in a file's band descriptions, and what the band is."""
from __future__ import annotations

SENTINEL_BANDS = {
    "VV": (("sigma0_vv", "vv_db"), "Sentinel-1 IW GRD VV backscatter, dB"),
    "VH": (("sigma0_vh", "vh_db"), "Sentinel-1 IW GRD VH backscatter, dB"),
    "B02": (("B2", "blue"), "Sentinel-2 blue, 490 nm, 10 m"),
    "B03": (("B3", "green"), "Sentinel-2 green, 560 nm, 10 m"),
    "B04": (("B4", "red"), "Sentinel-2 red, 665 nm, 10 m"),
    "B05": (("B5", "red edge 1", "rededge1"), "Sentinel-2 red edge, 705 nm, 20 m"),
    "B06": (("B6", "red edge 2", "rededge2"), "Sentinel-2 red edge, 740 nm, 20 m"),
    "B07": (("B7", "red edge 3", "rededge3"), "Sentinel-2 red edge, 783 nm, 20 m"),
    "B08": (("B8", "nir"), "Sentinel-2 near infrared, 842 nm, 10 m"),
    "B8A": (("B08A", "nir08", "narrow nir"), "Sentinel-2 narrow near infrared, 865 nm, 20 m"),
    "B11": (("swir16", "swir1"), "Sentinel-2 short-wave infrared, 1610 nm, 20 m"),
    "B12": (("swir22", "swir2"), "Sentinel-2 short-wave infrared, 2190 nm, 20 m"),
}

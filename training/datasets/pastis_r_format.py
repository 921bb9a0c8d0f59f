"""PASTIS-R on disk and the crop-map input convention, free of torch.

Garnot, Landrieu, Chehata, "Multi-modal temporal attention models for crop mapping from satellite
time series", ISPRS J. 2022 (PASTIS-R); Garnot & Landrieu, ICCV 2021 (PASTIS). The layout torchgeo's
``PASTIS`` reads (``root`` holds the ``PASTIS-R`` folder)::

    <root>/PASTIS-R/metadata.geojson   one feature per patch: ID_PATCH, Fold (1..5), TILE, N_Parcel,
                                       Parcel_Cover, dates-S2 / dates-S1A / dates-S1D ({"0": YYYYMMDD,
                                       "1": ...}, one per time step of the arrays), patch footprint
    <root>/PASTIS-R/DATA_S2/S2_<id>.npy      int16 [T, 10, 128, 128] L2A reflectance x 10000, bands
                                       B02, B03, B04, B05, B06, B07, B08, B8A, B11, B12 (20 m bands
                                       resampled to 10 m); no cloud mask: cloudy dates are kept
    <root>/PASTIS-R/DATA_S1A/S1A_<id>.npy    float32 [T, 3, 128, 128] ascending orbit: VV, VH and the
                                       VV/VH ratio (this project reads and simulates them as sigma0
                                       in dB, the ratio as VV_dB - VH_dB: check a real file's
                                       range before training on it); DATA_S1D/S1D_<id>.npy descending
    <root>/PASTIS-R/ANNOTATIONS/TARGET_<id>.npy  uint8 [3, 128, 128]; channel 0 is the semantic class
                                       (0 background, 1..18 crops, 19 void)
    <root>/PASTIS-R/INSTANCE_ANNOTATIONS/INSTANCES_<id>.npy  parcel ids [128, 128]
    <root>/PASTIS-R/NORM_{S2,S1A,S1D}_patch.json  {"Fold_k": {"mean": [...], "std": [...]}}

Class 19 ("void": parcels mostly outside their patch) is ignored in losses and metrics as in the
PASTIS protocol (U-TAE, TSViT); class 0 (background, non-agricultural land) is predicted.
"""
from __future__ import annotations

from pathlib import Path

DIRECTORY = "PASTIS-R"
METADATA_FILE = "metadata.geojson"
S2_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
S1_CHANNELS = ("VV", "VH", "VV/VH")
ORBITS = {"s1a": "S1A", "s1d": "S1D"}  # torchgeo's band keys -> metadata / folder suffixes
DATE_KEYS = {"s2": "dates-S2", "s1a": "dates-S1A", "s1d": "dates-S1D"}
BACKGROUND_LABEL = 0
VOID_LABEL = 19
FOLDS = {"train": (1, 2, 3), "val": (4,), "test": (5,)}  # PASTIS 5-fold protocol, first split
GSD_M = 10.0
S2_SCALE = 10000.0  # stored int16 = reflectance x 10000
INPUT_UNITS = {
    "s2": "Sentinel-2 L2A surface reflectance x 10000 (PASTIS int16 values)",
    "s1": "Sentinel-1 sigma0 VV, VH in dB and VV/VH as VV_dB - VH_dB (dB)",
}
SIMULATION_RECORD = "simulation.json"  # written by the simulator beside metadata.geojson


def dataset_root(path: Path) -> Path:
    """The folder holding ``PASTIS-R/`` (torchgeo's ``root``), given it or ``PASTIS-R`` itself."""
    path = Path(path)
    return path.parent if path.name == DIRECTORY and (path / METADATA_FILE).exists() else path


def pastis_directory(root: Path) -> Path:
    return dataset_root(root) / DIRECTORY

"""Sample transforms (torchgeo style: callables on a sample dict)."""
from __future__ import annotations

import torch


def random_dihedral(sample: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Apply one random flip/rotation by 90 degrees to every raster in the sample alike.

    Seabed and water have no preferred orientation, so the eight symmetries of the square are
    equally likely views of a patch; uses torch's global generator (seeded by Lightning).
    """
    quarter_turns = int(torch.randint(4, ()))
    flip = bool(torch.randint(2, ()))
    transformed = {}
    for key, raster in sample.items():
        raster = torch.rot90(raster, quarter_turns, dims=(-2, -1))
        transformed[key] = torch.flip(raster, dims=(-1,)) if flip else raster
    return transformed

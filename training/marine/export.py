"""Export a trained bathymetry or seabed model to ONNX with its contract (training/onnx_export.py): the
output is depth / scale, or per-class softmax probabilities.

``fp16=True`` also writes the model's fp16 variant beside it (training/fp16_variant.py), which the
engine runs on CUDA.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.contract import Band, ModelContract
from training.checkpoint import load_checkpoint
from training.datasets.magicbathynet import MagicBathyNet
from training.fp16_variant import write_fp16_variant
from training.marine.data import describe_training_data
from training.onnx_export import parity_check, write_onnx
from training.simulation.shallow_water import simulate_scene

FP16_PARITY_TILES = 32  # held-out tiles the fp16 variant's parity is measured on, at most
PAPER = (
    "Agrafiotis, Janowski, Skarlatos, Demir: MagicBathyNet: A Multimodal Remote Sensing Dataset for "
    "Bathymetry Prediction and Pixel-based Classification in Shallow Waters, IGARSS 2024"
)
BAND_ALIASES = {
    "B04": (("B4", "red", "band 4"), "Sentinel-2 red, 665 nm"),
    "B03": (("B3", "green", "band 3"), "Sentinel-2 green, 560 nm"),
    "B02": (("B2", "blue", "band 2"), "Sentinel-2 blue, 490 nm"),
    "red": (("r",), "red"),
    "green": (("g",), "green"),
    "blue": (("b",), "blue"),
}


def export_onnx(
    checkpoint: Path,
    out: Path,
    tile_size: int = 128,
    overlap: int = 32,
    metrics: dict | None = None,
    command: str = "",
    expected_task: str | None = None,
    fp16: bool = False,
) -> dict:
    """Write ``out`` (.onnx); returns ``{"path", "max_abs_diff", "contract"}`` and, with ``fp16``,
    ``"fp16"``: ``write_fp16_variant``'s record, measured on the test split of the training data
    when it is still where the checkpoint says, else on a simulated scene's tiles.

    ``metrics``: an ``evaluate`` result to record in the contract's provenance.
    """
    module, saved = load_checkpoint(checkpoint, expected_task)
    data = saved["data"]
    bands = tuple(Band(name, *BAND_ALIASES.get(name, ((), ""))) for name in data["bands"])
    contract = ModelContract(
        task=saved["task"],
        name=Path(out).stem,
        bands=bands,
        mean=tuple(module.hparams.band_mean),
        std=tuple(module.hparams.band_std),
        outputs=module.contract_outputs(),
        tile_size=tile_size,
        overlap=overlap,
        gsd_m=data["gsd_m"],
        input_units=data["input_units"],
        quality=data.get("quality", {}),
        test_time_augmentations="dihedral",  # fit trains with every flip and 90-degree rotation (random_dihedral)
        input_statistics=data.get("input_statistics", {}),
        provenance={
            "paper": PAPER,
            "architecture": module.architecture,
            "training_data": describe_training_data(data),
            "command": saved["provenance"]["command"],
            "export_command": command,
            "training": {key: saved["provenance"][key] for key in ("seed", "steps", "epochs", "seconds")},
            "metrics": metrics or {},
        },
    )
    graph = module.export_graph().eval()
    contract = write_onnx(graph, len(bands), tile_size, Path(out), contract)
    max_abs_diff = parity_check(graph, Path(out), len(bands), tile_size)
    result = {"path": str(out), "max_abs_diff": max_abs_diff, "contract": contract}
    if fp16:
        tiles, described = parity_tiles(saved, contract, tile_size)
        result["fp16"] = write_fp16_variant(Path(out), {"image": tiles}, described)
    return result


def parity_tiles(saved: dict, contract: ModelContract, tile_size: int) -> tuple[np.ndarray, str]:
    """Normalised tiles [N, bands, H, W] for the fp16 parity, and what they are: the checkpoint's
    held-out (test) patches when its MagicBathyNet folder is still there, else tiles of a simulated
    scene (training/simulation/shallow_water.py, the simulator the shipped models were trained on)."""
    data = saved["data"]
    mean = np.reshape(contract.mean, (-1, 1, 1)).astype(np.float32)
    std = np.reshape(contract.std, (-1, 1, 1)).astype(np.float32)
    if Path(data["root"]).is_dir():
        held_out = MagicBathyNet(data["root"], data["areas"], data["modality"], saved["task"], "test")
        count = min(len(held_out), FP16_PARITY_TILES)
        images = np.stack([held_out[index]["image"].numpy() for index in range(count)])
        described = f"{count} held-out (test split) patches of {data['root']}"
    else:
        side = max(2 * tile_size, 256)  # the simulator's smooth fields need 256 px or more
        scene = simulate_scene(side, side, seed=11).image.astype(np.float32)
        images = np.stack([scene[:, row:row + tile_size, col:col + tile_size]
                           for row in (0, tile_size) for col in (0, tile_size)])
        described = (f"4 tiles of {tile_size} px of a simulated shallow-water scene (seed 11; the checkpoint's "
                     f"data folder {data['root']} is gone)")
    return ((images - mean) / std).astype(np.float32), described

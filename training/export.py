"""Export a trained task to ONNX with the model contract in its metadata, and check parity.

Graph convention (``engine.contract``): input ``image`` float32 ``[batch, bands, height, width]``,
already normalised with the contract's mean/std; output ``output`` float32
``[batch, channels, height, width]`` (depth / scale, or per-class softmax probabilities). Batch,
height and width are dynamic. After writing, onnxruntime and torch run the same random inputs and
the export fails if they differ by more than ``PARITY_TOLERANCE``.

``fp16=True`` also writes the model's fp16 variant beside it (training/fp16_variant.py), which the
engine runs on CUDA.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch

from engine.contract import Band, ModelContract, contract_from_metadata
from training.checkpoint import load_checkpoint
from training.fit import describe_training_data
from training.fully_convolutional import fully_convolutional_record
from training.fp16_variant import write_fp16_variant

OPSET = 18
PARITY_TOLERANCE = 1e-4
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
        from training.datasets.magicbathynet import MagicBathyNet

        held_out = MagicBathyNet(data["root"], data["areas"], data["modality"], saved["task"], "test")
        count = min(len(held_out), FP16_PARITY_TILES)
        images = np.stack([held_out[index]["image"].numpy() for index in range(count)])
        described = f"{count} held-out (test split) patches of {data['root']}"
    else:
        from training.simulation.shallow_water import simulate_scene

        side = max(2 * tile_size, 256)  # the simulator's smooth fields need 256 px or more
        scene = simulate_scene(side, side, seed=11).image.astype(np.float32)
        images = np.stack([scene[:, row:row + tile_size, col:col + tile_size]
                           for row in (0, tile_size) for col in (0, tile_size)])
        described = (f"4 tiles of {tile_size} px of a simulated shallow-water scene (seed 11; the checkpoint's "
                     f"data folder {data['root']} is gone)")
    return ((images - mean) / std).astype(np.float32), described


def write_onnx(
    graph: torch.nn.Module,
    channels: int,
    tile_size: int,
    out: Path,
    contract: ModelContract,
    dynamic_size: bool = True,
) -> ModelContract:
    """Export ``graph`` (``image`` -> ``output``; batch dynamic, height and width too unless
    ``dynamic_size`` is False) to ``out`` with the contract in its metadata; returns the contract
    written: with its ``fully_convolutional`` record when the graph is (training/fully_convolutional.py)."""
    example = torch.zeros(2, channels, tile_size, tile_size)  # batch 2: a size-1 dim would be specialised
    dimension = torch.export.Dim
    dynamic_axes = {0: dimension("batch")}
    if dynamic_size:
        dynamic_axes |= {2: dimension("height"), 3: dimension("width")}
    torch.onnx.export(
        graph,
        (example,),
        str(out),
        input_names=["image"],
        output_names=["output"],
        opset_version=OPSET,
        dynamo=True,
        external_data=False,
        dynamic_shapes=(dynamic_axes,),
    )
    record = fully_convolutional_record(out) if dynamic_size else None
    contract = replace(contract, fully_convolutional=record or {})
    model = onnx.load(str(out))
    for key, value in contract.to_onnx_metadata().items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return contract


def parity_check(graph: torch.nn.Module, path: Path, bands: int, tile_size: int, dynamic_size: bool = True,
                 tolerance: float = PARITY_TOLERANCE) -> float:
    """Largest |onnxruntime - torch| over random inputs (of a second shape too where height and width
    are dynamic); raises above ``tolerance``."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    contract_from_metadata(session.get_modelmeta().custom_metadata_map, str(path))
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    shapes = [(2, bands, tile_size, tile_size)] + [(1, bands, tile_size // 2, tile_size + 16)] * dynamic_size
    for shape in shapes:
        image = torch.randn(shape, generator=generator)
        with torch.no_grad():
            expected = graph(image).numpy()
        (actual,) = session.run(["output"], {"image": image.numpy()})
        if actual.shape != expected.shape:
            raise RuntimeError(
                f"{path}: ONNX output shape {actual.shape} differs from torch's {expected.shape}"
            )
        worst = max(worst, float(np.abs(actual - expected).max()))
    if worst > tolerance:
        raise RuntimeError(f"{path}: ONNX and torch outputs differ by {worst:.2e} (> {tolerance:.0e})")
    return worst

"""ONNX export every family shares: the graph written with the model contract in its metadata, and the
parity check of onnxruntime against torch.

Graph convention (``engine.contract``): input ``image`` float32 ``[batch, bands, height, width]``,
already normalised with the contract's mean/std; output ``output`` float32 (``[batch, channels, height,
width]`` for raster tasks). Batch is dynamic, and height and width too unless the model has a fixed
size. After writing, onnxruntime and torch run the same random inputs and the export fails if they differ
by more than ``PARITY_TOLERANCE``.
"""
from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch

from engine.contract import ModelContract, contract_from_metadata
from training.fully_convolutional import fully_convolutional_record

OPSET = 18
PARITY_TOLERANCE = 1e-4


def export_graph(graph: torch.nn.Module, example: Mapping[str, torch.Tensor], dynamic_axes: Mapping[str, dict],
                 out: Path) -> None:
    """Write ``graph(*example.values())`` to ``out`` with the inputs named as in ``example`` and the output
    ``output``; ``dynamic_axes``: per input, its dynamic dimensions (``torch.export.Dim``). Example
    batches of 2: a size-1 dimension would be specialised. ``graph.forward`` may take its inputs as
    ``*inputs`` (any number of them, e.g. three per modality)."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    shapes = tuple(dynamic_axes.get(name, {}) for name in example)
    if [parameter.kind for parameter in inspect.signature(graph.forward).parameters.values()] == [
            inspect.Parameter.VAR_POSITIONAL]:
        shapes = (shapes,)  # torch.export matches the shapes to forward's parameters: here one, a tuple
    torch.onnx.export(
        graph,
        tuple(example.values()),
        str(out),
        input_names=list(example),
        output_names=["output"],
        opset_version=OPSET,
        dynamo=True,
        external_data=False,
        dynamic_shapes=shapes,
    )


def write_contract(out: Path, contract: ModelContract, extra_metadata: Mapping[str, str] | None = None) -> None:
    """Put the contract (and ``extra_metadata``) into the metadata of the graph at ``out`` and check it."""
    model = onnx.load(str(out))
    for key, value in (contract.to_onnx_metadata() | dict(extra_metadata or {})).items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))


def parity(graph: torch.nn.Module, path: Path, cases: Iterable[Mapping[str, torch.Tensor]],
           tolerance: float = PARITY_TOLERANCE) -> float:
    """Largest |onnxruntime - torch| over ``cases`` (each: the inputs by name, in the graph's order); raises
    when the output shapes differ or the difference exceeds ``tolerance``. The model's contract is read
    back first, so a contract the engine would refuse fails the export."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    contract_from_metadata(session.get_modelmeta().custom_metadata_map, str(path))
    worst = 0.0
    for inputs in cases:
        with torch.no_grad():
            expected = graph(*inputs.values()).numpy()
        (actual,) = session.run(["output"], {name: tensor.numpy() for name, tensor in inputs.items()})
        if actual.shape != expected.shape:
            raise RuntimeError(f"{path}: ONNX output shape {actual.shape} differs from torch's {expected.shape}")
        worst = max(worst, float(np.abs(actual - expected).max()))
    if worst > tolerance:
        raise RuntimeError(f"{path}: ONNX and torch outputs differ by {worst:.2e} (> {tolerance:.0e})")
    return worst


def write_onnx(graph: torch.nn.Module, channels: int, tile_size: int, out: Path, contract: ModelContract,
               dynamic_size: bool = True) -> ModelContract:
    """Export an image model (``image`` -> ``output``; batch dynamic, height and width too unless
    ``dynamic_size`` is False) to ``out`` with the contract in its metadata; returns the contract
    written: with its ``fully_convolutional`` record when the graph is (training/fully_convolutional.py)."""
    dimension = torch.export.Dim
    axes = {0: dimension("batch")} | ({2: dimension("height"), 3: dimension("width")} if dynamic_size else {})
    export_graph(graph, {"image": torch.zeros(2, channels, tile_size, tile_size)}, {"image": axes}, out)
    record = fully_convolutional_record(out) if dynamic_size else None
    contract = replace(contract, fully_convolutional=record or {})
    write_contract(out, contract)
    return contract


def parity_check(graph: torch.nn.Module, path: Path, bands: int, tile_size: int, dynamic_size: bool = True,
                 tolerance: float = PARITY_TOLERANCE, batches: tuple[int, ...] = (2,)) -> float:
    """``parity`` of an image model over random tiles: a batch of each of ``batches``, and of a second
    shape too where height and width are dynamic."""
    generator = torch.Generator().manual_seed(0)
    shapes = [(batch, bands, tile_size, tile_size) for batch in batches]
    shapes += [(1, bands, tile_size // 2, tile_size + 16)] * dynamic_size
    return parity(graph, path, ({"image": torch.randn(shape, generator=generator)} for shape in shapes), tolerance)

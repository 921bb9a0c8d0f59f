"""The fp16 variant of an exported model: float16 weights and compute, float32 inputs and outputs.

It sits beside the model as ``<stem>.fp16.onnx`` (engine/contract.py ``fp16_variant_path``) and the
engine runs it in the model's place on CUDA (engine/runtime.py). Imports neither torch nor rasterio,
so that bench/gpu_device_check.py can make one on a machine that has neither's full stack.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime

from engine.contract import FP16_KEY, fp16_variant_path
from engine.onnx_metadata import graph_sha256
from engine.output_files import partial_path

# fp16 variant vs the float32 model, largest |difference| in the graph's output units (class probabilities;
# depth / depth scale): float16 keeps 11 significant bits, so a few 1e-3 after a dozen layers is expected
FP16_PARITY_TOLERANCE = 0.02


def write_fp16_variant(model: Path, feeds: dict[str, np.ndarray], described: str) -> dict:
    """Write ``model``'s fp16 variant beside it (engine/contract.py ``fp16_variant_path``): weights and
    compute in float16, inputs and outputs float32 (onnxruntime's float16 converter with
    ``keep_io_types``), so that the engine's contract is unchanged. Its parity with ``model`` on
    ``feeds`` (``described``) is measured through onnxruntime's CPU provider, which runs the fp16
    graph's operators in float16 where it has kernels for them and in float32 between casts where it
    has none; that record, with the SHA-256 of ``model``'s graph (the engine refuses a variant made
    from other weights), goes into the variant's metadata under ``FP16_KEY`` and is returned. Raises, writing
    nothing, when the largest difference exceeds ``FP16_PARITY_TOLERANCE``.

    Micikevicius et al., "Mixed Precision Training", ICLR 2018 (float16 ranges and rounding)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    variant = fp16_variant_path(model)
    half = convert_float_to_float16(onnx.load(str(model)), keep_io_types=True)
    temporary = partial_path(variant)
    onnx.save(half, str(temporary))
    try:
        difference = np.abs(_output(model, feeds) - _output(temporary, feeds))
        record = {
            "source": model.name, "source_graph_sha256": graph_sha256(model),
            "max_abs_diff": float(difference.max()), "mean_abs_diff": float(difference.mean()),
            "tolerance": FP16_PARITY_TOLERANCE, "tiles": described,
            "measured_with": f"onnxruntime {onnxruntime.__version__} CPUExecutionProvider",
        }
        if record["max_abs_diff"] > FP16_PARITY_TOLERANCE:
            raise RuntimeError(
                f"{model}: its fp16 variant differs from it by up to {record['max_abs_diff']:.2e} "
                f"(> {FP16_PARITY_TOLERANCE}) on {described}; no variant was written: ship the float32 model only"
            )
        half.metadata_props.add(key=FP16_KEY, value=json.dumps(record))
        onnx.save(half, str(temporary))
        os.replace(temporary, variant)
    finally:
        temporary.unlink(missing_ok=True)
    return record | {"path": str(variant)}


def _output(path: Path, feeds: dict[str, np.ndarray], batch: int = 8) -> np.ndarray:
    """The first output of the graph at ``path`` for ``feeds``, run batch by batch on the CPU."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    count = len(next(iter(feeds.values())))
    return np.concatenate([session.run(None, {name: value[start:start + batch] for name, value in feeds.items()})[0]
                           for start in range(0, count, batch)])

"""onnxruntime sessions: load a model, validate its contract and graph, pick the device.

``device="auto"`` uses CUDA when onnxruntime can really run on it (the CUDA provider is listed AND
the session ends up on it: onnxruntime-gpu lists CUDA on machines without a GPU and then silently
falls back), else the CPU. ``device="cuda"`` fails clearly when CUDA is not usable.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from engine.contract import ModelContract, contract_from_metadata
from engine.errors import EngineError, ModelContractError

DEVICES = ("auto", "cpu", "cuda")
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


class Model:
    """An ONNX model with a validated contract, ready to run batches of normalised tiles."""

    def __init__(self, path: str | Path, device: str = "auto"):
        self.path = str(path)
        if device not in DEVICES:
            raise EngineError(f"device must be one of {DEVICES}, got {device!r}")
        if not Path(self.path).is_file():
            raise EngineError(f"model file {self.path} does not exist")
        self.session = self._create_session(device)
        self.provider = self.session.get_providers()[0]
        self.contract = contract_from_metadata(
            self.session.get_modelmeta().custom_metadata_map, Path(self.path).name
        )
        self._check_graph()
        self._input_name = self.session.get_inputs()[0].name

    def _create_session(self, device: str) -> ort.InferenceSession:
        want_cuda = device in ("auto", "cuda") and CUDA in ort.get_available_providers()
        if device == "cuda" and not want_cuda:
            raise EngineError(
                "device 'cuda' was requested but this onnxruntime has no CUDA provider "
                f"(available: {ort.get_available_providers()}); install onnxruntime-gpu or use device 'auto'"
            )
        providers = [CUDA, CPU] if want_cuda else [CPU]
        ort.set_default_logger_severity(4)  # a CUDA fallback is reported by us (self.provider), not dumped
        try:
            session = ort.InferenceSession(self.path, providers=providers)
        except Exception as err:  # onnxruntime raises its own exception types for corrupt files
            raise EngineError(
                f"model file {self.path} is not a valid ONNX model (corrupt, truncated or not ONNX): "
                f"{str(err).splitlines()[0][:300]}. Re-export it or choose another model file."
            ) from None
        finally:
            ort.set_default_logger_severity(2)
        if device == "cuda" and session.get_providers()[0] != CUDA:
            raise EngineError(
                "device 'cuda' was requested but the CUDA provider could not start (no GPU or CUDA "
                "libraries missing); use device 'auto' or 'cpu'"
            )
        return session

    def _check_graph(self) -> None:
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        contract: ModelContract = self.contract
        if contract.modalities:
            self._check_time_series_inputs(inputs)
            return
        if len(inputs) != 1 or len(outputs) < 1:
            raise ModelContractError(
                f"{self.path}: expected one input and one output, found {len(inputs)} and {len(outputs)}"
            )
        if inputs[0].type != "tensor(float)":
            raise ModelContractError(
                f"{self.path}: model input is {inputs[0].type}; the engine feeds float32 tensors"
            )
        shape = inputs[0].shape
        if len(shape) != 4:
            raise ModelContractError(f"{self.path}: model input must be [batch, bands, height, width], is {shape}")
        if isinstance(shape[1], int) and shape[1] != len(contract.bands):
            raise ModelContractError(
                f"{self.path}: the graph takes {shape[1]} bands but the contract lists "
                f"{len(contract.bands)} ({', '.join(contract.band_names)})"
            )
        out_shape = outputs[0].shape
        channels = contract.provenance.get("dim") if contract.outputs.kind == "embedding" else contract.outputs.channels
        if len(out_shape) != 4 or (isinstance(out_shape[1], int) and out_shape[1] != channels):
            raise ModelContractError(
                f"{self.path}: model output {out_shape} does not match the contract's "
                f"{channels} output channel(s) [batch, channels, height, width]"
            )

    def _check_time_series_inputs(self, inputs) -> None:
        """Per modality m: m [N, T, C, H, W] float, m_doy [N, T] int64, m_mask [N, T, H, W] float."""
        found = {i.name: i for i in inputs}
        for modality in self.contract.modalities:
            expected = {modality.name: ("tensor(float)", 5), f"{modality.name}_doy": ("tensor(int64)", 2),
                        f"{modality.name}_mask": ("tensor(float)", 4)}
            for name, (kind, rank) in expected.items():
                if name not in found or found[name].type != kind or len(found[name].shape) != rank:
                    raise ModelContractError(
                        f"{self.path}: the contract's modality {modality.name!r} needs an input {name!r} of "
                        f"{kind} with {rank} dimensions; the graph has "
                        + ", ".join(f"{i.name} {i.type} {i.shape}" for i in inputs)
                    )

    def run(self, batch: np.ndarray | dict[str, np.ndarray]) -> np.ndarray:
        """Run a normalised float32 batch [N, bands, H, W] (or the named inputs of a multi-input
        model) -> [N, channels, H, W]."""
        feeds = batch if isinstance(batch, dict) else {self._input_name: batch}
        return self.session.run(None, feeds)[0]

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
MODELS_DIR = Path(__file__).resolve().parents[1] / "models_onnx"  # the shipped models
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
# Tasks whose graphs take named inputs rather than one float image batch (training/text_search/export.py)
NAMED_INPUTS = {
    "text_embedding": {"input_ids": ("tensor(int64)", 2), "attention_mask": ("tensor(int64)", 2)},
    "change_embedding": {"before": ("tensor(float)", 4), "after": ("tensor(float)", 4)},
}


class Model:
    """An ONNX model with a validated contract, ready to run batches of normalised tiles."""

    def __init__(self, path: str | Path, device: str = "auto", spin: bool = True):
        """``spin=False`` stops onnxruntime's threads from spinning after each run, as they do by
        default: right for a model run once between other numpy work (a search query, which the
        spinning slowed from 1 to 36 ms on 2 cores, bench/search.py), wrong for batches run back
        to back (the spinning doubles tile throughput, bench/throughput.py)."""
        self.path = str(shipped_or_given(path))
        if device not in DEVICES:
            raise EngineError(f"device must be one of {DEVICES}, got {device!r}")
        if not Path(self.path).is_file():
            raise EngineError(f"model file {self.path} does not exist")
        self.session = self._create_session(device, spin)
        self.provider = self.session.get_providers()[0]
        self.contract = contract_from_metadata(
            self.session.get_modelmeta().custom_metadata_map, Path(self.path).name
        )
        self._check_graph()
        self.input_names = [i.name for i in self.session.get_inputs()]

    def _create_session(self, device: str, spin: bool) -> ort.InferenceSession:
        want_cuda = device in ("auto", "cuda") and CUDA in ort.get_available_providers()
        if device == "cuda" and not want_cuda:
            raise EngineError(
                "device 'cuda' was requested but this onnxruntime has no CUDA provider "
                f"(available: {ort.get_available_providers()}); install onnxruntime-gpu or use device 'auto'"
            )
        providers = [CUDA, CPU] if want_cuda else [CPU]
        ort.set_default_logger_severity(4)  # a CUDA fallback is reported by us (self.provider), not dumped
        try:
            options = ort.SessionOptions()
            if not spin:
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            session = ort.InferenceSession(self.path, sess_options=options, providers=providers)
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
        if contract.modalities:  # per modality m: m [N, T, C, H, W], m_doy [N, T], m_mask [N, T, H, W]
            self._check_named_inputs(inputs, {
                name: kind for m in contract.modalities for name, kind in (
                    (m.name, ("tensor(float)", 5)), (f"{m.name}_doy", ("tensor(int64)", 2)),
                    (f"{m.name}_mask", ("tensor(float)", 4)))
            }, f"the contract's modality list ({', '.join(m.name for m in contract.modalities)})")
            return
        if contract.task in NAMED_INPUTS:
            self._check_named_inputs(inputs, NAMED_INPUTS[contract.task], f"a {contract.task!r} model")
            self._check_output(outputs, 2 if contract.task == "text_embedding" else 4)
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
        self._check_output(outputs, 4)

    def _check_output(self, outputs, rank: int) -> None:
        contract = self.contract
        out_shape = outputs[0].shape
        channels = contract.provenance.get("dim") if contract.outputs.kind == "embedding" else contract.outputs.channels
        if len(out_shape) != rank or (isinstance(out_shape[1], int) and out_shape[1] != channels):
            layout = "[batch, channels]" if rank == 2 else "[batch, channels, height, width]"
            raise ModelContractError(
                f"{self.path}: model output {out_shape} does not match the contract's "
                f"{channels} output channel(s) {layout}"
            )

    def _check_named_inputs(self, inputs, expected: dict[str, tuple[str, int]], needed_by: str) -> None:
        found = {i.name: i for i in inputs}
        for name, (kind, rank) in expected.items():
            if name not in found or found[name].type != kind or len(found[name].shape) != rank:
                raise ModelContractError(
                    f"{self.path}: {needed_by} needs an input {name!r} of {kind} with {rank} dimensions; "
                    "the graph has " + ", ".join(f"{i.name} {i.type} {i.shape}" for i in inputs)
                )

    def run(self, batch: np.ndarray | dict[str, np.ndarray]) -> np.ndarray:
        """Run a normalised float32 batch [N, bands, H, W] (or the named inputs of a multi-input
        model) -> [N, channels, H, W]."""
        feeds = batch if isinstance(batch, dict) else {self.input_names[0]: batch}
        return self.session.run(None, feeds)[0]


def shipped_or_given(path: str | Path) -> Path:
    """``path``, or the shipped model of that file name when ``path`` is a bare name that is not a
    file here (``model="search_image_ms.onnx"`` works from any folder)."""
    path = Path(path)
    if not path.is_file() and path.name == str(path) and (MODELS_DIR / path).is_file():
        return MODELS_DIR / path
    return path


_SHARED: dict[tuple, tuple[int | None, Model]] = {}


def shared_model(path: str | Path, device: str = "auto", spin: bool = True) -> Model:
    """A Model kept for the life of the process (a worker serving the search dock answers each query
    without loading the encoders again); reloaded when the file changes."""
    path = shipped_or_given(path)
    key = (str(path.resolve()), device, spin)
    stamp = path.stat().st_mtime_ns if path.is_file() else None
    if key not in _SHARED or _SHARED[key][0] != stamp:
        _SHARED[key] = (stamp, Model(path, device, spin))
    return _SHARED[key][1]

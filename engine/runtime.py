"""onnxruntime sessions: load a model, validate its contract and graph, pick the device.

``device="auto"`` uses CUDA when onnxruntime can really run on it (the CUDA provider is listed AND
the session ends up on it: onnxruntime-gpu lists CUDA on machines without a GPU and then silently
falls back), else the CPU. ``device="cuda"`` fails clearly when CUDA is not usable.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
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


def softmax(scores: np.ndarray) -> np.ndarray:
    """Softmax over the channels (axis 1) of [N, channels, ...] logits."""
    exp = np.exp(scores - scores.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def sigmoid(scores: np.ndarray) -> np.ndarray:
    """Logistic function, written with tanh so that large logits do not overflow."""
    return 0.5 * (1.0 + np.tanh(0.5 * scores))


ACTIVATION_FUNCTIONS = {"none": lambda scores: scores, "softmax": softmax, "sigmoid": sigmoid}


def static(dimension) -> int | None:
    """A graph dimension fixed in the ONNX file (None for a named or unknown one)."""
    return dimension if isinstance(dimension, int) and dimension > 0 else None


class Model:
    """An ONNX model with a validated contract, ready to run batches of normalised tiles."""

    def __init__(self, path: str | Path, device: str = "auto", spin: bool = True,
                 contract: Callable[[Model], ModelContract] | None = None):
        """``spin=False`` stops onnxruntime's threads from spinning after each run, as they do by
        default: right for a model run once between other numpy work (a search query, which the
        spinning slowed from 1 to 36 ms on 2 cores, bench/search.py), wrong for batches run back
        to back (the spinning doubles tile throughput, bench/throughput.py).

        ``contract``: makes the contract from the loaded model (``metadata`` and ``session``)
        instead of reading it from the metadata alone (``run_onnx``'s options complete or
        override it); the graph is checked against the result either way."""
        self.path = str(shipped_or_given(path))
        if device not in DEVICES:
            raise EngineError(f"device must be one of {DEVICES}, got {device!r}")
        if not Path(self.path).is_file():
            raise EngineError(f"model file {self.path} does not exist")
        self.session = self._create_session(device, spin)
        self.provider = self.session.get_providers()[0]
        self.metadata: dict[str, str] = self.session.get_modelmeta().custom_metadata_map
        self.contract = (contract(self) if contract else contract_from_metadata(self.metadata, self.name))
        self._check_graph()
        self.input_names = [i.name for i in self.session.get_inputs()]

    @property
    def name(self) -> str:
        return Path(self.path).name

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
                f"{str(err).splitlines()[0][:300].rstrip('.')}. Re-export it or choose another model file."
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
            shapes = {i.name: i.shape for i in inputs}
            for modality in contract.modalities:
                bands = static(shapes[modality.name][2])
                if bands and bands != len(modality.bands):
                    raise ModelContractError(
                        f"{self.path}: the graph takes {bands} {modality.name} bands but the contract lists "
                        f"{len(modality.bands)} ({', '.join(b.name for b in modality.bands)}); give the "
                        f"contract's modality {modality.name} the model's {bands} bands in its input order "
                        "(re-export the model with `python -m training export`)"
                    )
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
        batch, bands, height, width = (static(d) for d in shape)
        if bands and bands != len(contract.bands):
            raise ModelContractError(
                f"{self.path}: the graph takes {bands} bands but the contract lists "
                f"{len(contract.bands)} ({', '.join(contract.band_names)}); give the contract the "
                f"model's {bands} bands in its input order (`python -m engine contract set --bands`, "
                "or one mean and std per band in 'Run ONNX model')"
            )
        if height and width and height != width:
            raise ModelContractError(
                f"{self.path}: the graph takes fixed {height}x{width} px tiles; the engine feeds square "
                "tiles: export the model with a square or dynamic input size"
            )
        if (height or width) and (height or width) != contract.tile_size:
            fixed = height or width
            raise ModelContractError(
                f"{self.path}: the graph takes fixed {fixed}x{fixed} px tiles but the contract's tile "
                f"size is {contract.tile_size}; set the tile size to {fixed} (`python -m engine contract "
                f"set --tile-size {fixed}`, or the tile size option of 'Run ONNX model')"
            )
        if batch and batch != contract.batch_size:
            if batch != 1:
                raise ModelContractError(
                    f"{self.path}: the graph takes batches of exactly {batch} tiles; the engine feeds "
                    "up to the contract's batch_size: export the model with a dynamic batch axis"
                )
            self.contract = replace(contract, batch_size=1)  # one tile per run
        self._check_output(outputs, 4)

    def _check_output(self, outputs, rank: int) -> None:
        contract = self.contract
        out_shape = outputs[0].shape
        embedding = contract.outputs.kind == "embedding"
        channels = contract.provenance.get("dim") if embedding else contract.outputs.channels
        layout = "[batch, channels]" if rank == 2 else "[batch, channels, height, width]"
        if len(out_shape) != rank:
            raise ModelContractError(
                f"{self.path}: model output {out_shape} has {len(out_shape)} dimensions; a "
                f"{contract.task!r} model with {contract.outputs.kind} output must give {layout}: "
                "export the model with that output"
            )
        found = static(out_shape[1])
        if found and found != channels:
            names = "embedding dimensions" if embedding else {"classes": "class names"}.get(
                contract.outputs.kind, "output names")
            raise ModelContractError(
                f"{self.path}: the graph outputs {found} channels but the contract expects {channels} "
                f"({', '.join(contract.outputs.names[:8])}{', ...' if channels > 8 else ''}); give the "
                f"contract {found} {names} (`python -m engine contract set --classes ...`, or the "
                "classes option of 'Run ONNX model')"
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
        model) -> [N, channels, H, W]; class scores come out as probabilities (the contract's
        ``outputs.activation`` applied here, once for every task)."""
        feeds = batch if isinstance(batch, dict) else {self.input_names[0]: batch}
        try:
            scores = self.session.run(None, feeds)[0]
        except Exception as err:  # onnxruntime raises its own exception types (InvalidArgument, Fail, ...)
            fed = ", ".join(f"{name} {list(np.shape(value))}" for name, value in feeds.items())
            expected = ", ".join(f"{i.name} {i.shape}" for i in self.session.get_inputs())
            reason = " ".join(str(err).split())[:400]
            raise EngineError(
                f"model {self.name} failed on the tiles fed ({fed}); its graph takes {expected} "
                f"(onnxruntime: {reason}). Check the model's tile size and band count, in its contract "
                "or in the options of 'Run ONNX model'."
            ) from None
        return ACTIVATION_FUNCTIONS[self.contract.outputs.activation](scores)


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

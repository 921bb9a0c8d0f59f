"""onnxruntime sessions: load a model, validate its contract and graph, pick the device.

``device="auto"`` uses CUDA when onnxruntime can really run on it (the CUDA provider is listed AND
the session ends up on it: onnxruntime-gpu lists CUDA on machines without a GPU and then silently
falls back), else DirectML or CoreML where the installed onnxruntime has them (onnxruntime-directml
on Windows, onnxruntime on macOS; they run what they support and leave the rest to the CPU), else the
CPU. ``device="cuda"`` fails clearly when CUDA is not usable.

On CUDA a model runs its fp16 variant when one sits beside it (``m.fp16.onnx``, written by
``python -m training export --fp16``, engine/contract.py ``fp16_variant_path``) and was made from its
graph and weights; batches go through IO binding with pinned host buffers (``DeviceBatches``), and
``Model.submit`` lets the caller prepare the next batch while the device runs the current one.
"""
from __future__ import annotations

import json
import os
import threading
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable
from concurrent import futures
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort

from engine.contract import FP16_KEY, ModelContract, contract_from_metadata, fp16_variant_path
from engine.errors import EngineError, ModelContractError
from engine.onnx_metadata import graph_sha256

DEVICES = ("auto", "cpu", "cuda")
MODELS_DIR = Path(__file__).resolve().parents[1] / "models_onnx"  # the shipped models
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
OTHER_ACCELERATORS = ("DmlExecutionProvider", "CoreMLExecutionProvider")  # device "auto" without CUDA
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
                 contract: Callable[[Model], ModelContract] | None = None, threads: int | None = None):
        """``spin=False`` stops onnxruntime's threads from spinning after each run, as they do by
        default: right for a model run once between other numpy work (a search query, which the
        spinning slowed from 1 to 36 ms on 2 cores, bench/search.py), wrong for batches run back
        to back (the spinning doubles tile throughput, bench/throughput.py).

        ``contract``: makes the contract from the loaded model (``metadata`` and ``session``)
        instead of reading it from the metadata alone (``run_onnx``'s options complete or
        override it); the graph is checked against the result either way.

        ``threads``: onnxruntime's intra-op threads (default: its own choice, one per physical core);
        engine/tile_plan.py tunes it per model and device."""
        self.path = str(shipped_or_given(path))
        if device not in DEVICES:
            raise EngineError(f"device must be one of {DEVICES}, got {device!r}")
        if not Path(self.path).is_file():
            raise EngineError(f"model file {self.path} does not exist")
        self.session = self._create_session(device, spin, threads)
        self.provider = self.session.get_providers()[0]
        self.metadata: dict[str, str] = self.session.get_modelmeta().custom_metadata_map
        self.contract = (contract(self) if contract else contract_from_metadata(self.metadata, self.name))
        self._check_graph()
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.graph_path, self.precision = self.path, "float32"  # the file that runs: this one, or its fp16 variant
        if self.provider == CUDA:
            self._use_fp16_variant(spin, threads)
        # CUDA: IO binding with pinned buffers; the CPU provider: plain session.run (DeviceBatches says why)
        self.device_batches = DeviceBatches(self.session, "cuda") if self.provider == CUDA else None
        self._runner: futures.ThreadPoolExecutor | None = None  # the thread that runs submitted batches
        self._submit_lock = threading.Lock()
        self._in_flight: list[futures.Future | None] = [None] * DeviceBatches.SLOTS
        self._submitted = 0

    @property
    def name(self) -> str:
        return Path(self.path).name

    def _create_session(self, device: str, spin: bool, threads: int | None) -> ort.InferenceSession:
        want_cuda = device in ("auto", "cuda") and CUDA in ort.get_available_providers()
        if device == "cuda" and not want_cuda:
            raise EngineError(
                "device 'cuda' was requested but this onnxruntime has no CUDA provider "
                f"(available: {ort.get_available_providers()}); install onnxruntime-gpu or use device 'auto'"
            )
        accelerators = [CUDA] if want_cuda else [p for p in OTHER_ACCELERATORS if p in ort.get_available_providers()
                                                  and device == "auto"]
        session = open_session(self.path, [*accelerators, CPU], spin, threads)
        if device == "cuda" and session.get_providers()[0] != CUDA:
            raise EngineError(
                "device 'cuda' was requested but the CUDA provider could not start (no GPU or CUDA "
                "libraries missing); use device 'auto' or 'cpu'"
            )
        return session

    def _use_fp16_variant(self, spin: bool, threads: int | None) -> None:
        """Run the fp16 variant beside the model instead, when there is one that fits (on CUDA only: the
        CPU provider has float16 kernels for few operators and runs the rest through casts)."""
        variant = fp16_variant_path(self.path)
        if not variant.is_file():
            return
        session = open_session(str(variant), [CUDA, CPU], spin, threads)
        problem = fp16_variant_problem(self.path, self.session, session)
        if problem is None and session.get_providers()[0] != CUDA:
            problem = "did not start on the CUDA provider"
        if problem:
            warnings.warn(f"{variant.name} {problem}; running the float32 model {self.name}. Export the variant "
                          "again (`python -m training export --fp16`) or delete it.", stacklevel=3)
            return
        self.session, self.graph_path, self.precision = session, str(variant), "float16"

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
        if (height or width) and contract.fully_convolutional:
            raise ModelContractError(
                f"{self.path}: the contract declares the model fully convolutional but its graph takes fixed "
                f"{height or '?'}x{width or '?'} px tiles: export it with dynamic height and width "
                "(`python -m training export` does), or remove the contract's fully_convolutional record"
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
        if self.device_batches is None:
            return self._run_plain(self._feeds(batch))
        return self.submit(batch).result()

    def submit(self, batch: np.ndarray | dict[str, np.ndarray]) -> futures.Future:
        """Start ``batch`` and return at once: ``.result()`` is what ``run`` returns. Batches run one
        at a time, in the order submitted, on one thread of the model's; submitting batch k+1 before
        taking batch k's result keeps the device busy while the caller reads and normalises the next
        tiles. On CUDA the batch is first copied into pinned buffers (two sets, so that one fills while
        the other's batch runs: a third submit waits for the first batch to finish); on the CPU it is
        read in place: leave it unchanged until the result, and keep few batches in flight. Overlap on
        CUDA only (``device_batches`` is set): the CPU provider already runs on every core, and decoding
        beside it took 1.09x the slower of the two on 2 cores (1.27x under load; bench/throughput.py
        --device cuda where CUDA is absent), a loss, not a gain."""
        feeds = self._feeds(batch)
        with self._submit_lock:
            if self._runner is None:
                self._runner = futures.ThreadPoolExecutor(1, thread_name_prefix=f"rsai-{self.name}")
                weakref.finalize(self, self._runner.shutdown, wait=False)
            if self.device_batches is None:
                return self._runner.submit(self._run_plain, feeds)
            slot = self._submitted % DeviceBatches.SLOTS
            self._submitted += 1
            if self._in_flight[slot] is not None:
                futures.wait([self._in_flight[slot]])  # its buffers are refilled now
            staged = self.device_batches.stage(feeds, slot)
            self._in_flight[slot] = self._runner.submit(self._run_bound, feeds, staged)
            return self._in_flight[slot]

    def _feeds(self, batch: np.ndarray | dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return batch if isinstance(batch, dict) else {self.input_names[0]: batch}

    def _run_plain(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        try:
            scores = self.session.run(None, feeds)[0]
        except Exception as err:  # onnxruntime raises its own exception types (InvalidArgument, Fail, ...)
            raise self._failure(feeds, err) from None
        return ACTIVATION_FUNCTIONS[self.contract.outputs.activation](scores)

    def _run_bound(self, feeds: dict[str, np.ndarray], staged: dict[str, ort.OrtValue]) -> np.ndarray:
        try:
            scores = self.device_batches.run(staged)
        except Exception as err:  # onnxruntime raises its own exception types (InvalidArgument, Fail, ...)
            raise self._failure(feeds, err) from None
        return ACTIVATION_FUNCTIONS[self.contract.outputs.activation](scores)

    def _failure(self, feeds: dict[str, np.ndarray], err: Exception) -> EngineError:
        fed = ", ".join(f"{name} {list(np.shape(value))}" for name, value in feeds.items())
        expected = ", ".join(f"{i.name} {i.shape}" for i in self.session.get_inputs())
        reason = " ".join(str(err).split())[:400]
        return EngineError(
            f"model {self.name} failed on the tiles fed ({fed}); its graph takes {expected} "
            f"(onnxruntime: {reason}). Check the model's tile size and band count, in its contract "
            "or in the options of 'Run ONNX model'."
        )


class DeviceBatches:
    """Batches run through onnxruntime IO binding: each input is copied into a host buffer that is
    reused from batch to batch (page-locked "pinned" memory on CUDA, from which the copy to the device
    is a direct DMA, where onnxruntime's CUDA provider offers it; ``host_memory`` says which), the
    output is bound on the device and copied back once per batch.

    Used on CUDA only. On the CPU provider, IO binding with preallocated OrtValues gave the same
    results bit for bit and no measurable gain over plain ``session.run`` (which already reads a
    numpy input in place): bathymetry_s2_sim on 2 cores, 6 batches of 8 x 128 px, 0.1615-0.1651 s
    bound vs 0.1593-0.1646 s plain in three rounds, and bound / plain 1.004 over a 1024 px scene
    (``bench/throughput.py --device cuda`` prints that ratio where CUDA is absent), so the CPU keeps
    ``session.run``. ``device="cpu"`` is there to run this same path on the CPU provider (tests, bench).
    """

    SLOTS = 2  # buffer sets: one is filled while the batch staged in the other runs
    SHAPES = 4  # input shapes whose buffers are kept (full batches, the last short one, edge tiles)

    def __init__(self, session: ort.InferenceSession, device: str):
        self.session, self.device = session, device
        self.binding = session.io_binding()
        self.output_name = session.get_outputs()[0].name
        self.pinned = pinned_host_memory() if device == "cuda" else None
        self.host_memory = "pinned" if self.pinned is not None else "pageable"
        self.pinned_used = False  # whether any batch was staged in pinned memory
        self._buffers: OrderedDict[tuple, ort.OrtValue] = OrderedDict()
        self._lock = threading.RLock()  # stage (the caller's thread) vs giving pinned memory up (the runner's)

    def stage(self, feeds: dict[str, np.ndarray], slot: int) -> dict[str, ort.OrtValue]:
        """Copy ``feeds`` into the buffers of ``slot`` (no batch staged there may still be running)."""
        staged = {}
        with self._lock:
            for name, value in feeds.items():
                key = (slot, name, value.shape, value.dtype.str)
                buffer = self._buffers.pop(key, None)
                if buffer is None:
                    buffer = self._host_buffer(value.shape, value.dtype)
                self._buffers[key] = buffer  # most recently used last
                buffer.update_inplace(value)
                staged[name] = buffer
            while len(self._buffers) > self.SLOTS * self.SHAPES * len(feeds):
                self._buffers.popitem(last=False)
        return staged

    def run(self, staged: dict[str, ort.OrtValue]) -> np.ndarray:
        for name, value in staged.items():
            self.binding.bind_ortvalue_input(name, value)
        self.binding.bind_output(self.output_name, self.device)
        try:
            self.session.run_with_iobinding(self.binding)
        except Exception as err:  # onnxruntime's own exception types
            if not self.pinned_used:
                raise
            # an onnxruntime that allocates pinned memory but does not take it as input: stop using it, and
            # run this batch from its buffers as numpy input (any other fault fails there again, and is reported)
            if self.pinned is not None:
                self._give_up_pinned(f"onnxruntime refused pinned input: {' '.join(str(err).split())[:120]}")
            return self.session.run([self.output_name], {name: value.numpy() for name, value in staged.items()})[0]
        return self.binding.copy_outputs_to_cpu()[0]

    def _host_buffer(self, shape: tuple[int, ...], dtype: np.dtype) -> ort.OrtValue:
        if self.pinned is not None:
            try:
                buffer = ort.OrtValue.ortvalue_from_shape_and_type(shape, dtype.type, memory_info=self.pinned)
                self.pinned_used = True
                return buffer
            except RuntimeError as err:  # no allocator registered for it: pageable memory still works
                self._give_up_pinned(f"pinned allocation failed: {str(err).splitlines()[0][:120]}")
        return ort.OrtValue.ortvalue_from_shape_and_type(shape, dtype.type)

    def _give_up_pinned(self, reason: str) -> None:
        """Stage in pageable buffers from now on; ``host_memory`` says why."""
        with self._lock:
            self.pinned = None
            self.host_memory = f"pageable ({reason})"
            self._buffers.clear()  # batches in flight keep theirs


def pinned_host_memory() -> ort.OrtMemoryInfo | None:
    """The CUDA provider's page-locked host memory, from its device entry (onnxruntime registers the
    bundled CUDA plugin provider and an allocator for each of its memories), or None without one."""
    for ep_device in ort.get_ep_devices():
        if ep_device.ep_name == CUDA:
            memory = ep_device.memory_info(ort.OrtDeviceMemoryType.HOST_ACCESSIBLE)
            if memory is not None:
                return memory
    return None


def thread_budget() -> int | None:
    """The CPU threads this process may use when whoever started it says so in ``OMP_NUM_THREADS``, as Ray
    does for each task (its CPUs) and job schedulers do; None when nothing is said. onnxruntime itself ignores
    the variable and starts a thread per physical core in every session: two 1-CPU Ray workers on 2 cores
    then ran the shipped bathymetry model at 21 tiles/s each, against 53 with one thread each."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def open_session(path: str, providers: list[str], spin: bool, threads: int | None = None) -> ort.InferenceSession:
    """An onnxruntime session on ``providers`` with ``threads`` intra-op threads (default onnxruntime's), at most
    the process's thread budget; a file onnxruntime cannot read is a clear EngineError."""
    ort.set_default_logger_severity(4)  # a CUDA fallback is reported by us (Model.provider), not dumped
    try:
        options = ort.SessionOptions()
        if not spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        budget = thread_budget()
        threads = min(threads, budget) if threads and budget else threads or budget
        if threads:
            options.intra_op_num_threads = threads
        return ort.InferenceSession(path, sess_options=options, providers=providers)
    except Exception as err:  # onnxruntime raises its own exception types for corrupt files
        raise EngineError(
            f"model file {path} is not a valid ONNX model (corrupt, truncated or not ONNX): "
            f"{str(err).splitlines()[0][:300].rstrip('.')}. Re-export it or choose another model file."
        ) from None
    finally:
        ort.set_default_logger_severity(2)


def fp16_variant_problem(model_path: str, model: ort.InferenceSession, variant: ort.InferenceSession) -> str | None:
    """Why ``variant`` may not stand in for the model at ``model_path`` (None when it may): it must
    have been made from this model's graph and weights (their SHA-256, recorded at export: a later
    change of the model's metadata or contract keeps the variant valid, as the engine reads the
    contract from the model itself) and take and give the same named float tensors."""
    record = json.loads(variant.get_modelmeta().custom_metadata_map.get(FP16_KEY, "{}"))
    if "source_graph_sha256" not in record:
        return f"has no {FP16_KEY!r} record of the model it was made from"
    if record["source_graph_sha256"] != graph_sha256(model_path):
        return "was made from other weights or another graph than the model's"

    def signature(session: ort.InferenceSession) -> list[tuple[str, str]]:
        return [(node.name, node.type) for node in (*session.get_inputs(), *session.get_outputs())]

    if signature(variant) != signature(model):
        return f"takes or gives other tensors ({signature(variant)}) than the model ({signature(model)})"
    return None


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

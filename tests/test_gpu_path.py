"""The GPU path of engine/runtime.py and the fp16 variant of training/marine/export.py, exercised on the CPU.

No CUDA device exists here: IO binding, the staged (pinned-buffer) batches and ``Model.submit`` run
through onnxruntime's CPU provider, which takes the same bindings; only the choice of the CUDA
provider itself cannot run.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest

from engine.contract import FP16_KEY, fp16_variant_path
from engine.errors import EngineError
from engine.model_catalogue import installed_models
from engine.onnx_metadata import write_metadata
from engine.runtime import CUDA, MODELS_DIR, DeviceBatches, Model, fp16_variant_problem
from training.fp16_variant import FP16_PARITY_TOLERANCE, write_fp16_variant
from training.simulation.shallow_water import simulate_scene

RNG = np.random.default_rng(5)


def batches(bands: int, *shapes: tuple[int, int, int]) -> list[np.ndarray]:
    return [RNG.standard_normal((count, bands, height, width)).astype(np.float32) for count, height, width in shapes]


@pytest.mark.parametrize("model_file", ["bathymetry_s2_sim.onnx", "seabed_s2_sim.onnx"])
def test_io_binding_gives_session_run_results_bit_for_bit(model_file):
    session = onnxruntime.InferenceSession(str(MODELS_DIR / model_file), providers=["CPUExecutionProvider"])
    bound = DeviceBatches(session, "cpu")
    # full batches, a short last batch and edge tiles, through both buffer sets, buffers reused
    for slot, batch in enumerate(batches(3, (8, 128, 128), (3, 128, 128), (8, 128, 128), (2, 96, 70), (8, 128, 128))):
        expected = session.run(None, {"image": batch})[0]
        staged = bound.stage({"image": batch}, slot % DeviceBatches.SLOTS)
        batch[:] = 0  # the staged copy is what runs, not the caller's array
        np.testing.assert_array_equal(bound.run(staged), expected)
    assert bound.host_memory == "pageable"  # the CPU provider has no pinned memory of its own


def test_without_a_pinned_allocator_the_buffers_are_pageable_and_say_why():
    session = onnxruntime.InferenceSession(str(MODELS_DIR / "bathymetry_s2_sim.onnx"),
                                           providers=["CPUExecutionProvider"])
    bound = DeviceBatches(session, "cpu")
    bound.pinned = onnxruntime.OrtMemoryInfo.create_v2(  # CUDA's page-locked host memory, as onnxruntime names it
        "CudaPinned", onnxruntime.OrtMemoryInfoDeviceType.GPU, 0x10DE, 0,
        onnxruntime.OrtDeviceMemoryType.HOST_ACCESSIBLE, 0, onnxruntime.OrtAllocatorType.ORT_DEVICE_ALLOCATOR)
    (batch,) = batches(3, (4, 64, 64))
    np.testing.assert_array_equal(bound.run(bound.stage({"image": batch}, 0)), session.run(None, {"image": batch})[0])
    if not any(device.ep_name == CUDA for device in onnxruntime.get_ep_devices()):  # no GPU: no such allocator
        assert bound.host_memory.startswith("pageable (pinned allocation failed: ") and bound.pinned is None
        assert not bound.pinned_used


def test_io_binding_of_a_two_input_model():
    session = onnxruntime.InferenceSession(str(MODELS_DIR / "search_change_rgb_gff.onnx"),
                                           providers=["CPUExecutionProvider"])
    shape = [2, 3] + [side if isinstance(side, int) else 64 for side in session.get_inputs()[0].shape[2:]]
    feeds = {node.name: RNG.standard_normal(shape).astype(np.float32) for node in session.get_inputs()}
    bound = DeviceBatches(session, "cpu")
    np.testing.assert_array_equal(bound.run(bound.stage(feeds, 0)), session.run(None, feeds)[0])


@pytest.mark.parametrize("bound", [False, True], ids=["session.run", "io-binding"])
def test_submitted_batches_come_back_in_order_with_run_results(bound):
    model = Model("seabed_s2_sim.onnx", "cpu")
    assert model.device_batches is None and model.precision == "float32"  # the CPU keeps session.run
    work = batches(3, (8, 64, 64), (8, 64, 64), (5, 64, 64), (8, 64, 64), (1, 64, 64))
    expected = [model.run(batch) for batch in work]
    if bound:  # the CUDA path's staging through two buffer sets, on the CPU provider
        model.device_batches = DeviceBatches(model.session, "cpu")
    pending = [model.submit(batch) for batch in work]  # all submitted before any result is taken
    for future, wanted in zip(pending, expected):
        np.testing.assert_array_equal(future.result(), wanted)
        np.testing.assert_allclose(wanted.sum(axis=1), 1.0, atol=1e-5)  # probabilities, as run gives them
    np.testing.assert_array_equal(model.run(work[2]), expected[2])


def test_a_failing_bound_batch_names_the_tiles_fed():
    model = Model("bathymetry_s2_sim.onnx", "cpu")
    model.device_batches = DeviceBatches(model.session, "cpu")
    with pytest.raises(EngineError, match=r"failed on the tiles fed \(image \[1, 5, 32, 32\]\).*band count"):
        model.submit(np.zeros((1, 5, 32, 32), np.float32)).result()


@pytest.fixture(scope="module")
def fp16_pair(tmp_path_factory):
    """A copy of the shipped bathymetry model and its fp16 variant, measured on simulated tiles."""
    folder = tmp_path_factory.mktemp("fp16")
    model = folder / "bathymetry.onnx"
    shutil.copy(MODELS_DIR / "bathymetry_s2_sim.onnx", model)
    contract = Model(model, "cpu").contract
    scene = simulate_scene(256, 256, seed=4).image.astype(np.float32)  # 128 px scenes: NaN fields
    tiles = np.stack([scene[:, row:row + 64, col:col + 64] for row in (0, 64) for col in (0, 64)])
    tiles = (tiles - np.reshape(contract.mean, (3, 1, 1))) / np.reshape(contract.std, (3, 1, 1))
    record = write_fp16_variant(model, {"image": tiles.astype(np.float32)}, "4 simulated tiles")
    return model, record, tiles.astype(np.float32)


def test_fp16_variant_is_float16_inside_float32_outside_with_its_parity(fp16_pair):
    model, record, tiles = fp16_pair
    variant = fp16_variant_path(model)
    assert record["path"] == str(variant) == str(model.parent / "bathymetry.fp16.onnx")
    graph = onnx.load(str(variant))
    weights = {onnx.helper.tensor_dtype_to_np_dtype(t.data_type) for t in graph.graph.initializer if len(t.dims) == 4}
    assert weights == {np.dtype(np.float16)}
    io_types = [node.type.tensor_type.elem_type for node in (*graph.graph.input, *graph.graph.output)]
    assert io_types == [onnx.TensorProto.FLOAT] * 2
    stored = json.loads({p.key: p.value for p in graph.metadata_props}[FP16_KEY])
    assert stored == {key: value for key, value in record.items() if key != "path"}
    # measured, not zero (it really is float16), and within the stated tolerance
    assert 0 < record["mean_abs_diff"] <= record["max_abs_diff"] <= FP16_PARITY_TOLERANCE
    fp32 = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    fp16 = onnxruntime.InferenceSession(str(variant), providers=["CPUExecutionProvider"])
    difference = np.abs(fp32.run(None, {"image": tiles})[0] - fp16.run(None, {"image": tiles})[0])
    assert difference.max() == pytest.approx(record["max_abs_diff"], rel=1e-6)
    assert Model(variant, "cpu").contract == Model(model, "cpu").contract  # the same contract, runnable alone


def test_the_engine_runs_float32_on_the_cpu_and_checks_the_variant_it_would_run_on_cuda(fp16_pair, tmp_path):
    model, _, _ = fp16_pair
    loaded = Model(model, "cpu")
    assert loaded.precision == "float32" and loaded.graph_path == str(model)
    automatic = Model(model, "auto")  # here onnxruntime-gpu lists CUDA, then falls back to the CPU
    expected = ("float16", str(fp16_variant_path(model))) if automatic.provider == CUDA else ("float32", str(model))
    assert (automatic.precision, automatic.graph_path) == expected
    assert (automatic.device_batches is not None) == (automatic.provider == CUDA)
    variant = onnxruntime.InferenceSession(str(fp16_variant_path(model)), providers=["CPUExecutionProvider"])
    assert fp16_variant_problem(str(model), loaded.session, variant) is None
    relabelled = tmp_path / "relabelled.onnx"  # new metadata, same graph: the variant still stands in
    write_metadata(model, {"note": "contract updated"}, relabelled, lambda written: Model(written, "cpu"))
    assert fp16_variant_problem(str(relabelled), loaded.session, variant) is None
    retrained = tmp_path / "retrained.onnx"  # other weights: it no longer does
    graph = onnx.load(str(model))
    weight = graph.graph.initializer[0]
    weight.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(weight) * 1.01, weight.name))
    onnx.save(graph, str(retrained))
    assert "other weights" in fp16_variant_problem(str(retrained), loaded.session, variant)
    other = onnxruntime.InferenceSession(str(MODELS_DIR / "search_image_rgb.onnx"), providers=["CPUExecutionProvider"])
    assert "no 'rsai_fp16' record" in fp16_variant_problem(str(model), loaded.session, other)


def test_the_variant_is_not_listed_as_a_model_of_its_own(fp16_pair, monkeypatch, tmp_path):
    model, _, _ = fp16_pair
    monkeypatch.setenv("RSAI_MODELS_DIR", str(tmp_path))
    for path in (model, fp16_variant_path(model)):
        shutil.copy(path, tmp_path / Path(path).name)
    user = [entry["path"] for entry in installed_models()["tasks"]["bathymetry"] if entry["origin"] == "user"]
    assert user == [str(tmp_path / "bathymetry.onnx")]

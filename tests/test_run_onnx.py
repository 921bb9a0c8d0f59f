"""Any ONNX model: run_onnx with and without a contract, activations, graph checks, Deepness
metadata, and `python -m engine contract set` (small graphs built here with onnx.helper)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import rasterio
from onnx import TensorProto, helper, numpy_helper

from engine.contract import contract_from_metadata
from engine.errors import EngineError, ModelContractError
from engine.onnx_metadata import with_metadata
from engine.output_files import PARTIAL_MARKER
from engine.runtime import Model
from engine.tasks import run_task
from raster_fixtures import contract, scene, write_raster

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = np.array([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0], [-1.0, 0.0, 1.0]])  # 3 logits from 3 bands
BIAS = np.array([0.5, -0.5, 0.0])
SCALE, MEAN, STD = 1000.0, 0.5, 0.25  # normalised = (raw / 1000 - 0.5) / 0.25


def run(task, **params):
    return run_task(task, params, lambda fraction, message: None, lambda: False)


def conv_graph(path, weights=WEIGHTS, bias=BIAS, size=("height", "width"), metadata=None, extra=None):
    """A 1x1 convolution [N, bands, H, W] -> [N, channels, H, W] giving logits (no activation);
    ``size`` fixes H and W when ints; ``extra`` adds a constant of shape [1, channels, *extra]
    to the output, which makes onnxruntime fail on tiles of another size."""
    channels, bands = weights.shape
    nodes = [helper.make_node("Conv", ["image", "weight", "bias"], ["logits" if extra else "scores"])]
    initializers = [numpy_helper.from_array(weights.reshape(channels, bands, 1, 1).astype(np.float32), "weight"),
                    numpy_helper.from_array(bias.astype(np.float32), "bias")]
    if extra:
        initializers.append(numpy_helper.from_array(np.zeros((1, channels, *extra), np.float32), "constant"))
        nodes.append(helper.make_node("Add", ["logits", "constant"], ["scores"]))
    graph = helper.make_graph(
        nodes, "conv",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", bands, *size])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", channels, *size])],
        initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, metadata or {})
    onnx.save(model, path)
    return str(path)


def logits_of(data: np.ndarray) -> np.ndarray:
    normalised = (data / SCALE - MEAN) / STD
    return np.tensordot(WEIGHTS, normalised, axes=1) + BIAS[:, None, None]


def options(**overrides):
    return {"scale": SCALE, "mean": [MEAN], "std": [STD], "tile_size": 32, "overlap": 8, **overrides}


@pytest.fixture
def image(tmp_path):
    return write_raster(tmp_path / "in.tif", scene(height=70, width=90, seed=4))


def read(path):
    with rasterio.open(path) as dataset:
        return dataset.read()


# --- activations: class scores always reach tasks as probabilities --------------------------------

def test_logits_get_softmax_and_give_the_class_map(tmp_path, image):
    model = conv_graph(tmp_path / "logits.onnx")
    result = run("run_onnx", input=image, output=str(tmp_path / "c.tif"), model=model,
                 probabilities=str(tmp_path / "p.tif"), output_kind="classes", activation="softmax",
                 classes=["water:#1f78b4", "land:#33a02c", "cloud:#ffffff"], **options())
    logits = logits_of(read(image).astype(np.float64))
    softmax = np.exp(logits - logits.max(0)) / np.exp(logits - logits.max(0)).sum(0)
    np.testing.assert_allclose(read(tmp_path / "p.tif"), softmax, atol=1e-5)
    top_two = np.sort(logits, axis=0)[-2:]
    clear = top_two[1] - top_two[0] > 1e-4  # integer inputs give exact ties, decided by rounding
    assert (read(tmp_path / "c.tif")[0] == logits.argmax(0))[clear].all() and clear.mean() > 0.9
    assert result["names"] == ["water", "land", "cloud"] and result["colors"][1] == "#33a02c"
    with rasterio.open(tmp_path / "c.tif") as classes:
        assert classes.colormap(1)[0] == (0x1f, 0x78, 0xb4, 255) and classes.tags()["class_2"] == "cloud"


def test_multi_label_logits_get_a_sigmoid_per_class(tmp_path, image):
    model = conv_graph(tmp_path / "labels.onnx")
    run("run_onnx", input=image, output=str(tmp_path / "c.tif"), model=model, probabilities=str(tmp_path / "p.tif"),
        output_kind="classes", activation="sigmoid", **options())
    probabilities = read(tmp_path / "p.tif")
    np.testing.assert_allclose(probabilities, 1 / (1 + np.exp(-logits_of(read(image).astype(np.float64)))),
                               atol=1e-5)
    assert probabilities.sum(0).max() > 1.2  # independent labels, not a distribution


def test_a_contract_without_activation_keeps_the_graphs_probabilities(tmp_path):
    old = json.loads(contract(kind="classes", channels=3).to_json())
    del old["outputs"]["activation"]  # contracts written before the field existed
    assert contract_from_metadata({"rsai_contract": json.dumps(old)}, "old.onnx").outputs.activation == "none"
    with pytest.raises(ModelContractError, match="applies to class scores only"):
        run("run_onnx", input="unused.tif", output="unused.tif", model=conv_graph(tmp_path / "m.onnx"),
            output_kind="regression", activation="softmax", **options())


# --- models without a contract: options and the graph ---------------------------------------------

def test_a_model_without_contract_or_options_names_the_options_to_give(tmp_path, image):
    model = conv_graph(tmp_path / "bare.onnx")
    with pytest.raises(ModelContractError) as error:
        run("run_onnx", input=image, output=str(tmp_path / "o.tif"), model=model)
    message = str(error.value)
    assert "has no model contract" in message and "output kind" in message and "tile size" in message
    assert "scale, mean, std" in message
    assert not (tmp_path / "o.tif").exists()


def test_regression_and_embedding_outputs_have_one_float_band_per_channel(tmp_path, image):
    model = conv_graph(tmp_path / "values.onnx")
    expected = logits_of(read(image).astype(np.float64))
    for kind in ("regression", "embedding"):
        output = tmp_path / f"{kind}.tif"
        result = run("run_onnx", input=image, output=str(output), model=model, output_kind=kind, **options())
        with rasterio.open(output) as values:
            assert values.count == 3 and values.dtypes[0] == "float32" and values.nodata == -9999.0
            np.testing.assert_allclose(values.read(), expected, atol=1e-4)
        assert result["kind"] == kind and len(result["names"]) == 3  # names from the graph's 3 channels


def test_a_deepness_model_runs_with_its_metadata_and_options_override_it(tmp_path):
    deepness = {"model_type": '"Segmentor"', "class_names": '{"0": "a", "1": "b", "2": "c"}',
                "tiles_size": "32", "standardization_mean": "[0.5, 0.5, 0.5]",
                "standardization_std": "[0.25, 0.25, 0.25]"}
    model = conv_graph(tmp_path / "deepness.onnx", metadata=deepness)
    data = scene(height=40, width=50, seed=2, dtype="uint8")
    image = write_raster(tmp_path / "in.tif", data)
    run("run_onnx", input=image, output=str(tmp_path / "c.tif"), model=model, probabilities=str(tmp_path / "p.tif"))
    logits = np.tensordot(WEIGHTS, (data / 255.0 - 0.5) / 0.25, axes=1) + BIAS[:, None, None]
    np.testing.assert_allclose(read(tmp_path / "p.tif"), logits, atol=1e-4)  # Deepness: probabilities as given
    run("run_onnx", input=image, output=str(tmp_path / "s.tif"), model=model, probabilities=str(tmp_path / "q.tif"),
        activation="softmax")
    np.testing.assert_allclose(read(tmp_path / "q.tif").sum(0), 1.0, atol=1e-5)


# --- graph checks ----------------------------------------------------------------------------------

def test_a_fixed_size_graph_refuses_another_tile_size(tmp_path, image):
    model = conv_graph(tmp_path / "fixed.onnx", size=(64, 64))
    with pytest.raises(ModelContractError,
                       match=r"fixed 64x64 px tiles but the contract's tile size is 32; set the tile size to 64"):
        run("run_onnx", input=image, output=str(tmp_path / "o.tif"), model=model, output_kind="classes", **options())
    result = run("run_onnx", input=image, output=str(tmp_path / "o.tif"), model=model, output_kind="classes",
                 **options(tile_size=None, overlap=None))  # the graph's size, 15% overlap
    assert result["tiles"] == 4


def test_channel_counts_must_match_the_graph(tmp_path, image):
    model = conv_graph(tmp_path / "m.onnx", weights=np.ones((3, 4)))  # the graph takes 4 bands
    with pytest.raises(ModelContractError, match=r"graph takes 4 bands but the contract lists 3 .*--bands"):
        run("run_onnx", input=image, output=str(tmp_path / "o.tif"), model=model, output_kind="classes",
            **options(mean=[0.1, 0.2, 0.3]))
    with pytest.raises(ModelContractError, match=r"graph outputs 3 channels but the contract expects 2 "
                                                 r"\(sea, land\); give the contract 3 class names"):
        run("run_onnx", input=image, output=str(tmp_path / "o.tif"), model=conv_graph(tmp_path / "n.onnx"),
            output_kind="classes", classes=["sea", "land"], **options())


def test_an_onnxruntime_failure_names_the_model_and_the_shapes(tmp_path, image):
    model = conv_graph(tmp_path / "sized.onnx", extra=(16, 16))  # dynamic input, but only 16x16 tiles add up
    with pytest.raises(EngineError, match=r"model sized.onnx failed on the tiles fed \(image \[4, 3, 32, 32\]\); "
                                          r"its graph takes image \['batch', 3, 'height', 'width'\]") as error:
        run("run_onnx", input=image, output=str(tmp_path / "o.tif"), model=model, output_kind="classes", **options())
    assert "tile size" in str(error.value) and not (tmp_path / "o.tif").exists()


def test_a_model_of_several_inputs_is_sent_to_its_own_algorithm(tmp_path, image):
    with pytest.raises(ModelContractError, match=r"takes several inputs \(change_embedding\); run_onnx runs models "
                                                 r"of one image input"):
        run("run_onnx", input=image, output=str(tmp_path / "o.tif"), model="search_change_rgb_gff.onnx")


# --- Deepness metadata ------------------------------------------------------------------------------

DEEPNESS = {"model_type": '"Segmentor"', "class_names": '{"0": "water", "1": "land"}'}


@pytest.mark.parametrize("key, value, expected", [
    ("model_type", "Segmentor", r'"Segmentor" or "Regressor"'),  # not JSON: no quotes
    ("class_names", '{"0": "water", "1": ', "JSON object of class index to name"),  # truncated JSON
    ("class_names", "7", "JSON object of class index to name"),
    ("class_names", '{"first": "water"}', "indexes 0, 1"),
    ("class_names", '{"0": "water", "2": "land"}', "indexes 0, 1"),
    ("class_names", '[{"0": "a"}, {"0": "b"}]', "one output head"),
    ("standardization_mean", '"0.5"', "JSON list of numbers"),
    ("standardization_std", '[0.2, "x", 0.2]', "JSON list of numbers"),
    ("tiles_size", "12.5", "whole number"),
    ("resolution", "[50]", "centimetres per pixel"),
])
def test_malformed_deepness_metadata_is_a_contract_error(key, value, expected):
    with pytest.raises(ModelContractError, match=rf"deep.onnx: Deepness metadata '{key}' is .*expected .*{expected}"):
        contract_from_metadata({**DEEPNESS, key: value}, "deep.onnx")


def test_deepness_segmentors_give_probabilities_and_regressors_their_scaling():
    segmentor = contract_from_metadata({**DEEPNESS, "class_names": '[{"0": "water", "1": "land"}]'}, "d.onnx")
    assert segmentor.outputs.names == ("water", "land") and segmentor.outputs.activation == "none"
    regressor = contract_from_metadata({"model_type": '"Regressor"', "reg_output_scaling": "100"}, "r.onnx")
    assert regressor.outputs.kind == "regression" and regressor.outputs.scale == 100.0


# --- contract set -----------------------------------------------------------------------------------

def engine_cli(*args):
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


CONTRACT_ARGS = ("--bands", "B02", "B03", "B04", "--scale", "1000", "--mean", "0.5", "--std", "0.25",
                 "--tile-size", "32", "--overlap", "8", "--classes", "water:#1f78b4", "land:#33a02c",
                 "cloud:#ffffff", "--output-kind", "classes", "--activation", "softmax")


def test_contract_set_writes_a_contract_the_engine_runs_by(tmp_path, image):
    bare = conv_graph(tmp_path / "bare.onnx")
    before = Path(bare).read_bytes()
    written = engine_cli("contract", "set", "--model", bare, "--out", str(tmp_path / "with.onnx"), *CONTRACT_ARGS)
    assert written.returncode == 0, written.stderr
    assert Path(bare).read_bytes() == before  # --out leaves the model untouched
    model = Model(tmp_path / "with.onnx", "cpu")
    assert model.contract.band_names == ["B02", "B03", "B04"] and model.contract.mean == (500.0,) * 3
    assert model.contract.outputs.activation == "softmax" and model.contract.tile_size == 32
    assert onnx.load(tmp_path / "with.onnx").graph == onnx.load(bare).graph
    run("run_onnx", input=image, output=str(tmp_path / "by_contract.tif"), model=str(tmp_path / "with.onnx"),
        probabilities=str(tmp_path / "p1.tif"))
    run("run_onnx", input=image, output=str(tmp_path / "by_options.tif"), model=bare,
        probabilities=str(tmp_path / "p2.tif"), output_kind="classes", activation="softmax", **options())
    np.testing.assert_array_equal(read(tmp_path / "p1.tif"), read(tmp_path / "p2.tif"))

    changed = engine_cli("contract", "set", "--model", str(tmp_path / "with.onnx"), "--tile-size", "48")  # in place
    assert changed.returncode == 0, changed.stderr
    props = [p.key for p in onnx.load(tmp_path / "with.onnx").metadata_props]
    assert props.count("rsai_contract") == 1
    shown = json.loads(engine_cli("contract", "show", "--model", str(tmp_path / "with.onnx")).stdout)["contract"]
    assert shown["tile_size"] == 48 and shown["overlap"] == 7
    assert shown["outputs"]["names"] == ["water", "land", "cloud"]


def test_a_contract_that_does_not_fit_the_graph_writes_nothing(tmp_path):
    fixed = conv_graph(tmp_path / "fixed.onnx", size=(64, 64))
    before = Path(fixed).read_bytes()
    refused = engine_cli("contract", "set", "--model", fixed, "--out", str(tmp_path / "out.onnx"), *CONTRACT_ARGS)
    assert refused.returncode == 2 and "set the tile size to 64" in refused.stderr
    in_place = engine_cli("contract", "set", "--model", fixed, *CONTRACT_ARGS)
    assert in_place.returncode == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fixed.onnx"] and Path(fixed).read_bytes() == before
    assert not any(PARTIAL_MARKER in p.name for p in tmp_path.iterdir())


def test_metadata_entries_are_replaced_not_repeated_and_non_onnx_is_refused(tmp_path):
    model = onnx.load(conv_graph(tmp_path / "m.onnx", metadata={"keep": "1", "rsai_contract": "old"}))
    data = with_metadata(with_metadata(model.SerializeToString(), {"rsai_contract": "new"}), {"extra": "é"})
    props = [(p.key, p.value) for p in onnx.load_from_string(data).metadata_props]
    assert sorted(props) == [("extra", "é"), ("keep", "1"), ("rsai_contract", "new")]
    (tmp_path / "notes.onnx").write_bytes(b"\xff\xff\xff\xff")
    refused = engine_cli("contract", "set", "--model", str(tmp_path / "notes.onnx"), *CONTRACT_ARGS)
    assert refused.returncode == 2 and "not a valid ONNX model" in refused.stderr


# --- the Processing algorithm ------------------------------------------------------------------------

def test_run_onnx_model_loads_its_outputs_styled_by_the_options(rsai_provider, tmp_path, image):
    import processing
    from qgis.core import QgsProject

    model = conv_graph(tmp_path / "logits.onnx")
    common = {"INPUT": image, "MODEL": model, "SCALE": SCALE, "MEAN": str(MEAN), "STD": f"{STD}, {STD};{STD}",
              "TILE_SIZE": 32, "OVERLAP": 8}
    classes, values = tmp_path / "classes.tif", tmp_path / "values.tif"
    processing.runAndLoadResults("rsai:run_onnx_model", {
        **common, "OUTPUT": str(classes), "OUTPUT_KIND": 1, "ACTIVATION": 2,
        "CLASSES": "water:#1f78b4, land:#33a02c, cloud:#ffffff"})
    processing.runAndLoadResults("rsai:run_onnx_model", {**common, "OUTPUT": str(values), "OUTPUT_KIND": 2})
    loaded = {Path(layer.source()): layer for layer in QgsProject.instance().mapLayers().values()}
    try:
        assert [(c.value, c.label, c.color.name()) for c in loaded[classes].renderer().classes()] == [
            (0, "water", "#1f78b4"), (1, "land", "#33a02c"), (2, "cloud", "#ffffff")]
        assert loaded[values].renderer().type() == "singlebandpseudocolor"
    finally:
        QgsProject.instance().removeAllMapLayers()
    np.testing.assert_allclose(read(values), logits_of(read(image).astype(np.float64)), atol=1e-4)


def test_run_onnx_model_needs_a_model_and_numbers(rsai_provider, tmp_path, image):
    import processing
    from qgis.core import QgsProcessingException

    algorithm = {a.id(): a for a in rsai_provider.algorithms()}["rsai:run_onnx_model"]
    assert not algorithm.parameterDefinition("MODEL").flags() & algorithm.parameterDefinition("MODEL").FlagOptional
    with pytest.raises(QgsProcessingException, match=r"Mean: '0.5, x' is not a list of numbers"):
        processing.run("rsai:run_onnx_model", {"INPUT": image, "MODEL": conv_graph(tmp_path / "m.onnx"),
                                               "MEAN": "0.5, x", "OUTPUT": str(tmp_path / "o.tif")})


def test_a_model_with_one_output_per_tile_is_refused_with_its_own_algorithm_named(tmp_path):
    """The shipped search encoder gives [batch, 384, 1, 1] per 32 px tile: not a per-pixel map."""
    source = write_raster(tmp_path / "s.tif", scene().astype("uint8"))
    with pytest.raises(ModelContractError, match=r"gives one value per 32 px tile \(\[batch, channels, 1, 1\]\), "
                                                  r"not one per pixel.*Build search index"):
        run_task("run_onnx", {"model": str(REPO / "models_onnx" / "search_image_rgb.onnx"), "input": source,
                              "output": str(tmp_path / "o.tif")}, lambda f, m: None, lambda: False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.tif"]

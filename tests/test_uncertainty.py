"""Uncertainty by test-time augmentation (engine/uncertainty.py) on real ONNX models run by
onnxruntime over real GeoTIFFs: zero spread for a model equivariant by construction, a spread
proportional to the asymmetry of one that is not, class entropy, refusals, and qgis_process."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import pytest
import rasterio
from onnx import TensorProto, helper, numpy_helper

from engine.errors import EngineError
from engine.tasks import run_task
from engine.uncertainty import UNCERTAINTY_NODATA, class_uncertainty
from raster_fixtures import contract, scene, write_model, write_raster

BANDS = ("B02", "B03", "B04")


def run(task="run_onnx", **params):
    return run_task(task, params, lambda fraction, message: None, lambda: False)


def asymmetric_model(path, model_contract, asymmetry: float) -> str:
    """depth = 0.01 * (sum of the pixel's normalised bands) + ``asymmetry`` * (the same sum of its
    right-hand neighbour): a 3x3 convolution that flips and rotations change unless asymmetry is 0."""
    kernel = np.zeros((1, 3, 3, 3), np.float32)
    kernel[0, :, 1, 1] = 0.01
    kernel[0, :, 1, 2] = asymmetry
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "weight", "bias"], ["output"], pads=[1, 1, 1, 1])], "asymmetric",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 1, "height", "width"])],
        initializer=[numpy_helper.from_array(kernel, "weight"), numpy_helper.from_array(np.full(1, 5.0, np.float32),
                                                                                       "bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, model_contract.to_onnx_metadata())
    onnx.save(model, path)
    return str(path)


@pytest.fixture
def scene_tif(tmp_path):
    return write_raster(tmp_path / "scene.tif", scene(), descriptions=BANDS)


def read(path):
    with rasterio.open(path) as raster:
        return raster.read(), raster.descriptions, raster.tags()


@pytest.mark.parametrize("views, count", [("dihedral", 8), ("flips", 4)])
def test_a_pointwise_model_has_zero_spread_and_its_plain_output(scene_tif, tmp_path, views, count):
    model = write_model(tmp_path / "m.onnx", replace(contract(), test_time_augmentations=views),
                        [[0.5, -0.2, 0.1]], [3.0])
    plain = run(input=scene_tif, output=str(tmp_path / "plain.tif"), model=model)
    result = run(input=scene_tif, output=str(tmp_path / "mean.tif"), model=model,
                 uncertainty=str(tmp_path / "u.tif"))
    spread, names, tags = read(tmp_path / "u.tif")
    np.testing.assert_array_equal(read(tmp_path / "mean.tif")[0], read(tmp_path / "plain.tif")[0])
    assert np.all(spread == 0.0) and names == ("spread of depth (m)",) and tags["augmentations"] == str(count)
    assert result["uncertainty"]["augmentations"] == count and result["tiles"] == plain["tiles"]
    assert result["outputs"]["uncertainty"] == str(tmp_path / "u.tif")


def test_the_spread_grows_with_the_asymmetry_of_the_model(scene_tif, tmp_path):
    """Each view sees the right-hand neighbour of another direction: the spread over the views is
    ``asymmetry`` times the spread of the four neighbours' band sums, so it is proportional to it."""
    dihedral = replace(contract(), test_time_augmentations="dihedral")
    spreads = []
    for asymmetry in (0.0, 0.05, 0.2, 0.8):
        model = asymmetric_model(tmp_path / f"a{asymmetry}.onnx", dihedral, asymmetry)
        run(input=scene_tif, output=str(tmp_path / "d.tif"), model=model, uncertainty=str(tmp_path / "u.tif"))
        spreads.append(read(tmp_path / "u.tif")[0][0, 1:-1, 1:-1])  # the raster's edge sees the zero padding
    assert np.all(spreads[0] == 0.0)
    means = [float(s.mean()) for s in spreads[1:]]
    assert 0 < means[0] < means[1] < means[2]
    np.testing.assert_allclose(spreads[2], 4 * spreads[1], rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(spreads[3], 16 * spreads[1], rtol=1e-3, atol=1e-5)


def test_the_output_is_the_mean_over_the_views(scene_tif, tmp_path):
    """Averaged over the views, the asymmetric model sees the mean of the four neighbours (one tile
    over the whole raster: tile borders, like the raster's, would see the convolution's padding)."""
    dihedral = replace(contract(tile=256, overlap=0), test_time_augmentations="dihedral")
    model = asymmetric_model(tmp_path / "a.onnx", dihedral, 0.5)
    run(input=scene_tif, output=str(tmp_path / "d.tif"), model=model, uncertainty=str(tmp_path / "u.tif"))
    normalised = ((scene().astype(float) - np.reshape(dihedral.mean, (3, 1, 1)))
                  / np.reshape(dihedral.std, (3, 1, 1))).sum(axis=0)
    neighbours = (normalised[1:-1, 2:] + normalised[1:-1, :-2] + normalised[2:, 1:-1] + normalised[:-2, 1:-1]) / 4
    expected = 5.0 + 0.01 * normalised[1:-1, 1:-1] + 0.5 * neighbours
    np.testing.assert_allclose(read(tmp_path / "d.tif")[0][0, 1:-1, 1:-1], expected, atol=1e-4)


def test_classes_get_the_entropy_and_largest_probability_of_their_mean(scene_tif, tmp_path):
    """Allowed without augmentation: the model's own probabilities."""
    model = write_model(tmp_path / "c.onnx", contract(kind="classes", channels=3),
                        [[0.5, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 0.2]], [0.0, 0.1, 0.0])
    result = run(input=scene_tif, output=str(tmp_path / "c.tif"), model=model,
                 probabilities=str(tmp_path / "p.tif"), uncertainty=str(tmp_path / "u.tif"))
    layer, names, _ = read(tmp_path / "u.tif")
    probabilities = read(tmp_path / "p.tif")[0]
    entropy = -(probabilities * np.log(probabilities)).sum(axis=0) / np.log(3)
    np.testing.assert_allclose(layer[0], entropy, atol=1e-6)
    np.testing.assert_array_equal(layer[1], probabilities.max(axis=0))
    assert names == ("entropy (0-1)", "largest class probability") and result["uncertainty"]["augmentations"] == 1
    assert 0 < layer[0].min() and layer[0].max() < 1


def test_multi_label_entropy_is_the_mean_binary_entropy():
    probabilities = np.array([[0.5, 1.0], [0.5, 0.0]])[:, :, None]  # two labels, two pixels
    entropy, largest = class_uncertainty(probabilities, "sigmoid")
    np.testing.assert_allclose(entropy[:, 0], [1.0, 0.0], atol=1e-9)
    np.testing.assert_array_equal(largest[:, 0], [0.5, 1.0])


def test_nodata_pixels_are_nodata_in_the_uncertainty_layer(tmp_path):
    data = scene()
    data[:, :20, :30] = 0
    path = write_raster(tmp_path / "holes.tif", data, nodata=0, descriptions=BANDS)
    model = write_model(tmp_path / "m.onnx", replace(contract(), test_time_augmentations="dihedral"),
                        [[0.5, -0.2, 0.1]], [3.0])
    run(input=path, output=str(tmp_path / "d.tif"), model=model, uncertainty=str(tmp_path / "u.tif"))
    spread = read(tmp_path / "u.tif")[0][0]
    assert np.all(spread[:20, :30] == UNCERTAINTY_NODATA) and np.all(spread[20:] == 0.0)


def test_a_regression_model_without_augmentations_is_refused_until_its_contract_allows_them(scene_tif, tmp_path):
    model = write_model(tmp_path / "m.onnx", contract(), [[0.5, -0.2, 0.1]], [3.0])
    with pytest.raises(EngineError, match="allows no test-time augmentation .* --test-time-augmentations dihedral"):
        run(input=scene_tif, output=str(tmp_path / "d.tif"), model=model, uncertainty=str(tmp_path / "u.tif"))
    assert not (tmp_path / "d.tif").exists() and not (tmp_path / "u.tif").exists()
    allowed = str(tmp_path / "allowed.onnx")
    run("set_contract", model=model, out=allowed, test_time_augmentations="dihedral")
    result = run(input=scene_tif, output=str(tmp_path / "d.tif"), model=allowed, uncertainty=str(tmp_path / "u.tif"))
    assert result["uncertainty"]["test_time_augmentations"] == "dihedral"


def test_an_unknown_augmentation_set_is_refused(tmp_path):
    model = write_model(tmp_path / "m.onnx", contract(), [[0.5, -0.2, 0.1]], [3.0])
    with pytest.raises(EngineError, match="test_time_augmentations must be one of"):
        run("set_contract", model=model, out=str(tmp_path / "x.onnx"), test_time_augmentations="rotations")


@pytest.mark.slow
def test_qgis_process_writes_the_uncertainty_layer(qgis_process, scene_tif, tmp_path):
    model = asymmetric_model(tmp_path / "a.onnx", replace(contract(), test_time_augmentations="dihedral"), 0.2)
    uncertainty = tmp_path / "u.tif"
    completed = qgis_process("run", "rsai:estimate_bathymetry", "--", f"INPUT={scene_tif}", f"MODEL={model}",
                             f"OUTPUT={tmp_path / 'depth.tif'}", f"UNCERTAINTY={uncertainty}")
    assert completed.returncode == 0, completed.log
    results = completed.output["results"]
    assert results["UNCERTAINTY"] == str(uncertainty) and results["AUGMENTATIONS"] == 8
    spread, names, _ = read(uncertainty)
    assert names == ("spread of depth (m)",) and spread[0, 1:-1, 1:-1].min() > 0

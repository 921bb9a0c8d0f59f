"""Importing MagicBathyNet's published weights: checkpoints in the authors' layout (random weights,
their parameter names, zipped as they distribute them) become contract ONNX models whose engine
output equals the reference inference; wrong, truncated and mismatched files are refused."""
import argparse
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from engine.tasks import run_task
from magicbathynet_reference import ReferenceBathymetryUNet, published_zip, randomise, reference_depth
from raster_fixtures import write_raster
from training.__main__ import main as training_main
from training.importers import ImportRefused, import_model
from training.marine.model import SeabedUNet
from training.marine.segformer import MIT_VARIANTS, SegFormer, variant_of

LOW, HIGH = np.array([120.0, 260.0, 410.0]), np.array([1450.0, 1800.0, 2100.0])
S2_NAMES = ("B04", "B03", "B02")


def _patch(path, size, seed, names=S2_NAMES):
    rng = np.random.default_rng(seed)
    smooth = rng.normal(size=(3, size // 4 + 2, size // 4 + 2))
    data = np.kron(smooth, np.ones((4, 4)))[:, :size, :size] * 250 + (LOW + HIGH)[:, None, None] / 2
    return write_raster(path, data.round().astype("uint16"), descriptions=names), data


def _options(area, modality, norm_param, tile):
    return argparse.Namespace(area=area, modality=modality, norm_param=norm_param, tile_size=tile)


def _noop(*_):
    return False


def test_bathymetry_import_runs_in_the_engine_like_the_reference(tmp_path, capsys):
    network = randomise(ReferenceBathymetryUNet(), seed=3)
    checkpoint = published_zip(tmp_path / "bathymetry_s2_an.zip", network)
    norm_param = tmp_path / "norm_param_s2_an.txt"
    np.savetxt(norm_param, np.stack([LOW, HIGH]))
    model = tmp_path / "models" / "bathymetry_s2_an.onnx"
    training_main(["import", "--source", "magicbathynet-bathymetry", "--checkpoint", str(checkpoint),
                   "--area", "agia_napa", "--modality", "s2", "--norm-param", str(norm_param),
                   "--tile-size", "18", "--out", str(model)])
    assert '"max_abs_diff"' in capsys.readouterr().out
    card = model.with_suffix(".md").read_text()
    assert "CC BY-NC-SA 4.0" in card and "IGARSS 2024" in card and "--area agia_napa" in card

    image, data = _patch(tmp_path / "img_411.tif", 18, seed=1)  # one real-size S2 patch: 18 x 18 px
    result = run_task("estimate_bathymetry", {"input": image, "output": str(tmp_path / "depth.tif"),
                                              "model": str(model)}, lambda *_: None, _noop)
    with rasterio.open(result["outputs"]["output"]) as depth, rasterio.open(image) as source:
        ours = depth.read(1)
        assert (depth.crs, depth.transform, depth.shape) == (source.crs, source.transform, source.shape)
    expected = -reference_depth(network, data.round().transpose(1, 2, 0), LOW, HIGH, 18, -30.443)
    assert np.abs(expected).max() > 0.5  # the random network says something
    np.testing.assert_allclose(ours, expected, atol=2e-3 * np.abs(expected).max())

    bigger, _ = _patch(tmp_path / "scene.tif", 47, seed=2)  # several fixed-size tiles, edges padded
    result = run_task("estimate_bathymetry", {"input": bigger, "output": str(tmp_path / "scene_depth.tif"),
                                              "model": str(model)}, lambda *_: None, _noop)
    assert result["tiles"] > 4
    with rasterio.open(result["outputs"]["output"]) as depth:
        assert depth.shape == (47, 47) and np.isfinite(depth.read(1)).all()


def _block_reference(network, normalised, factor):
    """The seabed graph's arithmetic in numpy: clip, nearest zoom, network, block means, softmax."""
    zoomed = np.repeat(np.repeat(np.clip(normalised, 0, 1), factor, axis=1), factor, axis=2)
    with torch.no_grad():
        logits = network(torch.from_numpy(zoomed[None].astype("float32"))).numpy()[0]
    classes, size = logits.shape[0], normalised.shape[1]
    means = logits.reshape(classes, size, factor, size, factor).mean(axis=(2, 4))
    exponentials = np.exp(means - means.max(axis=0))
    return exponentials / exponentials.sum(axis=0)


@pytest.mark.parametrize("source, network, area, classes", [
    ("magicbathynet-seabed-unet", lambda: SeabedUNet(3, 5), "agia_napa",
     ("seagrass", "rock", "macroalgae", "sand", "undefined")),
    ("magicbathynet-seabed-segformer", lambda: SegFormer("B0", 3), "puck_lagoon", ("sand", "eelgrass", "undefined")),
])
def test_seabed_import_runs_in_the_engine_like_the_reference(tmp_path, source, network, area, classes):
    network = randomise(network(), seed=5)
    checkpoint = published_zip(tmp_path / "weights.zip", network)
    norm_param = tmp_path / "norm_param_spot6.npy"
    np.save(norm_param, np.stack([LOW, HIGH]))
    model = tmp_path / "seabed.onnx"
    result = import_model(source, checkpoint, model, _options(area, "spot6", norm_param, 16))
    assert result["max_abs_diff"] < 1e-3

    image, data = _patch(tmp_path / "img_410.tif", 16, seed=4, names=("red", "green", "blue"))
    run = run_task("classify_seabed", {"input": image, "output": str(tmp_path / "classes.tif"),
                                       "probabilities": str(tmp_path / "p.tif"), "model": str(model)},
                   lambda *_: None, _noop)
    assert run["names"] == list(classes)
    expected = _block_reference(network, (data.round() - LOW[:, None, None]) / (HIGH - LOW)[:, None, None], 16)
    with rasterio.open(tmp_path / "p.tif") as probabilities, rasterio.open(tmp_path / "classes.tif") as class_map:
        np.testing.assert_allclose(probabilities.read(), expected, atol=2e-4)
        agree = class_map.read(1) == expected.argmax(axis=0)
    assert agree.mean() > 0.99


def test_segformer_variant_is_read_from_the_published_b5_state_dict():
    with torch.device("meta"):
        state = SegFormer("B5", 5).state_dict()
    assert variant_of(state) == "B5"
    assert state["decode_head.linear_fuse.conv.weight"].shape == (768, 768 * 4, 1, 1)
    assert state["backbone.block3.39.attn.kv.weight"].shape == (2 * MIT_VARIANTS["B5"][0][2], 320)


def _assert_nothing_written(folder: Path):
    assert [p.name for p in folder.iterdir()] == [], "a refused import must leave no file behind"


def test_wrong_truncated_and_mismatched_checkpoints_are_refused(tmp_path):
    bathymetry = published_zip(tmp_path / "bathymetry_s2_an.zip", randomise(ReferenceBathymetryUNet(), seed=0))
    norm_param = tmp_path / "norm_param_s2_an.txt"
    np.savetxt(norm_param, np.stack([LOW, HIGH]))
    out = tmp_path / "out"
    out.mkdir()
    options = _options("agia_napa", "s2", norm_param, 16)

    with pytest.raises(ImportRefused, match="not MagicBathyNet's U-Net.*missing: down1"):
        import_model("magicbathynet-seabed-unet", bathymetry, out / "m.onnx", options)
    _assert_nothing_written(out)

    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(bathymetry.read_bytes()[: bathymetry.stat().st_size // 2])
    with pytest.raises(ImportRefused, match="not a readable PyTorch checkpoint.*download it again"):
        import_model("magicbathynet-bathymetry", truncated, out / "m.onnx", options)
    _assert_nothing_written(out)

    with pytest.raises(ImportRefused, match="SHA-256 .* was expected"):
        import_model("magicbathynet-bathymetry", bathymetry, out / "m.onnx", options, sha256="0" * 64)
    _assert_nothing_written(out)

    bad_norm = tmp_path / "norm_param_bad.txt"
    bad_norm.write_text("1 2 3\n")
    with pytest.raises(ImportRefused, match="holds 3 numbers; expected 6"):
        import_model("magicbathynet-bathymetry", bathymetry, out / "m.onnx", _options("agia_napa", "s2", bad_norm, 16))
    with pytest.raises(ImportRefused, match="needs --area"):
        import_model("magicbathynet-bathymetry", bathymetry, out / "m.onnx", _options(None, "s2", norm_param, 16))
    with pytest.raises(ImportRefused, match="unknown source 'remoteclip'; known sources: .*magicbathynet-bathymetry"):
        import_model("remoteclip", bathymetry, out / "m.onnx", options)
    _assert_nothing_written(out)


def test_import_algorithm_through_qgis_process_then_the_model_runs_unchanged(qgis_process, tmp_path):
    """The 'Import published model' algorithm (engine worker -> python -m training import) writes a
    model that rsai:estimate_bathymetry runs; a wrong checkpoint is refused with the reason."""
    network = randomise(ReferenceBathymetryUNet(), seed=7)
    checkpoint = published_zip(tmp_path / "bathymetry_spot6_pl.zip", network)
    norm_param = tmp_path / "norm_param_spot6_pl.npy"
    np.save(norm_param, np.stack([LOW, HIGH]))
    model = tmp_path / "models" / "bathymetry_spot6_pl.onnx"
    run = qgis_process("run", "rsai:import_model", "--", "SOURCE=0", f"CHECKPOINT={checkpoint}", "AREA=2",
                       "MODALITY=2", f"NORM_PARAM={norm_param}", "TILE_SIZE=30", f"OUTPUT={model}")
    assert run.returncode == 0, run.log
    assert run.output["results"]["OUTPUT"] == str(model) and Path(run.output["results"]["CARD"]).is_file()
    assert run.output["results"]["MODELS"] == str(model)

    image, data = _patch(tmp_path / "img_spot6.tif", 30, seed=8, names=("red", "green", "blue"))
    depth = tmp_path / "depth.tif"
    run = qgis_process("run", "rsai:estimate_bathymetry", "--", f"INPUT={image}", f"MODEL={model}",
                       f"OUTPUT={depth}")
    assert run.returncode == 0, run.log
    expected = -reference_depth(network, data.round().transpose(1, 2, 0), LOW, HIGH, 30, -11.0)
    with rasterio.open(depth) as result:
        np.testing.assert_allclose(result.read(1), expected, atol=2e-3 * np.abs(expected).max())

    refused = qgis_process("run", "rsai:import_model", "--", "SOURCE=1", f"CHECKPOINT={checkpoint}", "AREA=2",
                           "MODALITY=2", f"NORM_PARAM={norm_param}", f"OUTPUT={tmp_path / 'wrong.onnx'}")
    assert refused.returncode != 0 and "is not MagicBathyNet's U-Net" in refused.log
    assert not (tmp_path / "wrong.onnx").exists()


def test_the_import_algorithm_offers_every_source_the_cli_knows(qgis_app):
    from rs_qgis_plugin.algorithms.import_model import SOURCES
    from training.importers import importers

    assert sorted(SOURCES) == sorted(importers())

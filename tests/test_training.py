"""Tests for training/: simulator physics, MagicBathyNet dataset, light U-Net, fit/evaluate/export."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnxruntime
import pytest
import rasterio
import torch

from engine.contract import contract_from_metadata
from training.__main__ import main as training_cli
from training.datasets.magicbathynet import IGNORE_INDEX, MagicBathyNet
from training.datasets.magicbathynet_format import AREA_CLASSES, read_norm_param, read_split_file
from training.marine.model import LightUNet
from training.simulation.shallow_water import (
    AGIA_NAPA,
    UNDEFINED,
    deep_ratio_tolerance,
    simulate_scene,
    water_leaving_reflectance,
    write_magicbathynet_layout,
)

PATCHES = 16
PATCH_SIZE = 18  # real Sentinel-2 patches: 18 x 18 px
SAND = [seabed.name for seabed in AGIA_NAPA.classes].index("sand")


@pytest.fixture(scope="module")
def magicbathynet_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("magicbathynet")
    write_magicbathynet_layout(root, "agia_napa", PATCHES, PATCH_SIZE, seed=3)
    return root


def test_reflectance_over_sand_decreases_with_depth_faster_in_red_than_blue():
    sand = np.reshape(AGIA_NAPA.classes[SAND].bottom_reflectance, (3, 1))
    depths = np.array([0.5, 2.0, 5.0, 10.0, 60.0])
    red, green, blue = water_leaving_reflectance(depths, sand, AGIA_NAPA)
    for band in (red, green, blue):
        assert np.all(np.diff(band) < 0)
    assert red[2] / red[0] < blue[2] / blue[0]  # red is absorbed within a few metres
    np.testing.assert_allclose([red[-1], green[-1], blue[-1]], AGIA_NAPA.deep_water_reflectance, atol=2e-3)


def test_simulated_scene_ground_truth_is_consistent():
    scene = simulate_scene(160, 160, seed=5)
    again = simulate_scene(160, 160, seed=5)
    np.testing.assert_array_equal(scene.image, again.image)
    assert scene.image.dtype == np.uint16 and scene.image.shape == (3, 160, 160) and scene.image.min() > 0
    known = np.isfinite(scene.depth)
    assert 0 < np.nanmin(scene.depth) and np.nanmax(scene.depth) <= AGIA_NAPA.survey_depth_m
    assert np.all(scene.classes[known] != UNDEFINED)  # known depth => a defined seabed
    assert set(np.unique(scene.classes)) <= {*range(len(AGIA_NAPA.classes)), UNDEFINED}
    sand = scene.classes == SAND
    blue = scene.image[2].astype(float)
    shallow, deep = sand & (scene.depth < 5), sand & (scene.depth > 15)
    assert shallow.any() and deep.any() and blue[shallow].mean() > blue[deep].mean()
    assert scene.transform.a == 10.0


def test_layout_matches_magicbathynet(magicbathynet_root):
    area = magicbathynet_root / "agia_napa"
    with rasterio.open(area / "img/s2/img_0.tif") as src:
        assert (src.count, src.dtypes[0], src.crs.to_epsg(), src.res) == (3, "uint16", 32636, (10.0, 10.0))
        assert src.descriptions == ("B04", "B03", "B02")
    with rasterio.open(area / "depth/s2/depth_0.tif") as src:
        depth = src.read(1)
    assert depth.dtype == np.float32 and depth.max() <= 0 and (depth < 0).any()
    with rasterio.open(area / "gts/s2/gts_0.tif") as src:
        colours = {tuple(c) for c in src.read().reshape(3, -1).T}
    assert colours <= {(0, 0, 0), *(colour for _, colour in AREA_CLASSES["agia_napa"])}
    splits = read_split_file(area / "s2_split_bathymetry.txt")
    assert not splits["train"] & splits["test"]
    assert len(splits["train"] | splits["test"]) == PATCHES
    assert (area / "s2_split_bathymetry.txt").read_text().startswith("annotated sample: ['0', '")
    low, high = read_norm_param(area / "norm_param_s2_an.txt")
    images = np.stack([rasterio.open(path).read() for path in sorted(area.glob("img/s2/*.tif"))])
    np.testing.assert_array_equal(low, images.min(axis=(0, 2, 3)))
    np.testing.assert_array_equal(high, images.max(axis=(0, 2, 3)))


def test_dataset_targets(magicbathynet_root):
    bathymetry = MagicBathyNet(magicbathynet_root, task="bathymetry", split="train")
    seabed = MagicBathyNet(magicbathynet_root, task="seabed", split="test")
    assert len(bathymetry) + len(MagicBathyNet(magicbathynet_root, split="test")) == PATCHES
    sample = bathymetry[0]
    assert sample["image"].shape == (3, PATCH_SIZE, PATCH_SIZE) and sample["image"].dtype == torch.float32
    image_path, depth_path = bathymetry.patches[0]
    with rasterio.open(depth_path) as src:
        stored = src.read(1)
    torch.testing.assert_close(sample["depth"], torch.from_numpy(np.where(stored == 0, np.nan, -stored)), equal_nan=True)

    sample = seabed[0]
    with rasterio.open(seabed.patches[0][1]) as src:
        rgb = src.read()
    assert sample["mask"].dtype == torch.int64
    for index, (_, colour) in enumerate(AREA_CLASSES["agia_napa"]):
        assert torch.all(sample["mask"][torch.from_numpy((rgb.T == colour).all(-1).T)] == index)
    assert torch.all(sample["mask"][torch.from_numpy((rgb == 0).all(0))] == IGNORE_INDEX)


def test_dataset_names_missing_files_and_refuses_unknown_colours(magicbathynet_root, tmp_path):
    area = tmp_path / "agia_napa"
    for kind in ("img", "gts"):
        (area / kind / "s2").mkdir(parents=True)
        for path in (magicbathynet_root / "agia_napa" / kind / "s2").iterdir():
            (area / kind / "s2" / path.name).write_bytes(path.read_bytes())
    with pytest.raises(FileNotFoundError, match="norm_param_s2_an.txt does not exist .*copy it from the dataset"):
        MagicBathyNet(tmp_path, task="seabed")
    (area / "norm_param_s2_an.txt").write_bytes((magicbathynet_root / "agia_napa" / "norm_param_s2_an.txt").read_bytes())
    with pytest.raises(FileNotFoundError, match="s2_split_pixel_class.txt does not exist"):
        MagicBathyNet(tmp_path, task="seabed")
    (area / "s2_split_pixel_class.txt").write_text("annotated sample: ['0', '1', '999']\ntest sample: ['1']\n")
    with pytest.raises(FileNotFoundError, match="lists patches whose files are missing: .*img_999.tif"):
        MagicBathyNet(tmp_path, task="seabed")
    (area / "s2_split_pixel_class.txt").write_text("annotated sample: ['0', '1']\ntest sample: ['1']\n")
    train = MagicBathyNet(tmp_path, task="seabed", split="train")
    assert [path.name for path, _ in train.patches] == ["img_0.tif"]
    with rasterio.open(train.patches[0][1], "r+") as dst:
        dst.write(np.full((3, PATCH_SIZE, PATCH_SIZE), 7, dtype=np.uint8))
    with pytest.raises(ValueError, match="colour"):
        train[0]


def test_light_unet_shapes_and_widths():
    network = LightUNet(in_channels=3, out_channels=1, base_channels=4)
    for height, width in ((32, 48), (18, 18), (30, 30), (17, 23)):  # padded inside, as the reference
        assert network(torch.zeros(2, 3, height, width)).shape == (2, 1, height, width)
    paper = LightUNet()
    assert [block[2].out_channels for block in paper.encoder] == [32, 64, 128, 256]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in paper.modules())


def test_simulate_scene_command(tmp_path):
    outputs = [tmp_path / name for name in ("image.tif", "depth.tif", "classes.tif")]
    subprocess.run(
        [sys.executable, "-m", "training", "simulate-scene", "--out-image", str(outputs[0]), "--out-depth",
         str(outputs[1]), "--out-classes", str(outputs[2]), "--size", "64", "--seed", "7"],
        check=True,
    )
    with rasterio.open(outputs[0]) as image, rasterio.open(outputs[1]) as depth, rasterio.open(outputs[2]) as classes:
        assert image.crs == depth.crs == classes.crs and image.transform == depth.transform == classes.transform
        assert image.count == 3 and np.isnan(depth.nodata)
        assert classes.nodata == UNDEFINED and classes.colormap(1)[0] == (0, 128, 0, 255)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("task", "model_options"),
    [
        ("bathymetry", ["--base-channels", "4"]),
        ("seabed", ["--encoder", "resnet18", "--encoder-depth", "3", "--decoder-channels", "16", "8", "4"]),
    ],
)
def test_fit_evaluate_export_run(task, model_options, magicbathynet_root, tmp_path, capsys):
    run_folder, metrics_path, model_path = tmp_path / "run", tmp_path / "metrics.json", tmp_path / f"{task}.onnx"
    data = ["--data", str(magicbathynet_root)]
    training_cli(["fit", "--task", task, *data, "--max-steps", "3", "--batch-size", "4", "--out", str(run_folder),
                  "--threads", "1", "--accelerator", "cpu", *model_options])
    checkpoint = run_folder / "checkpoint.pt"
    torch.load(checkpoint, weights_only=True)
    training_cli(["evaluate", "--task", task, *data, "--checkpoint", str(checkpoint), "--json-out", str(metrics_path),
                  "--threads", "1", "--accelerator", "cpu"])
    evaluation = json.loads(metrics_path.read_text())
    expected = {"rmse_m", "mae_m", "std_m", "baseline_rmse_m"} if task == "bathymetry" else {"overall_accuracy", "f1_sand"}
    assert expected <= set(evaluation["metrics"]) and all(np.isfinite(list(evaluation["metrics"].values())))
    training_cli(["export", "--task", task, "--checkpoint", str(checkpoint), "--out", str(model_path),
                  "--metrics", str(metrics_path), "--threads", "1", "--fp16"])
    printed = capsys.readouterr().out
    assert "onnxruntime vs torch max abs diff" in printed
    # the fp16 variant, measured on the held-out patches of the training data (tests/test_gpu_path.py: the rest)
    assert f"wrote {tmp_path / f'{task}.fp16.onnx'}; fp16 vs float32 max abs diff" in printed
    assert f"held-out (test split) patches of {magicbathynet_root}" in printed

    session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    contract = contract_from_metadata(session.get_modelmeta().custom_metadata_map, str(model_path))
    assert contract.task == task and contract.band_names == ["B04", "B03", "B02"] and contract.gsd_m == 10.0
    assert "SIMULATED" in contract.provenance["training_data"]
    assert contract.provenance["metrics"]["metrics"] == evaluation["metrics"]
    assert contract.provenance["command"].startswith("python -m training fit")
    assert contract.test_time_augmentations == "dihedral"  # fit trains with random_dihedral
    assert contract.quality["deep_ratio_tolerance"] == deep_ratio_tolerance(AGIA_NAPA)  # the simulator's truth
    statistics = contract.input_statistics
    assert len(statistics["mean"]) == 3 and statistics["distance_threshold"] > 0 and statistics["components"]
    image = MagicBathyNet(magicbathynet_root, task=task, split="test")[0]["image"].numpy()
    normalised = ((image - np.reshape(contract.mean, (3, 1, 1))) / np.reshape(contract.std, (3, 1, 1)))[None]
    (output,) = session.run(["output"], {"image": normalised.astype(np.float32)})
    assert output.shape == (1, contract.outputs.channels, PATCH_SIZE, PATCH_SIZE) and np.isfinite(output).all()
    if task == "bathymetry":
        assert contract.outputs.units == "m" and contract.outputs.scale == pytest.approx(30.443)
    else:
        assert contract.outputs.names == ("seagrass", "rock", "macroalgae", "sand")
        assert contract.outputs.colors == ("#008000", "#0000ff", "#ff0000", "#ff8000")
        np.testing.assert_allclose(output.sum(axis=1), 1.0, atol=1e-5)

    # the exported file runs unchanged through the engine, on a fixture image in MagicBathyNet's layout
    from engine.tasks import run_task

    image_file = next(magicbathynet_root.rglob("img_*.tif"))
    engine_task = {"bathymetry": "estimate_bathymetry", "seabed": "classify_seabed"}[task]
    result = run_task(engine_task, {"input": str(image_file), "output": str(tmp_path / "engine.tif"),
                                    "model": str(model_path), "device": "cpu"}, lambda f, m: None, lambda: False)
    assert result["kind"] == contract.outputs.kind
    with rasterio.open(tmp_path / "engine.tif") as out, rasterio.open(image_file) as src:
        assert out.transform == src.transform and out.crs == src.crs and out.shape == src.shape

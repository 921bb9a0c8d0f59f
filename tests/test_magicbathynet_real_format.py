"""MagicBathyNet's real files (Agrafiotis et al., IGARSS 2024): the split and norm_param readers on
the forms the dataset ships, and fitting both tasks on a fixture written like the real files at
their real sizes (Sentinel-2 18x18 px, SPOT-6 30x30 px)."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch

from magicbathynet_fixture import CRS, IDS, PATCH_PX, UNANNOTATED_ID, write_magicbathynet
from training.checkpoint import load_checkpoint
from training.datasets.magicbathynet import IGNORE_INDEX, MagicBathyNet
from training.datasets.magicbathynet_format import norm_param_file, read_norm_param, read_split_file
from training.marine.evaluate import evaluate
from training.marine.fit import fit
from training.trainer import FitRun

LOW, HIGH = [12.0, 34.5, 56.0], [1234.0, 2345.0, 3456.25]


@pytest.fixture(scope="module")
def real_root(tmp_path_factory):
    return write_magicbathynet(tmp_path_factory.mktemp("magicbathynet_real"))


@pytest.mark.parametrize(
    "text",
    [
        # the documented form: labelled Python-list blocks, the first one all annotated ids
        "annotated sample: ['409', '418', '350', '411', '387']\ntrain sample: ['409', '418', '350']\n"
        "test sample: ['411', '387']\n",
        "annotated sample:\n[409, 418, 350,\n 411, 387]\n\ntest: [411, 387]\n",
        "train_images = ['409', '418', '350']\ntest_images = ['411', '387']\n",
        "train\nimg_409.tif\nimg_418.tif\nimg_350.tif\nevaluation\nimg_411.tif\nimg_387.tif\n",
        "train: 409, 418, 350\ntest: 411 387\n",
        "unannotated sample: [339, 340]\nannotated sample: [409, 418, 350, 411, 387]\n"
        "training sample (80%): [409, 418, 350]\n",
    ],
)
def test_split_reader_parses_the_real_and_plausible_forms(text, tmp_path):
    path = tmp_path / "s2_split_bathymetry.txt"
    path.write_text(text)
    assert read_split_file(path) == {"train": {"409", "418", "350"}, "test": {"411", "387"}}


def test_split_reader_without_train_test_blocks_and_its_errors(tmp_path):
    path = tmp_path / "s2_split_pixel_class.txt"
    path.write_text("\n".join(str(i) for i in range(300, 400)) + "\n")  # one annotated id per line
    splits = read_split_file(path)
    assert splits["train"] | splits["test"] == {str(i) for i in range(300, 400)}
    assert not splits["train"] & splits["test"] and 5 < len(splits["test"]) < 40
    path.write_text("train sample: [1, 2]\ntest sample: [2, 3]\n")
    with pytest.raises(ValueError, match=r"ids \['2'\] are listed for both train and test"):
        read_split_file(path)
    path.write_text("nothing here\n")
    with pytest.raises(ValueError, match="lists no patch ids; expected e.g. \"annotated sample:"):
        read_split_file(path)


@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("norm_param_s2_an.npy", lambda path: np.save(path, np.array([LOW, HIGH]))),  # the notebooks' np.load
        ("norm_param_s2_an.txt", lambda path: np.savetxt(path, np.array([LOW, HIGH]))),
        ("norm_param_s2_an.txt", lambda path: path.write_text(str(np.array([LOW, HIGH])))),  # a printed array
    ],
)
def test_norm_param_reader_parses_npy_and_text(name, write, tmp_path):
    write(tmp_path / name)
    assert norm_param_file(tmp_path, "s2", "agia_napa") == tmp_path / name
    low, high = read_norm_param(tmp_path / name)
    np.testing.assert_array_equal(low, LOW)
    np.testing.assert_array_equal(high, HIGH)


def test_norm_param_errors_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="norm_param_spot6_pl.txt does not exist .*copy it from the dataset"):
        norm_param_file(tmp_path, "spot6", "puck_lagoon")
    (tmp_path / "norm_param_s2_an.txt").write_text("0 0 0\n10 0 10\n")
    with pytest.raises(ValueError, match="maximum must exceed its minimum"):
        read_norm_param(tmp_path / "norm_param_s2_an.txt")


@pytest.mark.parametrize("modality", ["s2", "spot6"])
def test_dataset_reads_the_real_layout_at_real_sizes(real_root, modality):
    size = PATCH_PX[modality]
    for area in CRS:
        depth = MagicBathyNet(real_root, (area,), modality, "bathymetry", "train")
        seabed = MagicBathyNet(real_root, (area,), modality, "seabed", "test")
        assert [path.stem for path, _ in depth.patches] == [f"img_{i}" for i in sorted(IDS[area]["train"], key=int)]
        assert UNANNOTATED_ID not in {path.stem[4:] for path, _ in depth.patches + seabed.patches}
        low, high = depth.norm_params[area]
        np.testing.assert_array_equal(np.stack([low, high]), np.loadtxt(norm_param_file(real_root / area, modality, area)))
        for sample in (depth[0], seabed[0]):
            assert sample["image"].shape == (3, size, size)
        with rasterio.open(depth.patches[0][1]) as src:
            stored = src.read(1)
            assert src.crs.to_string() == CRS[area] and src.res == (180 / size, 180 / size)
        known = torch.isfinite(depth[0]["depth"])
        image_valid = (depth[0]["image"] != 0).any(dim=0)
        assert torch.equal(known, torch.from_numpy(stored != 0) & image_valid)
        torch.testing.assert_close(depth[0]["depth"][known], torch.from_numpy(-stored)[known])
        assert set(seabed[0]["mask"].unique().tolist()) <= {*range(len(seabed.classes)), IGNORE_INDEX}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("task", "modality", "area", "options", "metric"),
    [
        ("bathymetry", "s2", "agia_napa", {"base_channels": 4}, "rmse_m"),
        ("seabed", "spot6", "puck_lagoon", {"encoder_depth": 3, "decoder_channels": (16, 8, 4)}, "overall_accuracy"),
    ],
)
def test_fit_and_evaluate_on_real_sized_patches(real_root, tmp_path, task, modality, area, options, metric):
    torch.set_num_threads(1)
    checkpoint = fit(FitRun(real_root, tmp_path, max_steps=2, batch_size=2, accelerator="cpu"), task, (area,), modality,
                     options)
    module, saved = load_checkpoint(checkpoint, task)
    low, high = read_norm_param(norm_param_file(real_root / area, modality, area))
    np.testing.assert_allclose(module.hparams.band_mean, low)
    np.testing.assert_allclose(module.hparams.band_std, high - low)
    assert saved["provenance"]["steps"] == 2 and saved["data"]["modality"] == modality
    result = evaluate(checkpoint, real_root, batch_size=2, accelerator="cpu")
    assert result["patches"] == len(IDS[area]["test"]) and np.isfinite(result["metrics"][metric])
    with pytest.raises(ValueError, match="fit one area at a time"):
        fit(FitRun(real_root, tmp_path, max_steps=1), task, ("agia_napa", "puck_lagoon"), modality)

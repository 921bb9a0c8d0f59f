"""Tests for HyCoT training: hyperspectral simulator physics, HySpecNet-11k layout read by torchgeo,
model shapes, the efficient training step, and fit/evaluate/export of the encoder/decoder pair."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import rasterio
import torch
from torchgeo.datasets import EnMAP, HySpecNet11k

from engine.contract import contract_from_metadata
from engine.raster_io import resolve_bands
from training.__main__ import main as training_cli
from training.checkpoint import CHECKPOINT_FORMAT, load_checkpoint
from training.hycot.bit_rate import bits_per_pixel_per_channel, latent_channels
from training.hycot.model import HyCoTDecoder, HyCoTEncoder
from training.hycot.module import HyCoTTask, quantise_latent, random_pixels, scale_reflectance
from training.simulation.hyperspectral import (
    ENMAP_BAND_CENTRES_NM,
    KEPT_BANDS,
    NODATA,
    WATER_VAPOUR_BANDS,
    WAVELENGTHS_NM,
    band_label,
    endmember_spectrum,
    simulate_scene,
    write_hyspecnet_layout,
    write_scene_geotiff,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
PATCHES = 12
PATCH_SIZE = 16
TINY_MODEL = ["--dim", "16", "--depth", "1", "--heads", "2", "--head-dim", "8", "--mlp-dim", "8", "--hidden-dim", "32"]
CPU = ["--threads", "1", "--accelerator", "cpu"]


@pytest.fixture(scope="module")
def hyspecnet_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("hyspecnet")
    write_hyspecnet_layout(root, PATCHES, PATCH_SIZE, seed=4, patches_per_tile=4)
    return root


def reflectance_at(spectrum: np.ndarray, wavelength_nm: float) -> float:
    return float(spectrum[np.argmin(np.abs(WAVELENGTHS_NM - wavelength_nm))])


def test_latent_size_and_model_shapes():
    assert [latent_channels(202, cr) for cr in (4, 8, 16, 32)] == [51, 26, 13, 7]
    encoder = HyCoTEncoder(bands=10, latent=3, dim=16, depth=2, heads=2, head_dim=8, hidden_dim=32)
    assert encoder.tokens == 3 and encoder.padding == 2  # 10 bands padded to 12: 3 groups of 4
    latent = encoder(torch.rand(2, 10, 3, 5))
    assert latent.shape == (2, 3, 3, 5) and latent.min() >= 0 and latent.max() <= 1
    assert HyCoTDecoder(latent=3, bands=10, hidden_dim=32)(latent).shape == (2, 10, 3, 5)
    paper = HyCoTTask(bands=202, compression_ratio=8)
    assert paper.encoder.tokens == 51 and paper.latent == 26
    assert paper.bits_per_pixel_per_channel == pytest.approx(26 * 32 / 202)
    assert len(paper.encoder.blocks) == 5 and paper.encoder.embed.weight.shape == (64, 4)


def test_bit_rate_follows_the_paper():
    # As the authors' code computes it (git.tu-berlin.de/rsim/hycot): CR = C / L, bpppc = 32 / CR, with
    # C = 202 bands before the padding to 204.
    rates = [round(bits_per_pixel_per_channel(202, latent_channels(202, cr)), 2) for cr in (4, 8, 16, 32)]
    assert rates == [8.08, 4.12, 2.06, 1.11]
    assert bits_per_pixel_per_channel(202, 51) == pytest.approx(32 / (202 / 51))


def test_reference_architecture_unless_final_norm_and_old_checkpoints_keep_theirs(tmp_path):
    tiny = dict(bands=10, compression_ratio=4, dim=8, depth=1, heads=2, head_dim=4, hidden_dim=16)
    assert not any(name.startswith("encoder.norm.") for name in HyCoTTask(**tiny).state_dict())  # as the paper's
    shipped = HyCoTTask(**tiny, final_norm=True)
    assert {"encoder.norm.weight", "encoder.norm.bias"} <= set(shipped.state_dict())
    hyper = {key: value for key, value in shipped.hparams.items() if key != "final_norm"}  # written before the option
    torch.save({"format": CHECKPOINT_FORMAT, "task": "hycot", "hyper_parameters": hyper,
                "state_dict": shipped.state_dict()}, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt")[0].hparams.final_norm


def test_pixelwise_model_sees_each_pixel_alone():
    encoder = HyCoTEncoder(bands=6, latent=2, dim=8, depth=1, heads=2, head_dim=4, hidden_dim=16).eval()
    image = torch.rand(1, 6, 4, 4)
    changed = image.clone()
    changed[0, :, 0, 0] = 0.9
    with torch.no_grad():
        difference = (encoder(image) - encoder(changed)).abs().sum(dim=1)[0]
    assert difference[0, 0] > 0 and torch.all(difference.flatten()[1:] == 0)


def test_random_pixels_and_quantisation():
    image = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    pixels = random_pixels(image, 4)
    assert pixels.shape == (2, 3, 4, 4)
    for n in range(2):  # whole spectra of distinct pixels of the same image
        chosen = pixels[n].flatten(1).T
        originals = {tuple(v.tolist()) for v in image[n].flatten(1).T}
        assert len({tuple(v.tolist()) for v in chosen}) == 16 and all(tuple(v.tolist()) in originals for v in chosen)
    z = torch.tensor([0.0, 0.123456789, 1.0, 1.5])
    assert torch.all((quantise_latent(z) - z.clamp(0, 1)).abs() <= 0.5 / 65534)
    sample = scale_reflectance({"image": torch.tensor([-50.0, 2500.0, 12000.0])})
    torch.testing.assert_close(sample["image"], torch.tensor([0.0, 0.25, 1.0]))


def test_enmap_bands_match_torchgeo_and_hyspecnet():
    assert len(ENMAP_BAND_CENTRES_NM) == 224 and len(KEPT_BANDS) == 202 and len(WATER_VAPOUR_BANDS) == 22
    assert tuple(f"B{n}" for n in KEPT_BANDS) == HySpecNet11k.default_bands
    torchgeo_nm = np.array([EnMAP.wavelengths[f"B{n}"] for n in range(1, 225)]) * 1000.0
    np.testing.assert_allclose(ENMAP_BAND_CENTRES_NM, torchgeo_nm, atol=0.051)
    assert len({band_label(n) for n in KEPT_BANDS}) == 202  # wavelength labels identify bands uniquely


def test_endmember_spectra_show_their_physical_features():
    vegetation = endmember_spectrum("green vegetation")
    red, nir = reflectance_at(vegetation, 670), reflectance_at(vegetation, 800)
    assert nir > 5 * red  # red edge
    assert reflectance_at(vegetation, 550) > max(red, reflectance_at(vegetation, 450))  # green peak
    assert reflectance_at(vegetation, 1650) > reflectance_at(vegetation, 2050)  # leaf water
    water = endmember_spectrum("clear water")
    assert reflectance_at(water, 800) < 0.01 < reflectance_at(water, 480)
    soil = endmember_spectrum("dry soil")
    assert reflectance_at(soil, 450) < reflectance_at(soil, 700) < reflectance_at(soil, 1650)
    assert reflectance_at(soil, 2205) < min(reflectance_at(soil, 2150), reflectance_at(soil, 2260))  # clay Al-OH
    kaolinite = endmember_spectrum("kaolinite")
    assert reflectance_at(kaolinite, 2165) < reflectance_at(kaolinite, 2130)  # Al-OH doublet
    assert reflectance_at(kaolinite, 2207) < reflectance_at(kaolinite, 2185) > reflectance_at(kaolinite, 2165)
    calcite = endmember_spectrum("calcite")
    assert reflectance_at(calcite, 2340) < 0.8 * min(reflectance_at(calcite, 2250), reflectance_at(calcite, 2440))


def test_simulated_scene_values_and_mixing():
    scene = simulate_scene(48, 48, seed=11, landscape="agricultural")
    again = simulate_scene(48, 48, seed=11, landscape="agricultural")
    np.testing.assert_array_equal(scene.reflectance, again.reflectance)
    assert scene.reflectance.dtype == np.int16 and scene.reflectance.shape == (224, 48, 48)
    assert np.all(scene.reflectance[np.array(WATER_VAPOUR_BANDS) - 1] == NODATA)
    kept = scene.kept_bands
    assert kept.shape == (202, 48, 48) and kept.min() > -500 and kept.max() < 15000
    np.testing.assert_allclose(scene.abundances.sum(axis=0), 1.0, rtol=1e-5)
    vegetated = scene.abundances[scene.endmembers.index("green vegetation")] > 0.8
    assert vegetated.any()
    red = kept[np.argmin(np.abs(WAVELENGTHS_NM - 670))][vegetated]
    nir = kept[np.argmin(np.abs(WAVELENGTHS_NM - 800))][vegetated]
    assert np.median(nir / np.maximum(red, 1)) > 4


def test_scene_geotiff_is_georeferenced_and_names_its_wavelengths(tmp_path):
    path = tmp_path / "scene.tif"
    write_scene_geotiff(simulate_scene(32, 40, seed=2), path)
    with rasterio.open(path) as src:
        assert (src.count, src.dtypes[0], src.crs.to_epsg(), src.nodata) == (202, "int16", 32633, NODATA)
        assert src.res == (30.0, 30.0)
        assert src.descriptions[0] == "418.4 nm" and src.descriptions[-1] == "2445.3 nm"
        assert src.tags(48)["name"] == "b048" and src.tags()["units"] == "surface reflectance x 10000"


@pytest.mark.parametrize("strategy", ["easy", "hard"])
def test_torchgeo_hyspecnet11k_reads_the_simulated_layout(hyspecnet_root, strategy):
    splits = {split: HySpecNet11k(hyspecnet_root, split=split, strategy=strategy) for split in ("train", "val", "test")}
    assert sum(len(dataset) for dataset in splits.values()) == PATCHES and all(len(d) for d in splits.values())
    assert not set(splits["train"].files) & (set(splits["val"].files) | set(splits["test"].files))
    sample = splits["test"][0]
    assert sample["image"].shape == (202, PATCH_SIZE, PATCH_SIZE) and sample["res"] == 30
    assert sample["image"].min() > NODATA  # the water-vapour bands (nodata) are dropped
    if strategy == "hard":  # tilewise: no tile in two splits
        tiles = {split: {path.split("/")[0] for path in dataset.files} for split, dataset in splits.items()}
        assert not tiles["train"] & tiles["val"] and not tiles["train"] & tiles["test"]
        assert not tiles["val"] & tiles["test"]


@pytest.mark.slow
def test_training_steps_reduce_the_loss(hyspecnet_root, tmp_path):
    run = tmp_path / "run"
    training_cli(["fit", "--task", "hycot", "--cr", "8", "--data", str(hyspecnet_root), "--max-steps", "60",
                  "--batch-size", "4", "--pixels-per-patch", "8", "--lr", "3e-3", "--out", str(run), *TINY_MODEL, *CPU])
    with open(run / "metrics.csv") as log:
        losses = [float(row["train_mse"]) for row in csv.DictReader(log) if row.get("train_mse")]
    assert len(losses) >= 5 and losses[-1] < 0.5 * losses[0]


@pytest.mark.slow
def test_fit_evaluate_export_pair(hyspecnet_root, tmp_path, capsys):
    checkpoint, metrics_path, stem = tmp_path / "run/checkpoint.pt", tmp_path / "metrics.json", tmp_path / "hycot_cr16"
    data = ["--data", str(hyspecnet_root)]
    training_cli(["fit", "--task", "hycot", "--cr", "16", *data, "--strategy", "hard", "--max-steps", "3",
                  "--batch-size", "2", "--out", str(checkpoint.parent), *TINY_MODEL, *CPU])
    training_cli(["evaluate", *data, "--checkpoint", str(checkpoint), "--json-out", str(metrics_path), *CPU])
    evaluation = json.loads(metrics_path.read_text())
    assert evaluation["strategy"] == "hard" and evaluation["latent_channels"] == 13
    assert evaluation["bits_per_pixel_per_channel"] == pytest.approx(13 * 32 / 202, abs=1e-4)
    assert set(evaluation["metrics"]) == {"psnr_db", "spectral_angle_deg"}
    training_cli(["export", "--task", "hycot", "--checkpoint", str(checkpoint), "--out", str(stem),
                  "--metrics", str(metrics_path), "--threads", "1"])
    assert "max abs diff" in capsys.readouterr().out

    sessions, contracts = {}, {}
    for part in ("encoder", "decoder"):
        path = tmp_path / f"hycot_cr16_{part}.onnx"
        sessions[part] = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        contracts[part] = contract_from_metadata(sessions[part].get_modelmeta().custom_metadata_map, str(path))
    encoder, decoder = contracts["encoder"], contracts["decoder"]
    assert (encoder.task, decoder.task) == ("hycot_encoder", "hycot_decoder")
    assert encoder.provenance["pair_id"] == decoder.provenance["pair_id"] and len(encoder.provenance["pair_id"]) == 16
    assert encoder.provenance["cr"] == 16 and encoder.provenance["latent_bits"] == 16
    assert encoder.provenance["bits_per_pixel_per_channel"] == round(13 * 32 / 202, 4)
    assert encoder.provenance["model"]["final_norm"] is False
    assert len(encoder.provenance["wavelengths_nm"]) == 202 and "SIMULATED" in encoder.provenance["training_data"]
    assert len(encoder.bands) == 202 and encoder.band_names[0] == "b001" and set(encoder.std) == {10000.0}
    assert encoder.outputs.names == tuple(f"z{i:02d}" for i in range(1, 14)) == tuple(decoder.band_names)
    assert decoder.outputs.names == tuple(encoder.band_names) and decoder.outputs.scale == 10000.0
    assert (set(decoder.mean), set(decoder.std)) == ({1.0}, {65534.0}) and encoder.overlap == decoder.overlap == 0
    assert resolve_bands([band_label(n) for n in KEPT_BANDS], encoder, {}) == list(range(1, 203))
    statistics = encoder.input_statistics  # on principal components: no 202 x 202 covariance
    assert len(statistics["projection"]["axes"]) == 10 and "covariance" not in statistics
    assert len(statistics["components"][0]["mean"]) == 11 and not decoder.input_statistics

    reflectance = HySpecNet11k(hyspecnet_root, split="test", strategy="hard")[0]["image"][None]
    (latent,) = sessions["encoder"].run(["output"], {"image": (reflectance / 10000.0).numpy()})
    codes = 1.0 + np.rint(latent * 65534.0)  # as stored in a compressed file
    (restored,) = sessions["decoder"].run(["output"], {"image": ((codes - 1.0) / 65534.0).astype(np.float32)})
    module = HyCoTTask(**torch.load(checkpoint, weights_only=True)["hyper_parameters"])
    module.load_state_dict(torch.load(checkpoint, weights_only=True)["state_dict"])
    with torch.no_grad():
        latent_torch = module.eval().encoder(scale_reflectance({"image": reflectance})["image"])
        expected = module.decoder(quantise_latent(latent_torch))
    assert restored.shape == (1, 202, PATCH_SIZE, PATCH_SIZE)
    np.testing.assert_allclose(restored, expected.numpy(), atol=1e-4)


@pytest.mark.parametrize("ratio", [4, 8, 16, 32])
def test_shipped_pairs_have_matching_contracts(ratio):
    contracts = {}
    for part in ("encoder", "decoder"):
        path = REPO_ROOT / "models_onnx" / f"hycot_cr{ratio}_enmap_sim_{part}.onnx"
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        contracts[part] = contract_from_metadata(session.get_modelmeta().custom_metadata_map, str(path))
    encoder, decoder = contracts["encoder"], contracts["decoder"]
    assert encoder.provenance["pair_id"] == decoder.provenance["pair_id"] and encoder.provenance["cr"] == ratio
    assert len(encoder.bands) == 202 and len(encoder.outputs.names) == latent_channels(202, ratio)
    assert decoder.band_names == list(encoder.outputs.names) and decoder.outputs.names == tuple(encoder.band_names)
    assert "SIMULATED" in encoder.provenance["training_data"]
    assert "record-statistics --task hycot" in encoder.provenance["input_statistics_command"]
    assert encoder.provenance["metrics"]["metrics"]["psnr_db"] > 20 and encoder.tile_size == 64
    latent = latent_channels(202, ratio)
    assert encoder.provenance["bits_per_pixel_per_channel"] == round(bits_per_pixel_per_channel(202, latent), 4)
    assert encoder.provenance["model"]["final_norm"] is True  # the shipped deviation from the paper
    graph = onnx.load(str(REPO_ROOT / "models_onnx" / f"hycot_cr{ratio}_enmap_sim_encoder.onnx")).graph
    assert sum(node.op_type == "LayerNormalization" for node in graph.node) == 2 * 5 + 1

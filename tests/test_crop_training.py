"""Tests for crop mapping in training/: TSViT and its three multi-modal fusions, masks and variable
date counts, ONNX export parity, the simulated phenology, the PASTIS-R-format fixture read through
torchgeo, collate padding, a few training steps, the CLI and the GeoTIFF time series."""
from __future__ import annotations

import datetime
import json

import numpy as np
import onnxruntime
import pytest
import rasterio
import torch
from torchgeo.datasets import PASTIS

from engine.contract import contract_from_metadata
from training.__main__ import main as training_cli
from training.checkpoint import load_checkpoint
from training.crop_maps import cli as crop_cli
from training.crop_maps.data import EvaluationTiles, RandomTrainingView, crop_dataset, evenly_spaced
from training.crop_maps.evaluate import evaluate_crop
from training.crop_maps.export import example_series, input_names, parity_check, write_crop_onnx
from training.crop_maps.fit import fit_crop
from training.crop_maps.model import FUSIONS, TSViTConfig, build_crop_model, match_nearest_dates
from training.crop_maps.module import ClassProbabilities, segmentation_scores
from training.datasets.pastis_r import PASTISR, collate_series, day_of_year
from training.datasets.pastis_r_format import S1_CHANNELS, S2_BANDS, VOID_LABEL
from training.simulation.crop_geotiffs import write_crop_time_series
from training.simulation.crop_phenology import (
    CROPS,
    SIMULATED_LABELS,
    simulate_series,
    simulate_tile_conditions,
    vegetation_cover,
    write_pastis_r_fixture,
)
from training.trainer import FitRun

TINY = TSViTConfig(image_size=8, patch_size=2, dim=16, temporal_depth=1, spatial_depth=1, heads=2, head_dim=8, mlp_ratio=2)
CHANNELS = {"s2": 10, "s1": 3}
VARIANTS = [(None, ("s2",)), *((fusion, ("s2", "s1")) for fusion in FUSIONS)]
VARIANT_IDS = ["tsvit-s2", *FUSIONS]
CLASSES = 5


def tiny_model(fusion, modalities):
    torch.manual_seed(0)
    return build_crop_model([CHANNELS[m] for m in modalities], CLASSES, fusion, TINY).eval()


def random_series(modalities, dates, batch=2, size=8, seed=0):
    channels = [CHANNELS[m] for m in modalities]
    return example_series(modalities, channels, dates, batch, size, torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def pastis_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("pastis")
    write_pastis_r_fixture(root, patches=10, size=24, seed=3, tiles=2)
    return root


@pytest.mark.parametrize(("fusion", "modalities"), VARIANTS, ids=VARIANT_IDS)
def test_every_variant_maps_series_of_any_length_to_per_pixel_logits(fusion, modalities):
    model = tiny_model(fusion, modalities)
    with torch.no_grad():
        for dates, size in (([6, 9], 8), ([2, 1], 12), ([15, 4], 8)):  # S2 and S1 counts differ
            output = model(*random_series(modalities, dates[: len(modalities)], batch=3, size=size))
            assert output.shape == (3, CLASSES, size, size) and torch.isfinite(output).all()


@pytest.mark.parametrize(("fusion", "modalities"), VARIANTS, ids=VARIANT_IDS)
def test_masked_pixels_and_padding_dates_do_not_change_the_output(fusion, modalities):
    model = tiny_model(fusion, modalities)
    series = random_series(modalities, [5, 7][: len(modalities)])
    with torch.no_grad():
        reference = model(*series)
        noisy = list(series)
        for position in range(0, len(series), 3):
            values, days, mask = series[position : position + 3]
            noisy[position] = values + 50 * torch.randn_like(values) * (1 - mask[:, :, None])  # under mask 0 only
        assert torch.allclose(model(*noisy), reference, atol=1e-5)
        padded = []
        for position in range(0, len(series), 3):  # one more date per modality: padding, random values
            values, days, mask = series[position : position + 3]
            padded += [
                torch.cat([values, torch.randn_like(values[:, :1])], 1),
                torch.cat([days, torch.zeros_like(days[:, :1])], 1),
                torch.cat([mask, torch.zeros_like(mask[:, :1])], 1),
            ]
        assert torch.allclose(model(*padded), reference, atol=1e-5)
        if fusion != "early":  # early fusion keeps an S2-cloudy date as a token when S1 is valid there
            moved = list(series)
            days = series[1].clone()
            days[0, -1] = 200  # date 0 of item 0 is fully masked (example_series): its day is irrelevant
            moved[1] = days
            assert torch.allclose(model(*moved), reference, atol=1e-5)


def test_fully_masked_patch_is_excluded_from_temporal_attention():
    model = tiny_model(None, ("s2",))
    values, days, mask = random_series(("s2",), [4], batch=1)
    mask[0, 1, :2, :2] = 0  # the first 2x2 patch is invalid on date 1

    def temporal_class_tokens(day_of_year):
        dates = model.tokenizer(values, day_of_year, mask)
        sequences, key_valid = model.class_tokens.prepend(dates)
        return dates.valid, model.temporal_encoder(sequences, key_valid)[:, :CLASSES]

    changed = days.clone()
    changed[0, 1] = days[0, 1] % 366 + 100
    with torch.no_grad():
        valid, reference = temporal_class_tokens(days)
        _, moved = temporal_class_tokens(changed)
    assert not valid[0, 1] and valid[1, 1]  # location 0 (the first patch) has no date-1 token
    assert torch.allclose(moved[0], reference[0], atol=1e-6) and not torch.allclose(moved[1], reference[1], atol=1e-4)


def test_early_fusion_matches_each_grid_date_to_the_nearest_usable_date():
    grid = torch.tensor([[10, 40, 100, 0]])
    days = torch.tensor([[12, 35, 44, 0]])
    mask = torch.ones(1, 4, 2, 2)
    mask[0, 1] = 0  # day 35 has no valid pixel: day 40 must take day 44
    values = torch.arange(4.0).view(1, 4, 1, 1, 1).expand(1, 4, 3, 2, 2)
    matched_values, matched_mask = match_nearest_dates(grid, values, days, mask, max_gap_days=12)
    assert matched_values[0, :3, 0, 0, 0].tolist() == [0.0, 2.0, 2.0]
    assert matched_mask[0, :, 0, 0].tolist() == [1.0, 1.0, 0.0, 0.0]  # 100: 56 days away; 0: padding


@pytest.mark.parametrize(
    ("fusion", "modalities"),
    [variant if variant[0] == "early" else pytest.param(*variant, marks=pytest.mark.slow) for variant in VARIANTS],
    ids=VARIANT_IDS,
)
def test_onnx_export_matches_torch_with_dynamic_dates_and_tile_size(tmp_path, fusion, modalities):
    from engine.contract import Band, Modality, ModelContract, Outputs

    graph = ClassProbabilities(tiny_model(fusion, modalities)).eval()
    contract = ModelContract(
        task="crop_map", name="tiny", bands=(), mean=(), std=(),
        modalities=tuple(Modality(m, tuple(Band(f"{m}{i}") for i in range(CHANNELS[m])), (0.0,) * CHANNELS[m],
                                  (1.0,) * CHANNELS[m], 8) for m in modalities),
        outputs=Outputs("classes", tuple(f"class {i}" for i in range(CLASSES))), tile_size=8, overlap=2,
    )
    path = tmp_path / "tiny.onnx"
    channels = [CHANNELS[m] for m in modalities]
    write_crop_onnx(graph, modalities, channels, 8, path, contract)
    cases = ((2, [7, 11, 4], 8), (1, [3, 1, 6], 8 + 2 * TINY.patch_size))  # dates differ by modality, another size
    assert parity_check(graph, path, modalities, channels, cases) < 1e-5
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = {i.name: i for i in session.get_inputs()}
    assert list(inputs) == input_names(modalities)
    assert inputs["s2_doy"].type == "tensor(int64)" and inputs["s2_mask"].type == "tensor(float)"
    (probabilities,) = session.run(["output"], {
        name: tensor.numpy() for name, tensor in zip(input_names(modalities), random_series(modalities, [3, 13][: len(modalities)], 1, 16))
    })
    assert probabilities.shape == (1, CLASSES, 16, 16) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)


def test_collate_pads_series_with_zero_values_day_zero_and_mask_zero():
    samples = [
        {"s2": torch.ones(t, 10, 4, 4), "s2_doy": torch.arange(1, t + 1), "s2_mask": torch.ones(t, 4, 4),
         "label": torch.zeros(4, 4, dtype=torch.long)}
        for t in (3, 5)
    ]
    batch = collate_series(samples)
    assert batch["s2"].shape == (2, 5, 10, 4, 4) and batch["label"].shape == (2, 4, 4)
    assert batch["s2_doy"][0].tolist() == [1, 2, 3, 0, 0] and batch["s2_doy"][1].tolist() == [1, 2, 3, 4, 5]
    assert batch["s2_mask"][0, 3:].sum() == 0 and batch["s2"][0, 3:].abs().sum() == 0


def test_simulated_phenology_follows_crop_calendars():
    days = np.arange(1, 366, dtype=float)
    peak_day = {}
    for name in ("soft_winter_wheat", "corn", "winter_rapeseed", "sunflower"):
        green, dry, flowers = vegetation_cover(CROPS[name], days, np.zeros((1, 1)), np.ones((1, 1)))
        assert np.all(green + dry + flowers <= 1 + 1e-9)
        peak_day[name] = days[green[0].argmax()]
    assert 100 < peak_day["soft_winter_wheat"] < 160 < peak_day["sunflower"] < 195 < peak_day["corn"] < 250
    wheat_green, wheat_dry, _ = vegetation_cover(CROPS["soft_winter_wheat"], np.array([30.0, 180.0, 220.0]), np.zeros((1, 1)), np.ones((1, 1)))
    assert wheat_green[0, 0] > 0.15 and wheat_dry[0, 1] > 0.5 and wheat_green[0, 2] < 0.05  # winter cover, ripe, harvested
    rng = np.random.default_rng(0)
    series = simulate_series(rng, 32, simulate_tile_conditions(rng, 2019))
    assert set(np.unique(series.landscape.labels)) <= {*SIMULATED_LABELS, VOID_LABEL}
    corn = series.landscape.labels == CROPS["corn"].label
    if corn.any():  # maize backscatter (VH) rises from spring to summer (biomass)
        vh = series.s1["s1a"][:, 1][:, corn].mean(axis=1)
        days_s1 = series.s1_days["s1a"]
        assert vh[(days_s1 > 200) & (days_s1 < 240)].mean() > vh[(days_s1 > 60) & (days_s1 < 120)].mean() + 2
    assert not np.array_equal(series.s1_days["s1a"], series.s1_days["s1d"])  # different date sets


def test_fixture_is_read_by_torchgeo_and_by_the_dates_subclass(pastis_root):
    torchgeo_s2 = PASTIS(str(pastis_root), folds=(1, 2, 3, 4, 5), bands="s2")
    torchgeo_s1 = PASTIS(str(pastis_root), folds=(1,), bands="s1a")
    assert len(torchgeo_s2) == 10 and torchgeo_s2[0]["image"].shape[1:] == (10, 24, 24)
    assert torchgeo_s1[0]["image"].shape[1:] == (3, 24, 24) and torchgeo_s2[0]["mask"].shape == (24, 24)
    dataset = PASTISR(pastis_root / "PASTIS-R", folds=(1, 2, 3), modalities=("s2", "s1"))
    sample = dataset[0]
    assert sample["s2"].shape[0] == sample["s2_doy"].shape[0] == sample["s2_mask"].shape[0]
    assert sample["s1"].shape[1:] == (3, 24, 24) and sample["s1"].shape[0] != sample["s2"].shape[0]
    for key in ("s2_doy", "s1_doy"):
        assert sample[key].min() >= 1 and sample[key].max() <= 366 and torch.all(sample[key].diff() > 0)
    assert 0.3 < sample["s2_mask"].mean() < 1  # clouds and nodata are flagged, not everything
    assert torch.all(sample["s2"][sample["s2_mask"][:, None].expand_as(sample["s2"]) == 0] == 0)
    assert torch.equal(sample["label"], torchgeo_s2[0]["mask"])
    assert day_of_year(20190101) == 1 and day_of_year(20191231) == 365 and day_of_year(20201231) == 366


def test_training_view_and_evaluation_tiles_keep_inputs_aligned(pastis_root):
    view = RandomTrainingView(16, {"s2": 6, "s1": 4})
    sample = view(crop_dataset(pastis_root, "train", ("s2", "s1"))[0])
    assert sample["s2"].shape == (6, 10, 16, 16) and sample["s1_mask"].shape == (4, 16, 16)
    assert torch.all(sample["s2_doy"].diff() > 0) and sample["label"].shape == (16, 16)
    tiles = EvaluationTiles(crop_dataset(pastis_root, "test", ("s2",)), 8, {"s2": 5})
    assert len(tiles) == 2 * 9 and tiles[4]["s2"].shape == (5, 10, 8, 8)
    assert evenly_spaced(10, 4).tolist() == [0, 3, 6, 9] and evenly_spaced(3, 4).tolist() == [0, 1, 2]


def test_a_few_training_steps_then_evaluation_on_the_fixture(pastis_root, tmp_path):
    config = TSViTConfig(image_size=16, patch_size=4, dim=16, temporal_depth=1, spatial_depth=1, heads=2, head_dim=8)
    checkpoint = fit_crop(FitRun(pastis_root, tmp_path, max_steps=3, batch_size=2, accelerator="cpu"), ("s2", "s1"),
                          "sync-class-token", config=config, max_dates={"s2": 8, "s1": 8})
    module, saved = load_checkpoint(checkpoint, "crop")  # weights_only=True inside
    assert saved["provenance"]["steps"] == 3 and saved["data"]["simulation"]["seed"] == 3
    assert module.hparams.class_codes[0] == 0 and VOID_LABEL not in module.hparams.class_codes
    result = evaluate_crop(checkpoint, pastis_root, "test", batch_size=4, accelerator="cpu")
    assert result["tiles"] == 2 and set(result["metrics"]) == {"overall_accuracy", "mean_accuracy", "mean_iou"}
    assert 0 <= result["metrics"]["mean_iou"] <= result["metrics"]["overall_accuracy"] <= 1


def test_segmentation_scores_skip_absent_classes():
    confusion = torch.tensor([[8, 2, 0], [1, 9, 0], [0, 0, 0]])
    scores = segmentation_scores(confusion)
    assert scores["overall_accuracy"] == pytest.approx(17 / 20)
    assert scores["mean_accuracy"] == pytest.approx((0.8 + 0.9) / 2)
    assert scores["mean_iou"] == pytest.approx((8 / 11 + 9 / 12) / 2) and torch.isnan(scores["iou_per_class"][2])


def test_cli_fusion_names_match_the_models():
    assert crop_cli.FUSIONS == FUSIONS


@pytest.mark.slow
def test_cli_fit_evaluate_export_writes_the_crop_contract(pastis_root, tmp_path):
    run, tiny = tmp_path / "run", ["--tile-size", "16", "--patch-size", "4", "--tsvit-dim", "16", "--temporal-depth", "1",
                                   "--spatial-depth", "1", "--tsvit-heads", "2", "--tsvit-head-dim", "8"]
    training_cli(["fit", "--task", "crop", "--data", str(pastis_root), "--modalities", "s1,s2", "--fusion", "early",
                  "--max-steps", "2", "--batch-size", "2", "--max-dates-s2", "6", "--max-dates-s1", "9",
                  "--accelerator", "cpu", "--out", str(run), *tiny])
    training_cli(["evaluate", "--data", str(pastis_root), "--checkpoint", str(run / "checkpoint.pt"),
                  "--accelerator", "cpu", "--json-out", str(run / "metrics.json")])
    training_cli(["export", "--checkpoint", str(run / "checkpoint.pt"), "--metrics", str(run / "metrics.json"),
                  "--out", str(run / "crop.onnx")])
    session = onnxruntime.InferenceSession(str(run / "crop.onnx"), providers=["CPUExecutionProvider"])
    contract = contract_from_metadata(session.get_modelmeta().custom_metadata_map, "crop.onnx")
    assert contract.task == "crop_map" and contract.bands == () and contract.tile_size == 16
    assert [m.name for m in contract.modalities] == ["s2", "s1"]
    assert [b.name for b in contract.modalities[0].bands] == list(S2_BANDS)
    assert [b.name for b in contract.modalities[1].bands] == list(S1_CHANNELS)
    assert [m.max_dates for m in contract.modalities] == [6, 9] and contract.overlap == 5
    assert contract.outputs.names[0] == "background" and all(c.startswith("#") for c in contract.outputs.colors)
    assert contract.provenance["fusion"] == "early" and "SIMULATED" in contract.provenance["training_data"]
    assert json.loads((run / "metrics.json").read_text())["metrics"] == contract.provenance["metrics"]["metrics"]
    # per-modality statistics of single-date pixels, and the bound on the median over a series' dates
    for modality in contract.modalities:
        statistics = contract.input_statistics[modality.name]
        assert len(statistics["mean"]) == len(modality.bands) and statistics["pixels"] > 0
        assert 0 < statistics["series_distance_threshold"] < statistics["distance_threshold"]


def test_geotiff_time_series_is_georeferenced_with_dates_in_names_and_descriptions(tmp_path):
    files = write_crop_time_series(tmp_path, size=32, seed=1, year=2023)
    assert files.s2[0].name == f"S2_{files.s2_dates[0]:%Y%m%d}.tif" and files.s2_dates[0].year == 2023
    assert len(files.s2) == len(files.s2_dates) > 20 and len(files.s1) > 40
    with rasterio.open(files.s2[0]) as source:
        assert source.crs.to_epsg() == 32631 and source.res == (10.0, 10.0) and source.count == 10
        assert source.descriptions == S2_BANDS and source.nodata == 0 and source.dtypes[0] == "uint16"
    with rasterio.open(files.s2_stack) as stack, rasterio.open(files.s2[1]) as single:
        assert stack.count == 10 * len(files.s2)
        assert stack.descriptions[10] == f"{files.s2_dates[1].isoformat()} B02"
        assert np.array_equal(stack.read(range(11, 21)), single.read())
        assert stack.tags(11) == {"date": files.s2_dates[1].isoformat(), "band": "B02"}
    with rasterio.open(files.s1_stack) as stack:
        assert stack.descriptions[:3] == tuple(f"{files.s1_dates[0].isoformat()} {b}" for b in S1_CHANNELS)
    with rasterio.open(files.labels) as labels:
        assert set(np.unique(labels.read(1))) <= {*SIMULATED_LABELS, VOID_LABEL}
    assert datetime.date(2023, 1, 1) <= files.s1_dates[0] < files.s1_dates[-1] <= datetime.date(2023, 12, 31)

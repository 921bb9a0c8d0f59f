"""Tests for reBEN scene labels in training/: fixture layout, store, label order, CutMix with label
propagation, augmentation consistency, fit per backbone, federated FedAvg (in-process and on Ray) and
ONNX export."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime
import pytest
import rasterio
import timm
import torch
from flwr.common import ndarrays_to_parameters
from torch.utils.data import DataLoader
from torchgeo.datasets import BigEarthNetV2

from engine.contract import contract_from_metadata
from engine.input_distribution import InputDistribution
from training.__main__ import main as training_cli
from training.checkpoint import load_checkpoint
from training.datasets.ben_labels import (
    CLASS_COLOURS,
    CLASS_NAMES,
    CLC_TO_CLASS,
    NO_CLASS,
    TORCHGEO_CLASS_NAMES,
)
from training.datasets.ben_store import BigEarthNetV2Store, write_store
from training.datasets.reben import BigEarthNetV2Nearest, ReferenceInputs
from training.datasets.reben_format import (
    BAND_MEAN,
    MODALITY_BANDS,
    S2_BAND_GSD_M,
    S2_FILE_BANDS,
    reference_map_path,
    s1_patch_folder,
    s2_patch_folder,
)
from training.schedule import warmup_cosine
from training.scene_labels import cli as scene_label_cli
from training.scene_labels.consistency import (
    consistency,
    load_pixel_series,
    natural_deviation,
    parse_augmentation,
)
from training.scene_labels.cutmix import Box, labels_from_mask, mix
from training.scene_labels.data import scene_label_dataset
from training.scene_labels.federated import (
    CLIENT_RUNTIMES,
    model_arrays,
    parameters_bytes,
    partition,
    run_federated,
    scene_label_scores,
    split_labels,
)
from training.scene_labels.fit import fit_scene_labels
from training.scene_labels.model import MODELS, scene_backbone
from training.scene_labels.module import AUGMENTATIONS, SceneLabelsTask
from training.simulation.bigearthnet_fixture import write_bigearthnet_fixture
from training.simulation.pixel_time_series import write_pixel_series
from training.trainer import FitRun

PATCHES = 15  # 9 train, 3 validation, 3 test (5 tiles, split by tile)
URBAN, ARABLE, PASTURES = (CLASS_NAMES.index(name) for name in ("Urban fabric", "Arable land", "Pastures"))
TINY = {"width": 4, "depth": 1}


@pytest.fixture(scope="module")
def ben_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("bigearthnet")
    write_bigearthnet_fixture(root, PATCHES, seed=2)
    return root


@pytest.fixture(scope="module")
def ben_store(ben_root, tmp_path_factory):
    store = tmp_path_factory.mktemp("store") / "store"
    write_store(ben_root, store)
    return store


def test_torchgeo_reads_the_fixture_with_labels_matching_the_maps(ben_root):
    sizes = {"train": 0, "val": 0, "test": 0}
    for split in sizes:
        dataset = BigEarthNetV2(ben_root, split=split, bands="all")
        sizes[split] = len(dataset)
        for sample in map(dataset.__getitem__, range(len(dataset))):
            assert sample["image_s1"].shape == (2, 120, 120) and sample["image_s2"].shape == (12, 120, 120)
            in_map = {int(value) for value in sample["mask"].unique() if value < 19}
            assert in_map == set(sample["label"].nonzero().flatten().tolist())
    assert sizes == {"train": 9, "val": 3, "test": 3}


def test_fixture_files_are_georeferenced_patches_at_native_resolution(ben_root):
    row = BigEarthNetV2(ben_root, split="train").metadata_df.loc[0]
    patch_id, s1_name = row["patch_id"], row["s1_name"]
    paths = [s2_patch_folder(ben_root, patch_id) / f"{patch_id}_{band}.tif" for band in S2_FILE_BANDS]
    paths += [s1_patch_folder(ben_root, s1_name) / f"{s1_name}_{band}.tif" for band in ("VV", "VH")]
    paths.append(reference_map_path(ben_root, patch_id))
    bounds = set()
    for path in paths:
        with rasterio.open(path) as source:
            band = path.stem.rsplit("_", 1)[-1]
            gsd = S2_BAND_GSD_M.get(band, 10)
            assert source.crs.to_epsg() in range(32601, 32661)  # UTM north
            assert source.res == (gsd, gsd) and source.width == 1200 // gsd
            bounds.add(tuple(source.bounds))
    assert len(bounds) == 1  # S1, S2 and the map cover the same 1200 m square


def test_store_samples_equal_the_geotiff_tree(ben_root, ben_store):
    for bands in ("all", "s1", "s2"):
        for split in ("train", "val", "test"):
            from_files = BigEarthNetV2Nearest(ben_root, split=split, bands=bands)
            from_store = BigEarthNetV2Store(ben_store, split=split, bands=bands)
            from_torchgeo = BigEarthNetV2(ben_root, split=split, bands=bands)
            assert len(from_files) == len(from_store) > 0
            for index in range(len(from_files)):
                expected, actual, torchgeo = from_files[index], from_store[index], from_torchgeo[index]
                assert expected.keys() == actual.keys() == torchgeo.keys()
                for key in expected:
                    assert actual[key].dtype == expected[key].dtype and torch.equal(actual[key], expected[key])
                assert torch.equal(actual["mask"], torchgeo["mask"]) and torch.equal(actual["label"], torchgeo["label"])
    sample, torchgeo = BigEarthNetV2Store(ben_store)[0], BigEarthNetV2(ben_root)[0]
    ten_metre = [S2_FILE_BANDS.index(band) for band in ("B02", "B03", "B04", "B08")]
    assert torch.equal(sample["image_s2"][ten_metre], torchgeo["image_s2"][ten_metre])
    assert (sample["image_s1"] - torchgeo["image_s1"]).abs().max() <= 0.5  # torchgeo rounds dB to int


def test_store_serves_dataloader_workers_after_the_parent_read_it(ben_store):
    dataset = scene_label_dataset(ben_store, "train", "s1,s2", flips=True)
    assert dataset[0]["image"].shape == (12, 120, 120)  # the parent opens the LMDB environment
    batches = list(DataLoader(dataset, batch_size=4, num_workers=2))
    assert sum(len(batch["label"]) for batch in batches) == 9
    assert batches[0]["mask"].shape == (4, 120, 120) and batches[0]["label"].dtype == torch.float32


def test_label_order_is_alphabetical_and_mapped_explicitly_from_torchgeo():
    assert list(CLASS_NAMES) == sorted(CLASS_NAMES) and len(CLASS_NAMES) == 19
    assert list(TORCHGEO_CLASS_NAMES) == BigEarthNetV2.class_set
    assert dict(zip(CLASS_NAMES, CLASS_COLOURS)) == BigEarthNetV2.clc_colors
    torchgeo_codes = {code: BigEarthNetV2.class_set[ordinal] for code, ordinal in BigEarthNetV2.clc_codes.items()}
    assert {code: CLASS_NAMES[index] for code, index in CLC_TO_CLASS.items()} == torchgeo_codes

    torchgeo_label = torch.zeros(19, dtype=torch.long)
    torchgeo_label[[0, 2]] = 1  # torchgeo: Urban fabric, Arable land
    mask = torch.tensor([[[0, 2, 4, 122]]])  # ordinals of urban, arable, pastures; 122 stays unmapped
    image_s1 = torch.stack([torch.full((1, 4), -20.0), torch.full((1, 4), -10.0)])  # torchgeo: VH, VV
    sample = ReferenceInputs("s1,s2")(
        {"image_s1": image_s1, "image_s2": torch.arange(12.0)[:, None, None].expand(12, 1, 4), "mask": mask,
         "label": torchgeo_label}
    )
    assert sample["label"].nonzero().flatten().tolist() == sorted([URBAN, ARABLE])
    assert sample["mask"].tolist() == [[URBAN, ARABLE, PASTURES, NO_CLASS]]
    assert sample["image"][:2, 0, 0].tolist() == [-10.0, -20.0]  # VV, VH
    assert sample["image"][2:, 0, 0].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 10, 11]  # no B01, B09
    assert list(MODALITY_BANDS["s1,s2"]) == ["VV", "VH", *MODALITY_BANDS["s2"]]


def _two_scenes():
    """Scene A: urban left half, arable right half; scene B: pastures, one pixel outside the
    nomenclature. Images carry their scene's number so the pasted box is visible."""
    mask = torch.empty(2, 8, 8, dtype=torch.long)
    mask[0, :, :4], mask[0, :, 4:] = URBAN, ARABLE
    mask[1] = PASTURES
    mask[1, 0, 0] = NO_CLASS
    image = torch.stack([torch.zeros(2, 8, 8), torch.ones(2, 8, 8)])
    return {"image": image, "mask": mask, "label": labels_from_mask(mask)}


def test_cutmix_with_label_propagation_erases_covered_and_adds_pasted_classes():
    batch = _two_scenes()
    partner = torch.tensor([1, 0])
    right_half = Box(top=0, left=4, height=8, width=4)
    mixed = mix(batch, partner, right_half, "cutmix-lp")
    assert mixed["label"][0].nonzero().flatten().tolist() == sorted([URBAN, PASTURES])  # arable erased
    assert mixed["image"][0, :, :, 4:].eq(1).all() and mixed["image"][0, :, :, :4].eq(0).all()
    assert mixed["label"][1].nonzero().flatten().tolist() == sorted([ARABLE, PASTURES])  # urban not pasted
    corner = Box(top=0, left=0, height=1, width=1)  # pastes only B's pixel outside the nomenclature
    assert mix(batch, partner, corner, "cutmix-lp")["label"][0].nonzero().flatten().tolist() == sorted([URBAN, ARABLE])

    plain = mix(batch, partner, right_half, "cutmix")  # Yun et al.: mixed by area (half)
    assert plain["label"][0, ARABLE] == 0.5 and plain["label"][0, PASTURES] == 0.5 and plain["label"][0, URBAN] == 0.5


def test_consistency_scores_on_constructed_and_simulated_series(tmp_path):
    series = np.array([[[0.1, 0.1], [0.2, 0.2], [0.4, 0.4], [np.nan, np.nan]]])  # 1 pixel, 4 dates
    nearest_other = [0.1 * 2**0.5, 0.1 * 2**0.5, 0.2 * 2**0.5]
    assert natural_deviation(series) == pytest.approx(np.mean(nearest_other))
    assert parse_augmentation("brightness")[0] == "brightness:1.1"

    path = write_pixel_series(tmp_path / "series.npz", pixels_per_cover=10, dates=24, seed=1)
    results = {r.augmentation: r for r in consistency(load_pixel_series(path), [
        "brightness:1", "brightness:1.02", "brightness:1.5", "solarize:0.3", "grayscale"])}
    assert results["brightness:1"].score == 0
    assert results["brightness:1.02"].consistent
    for inconsistent in ("brightness:1.5", "solarize:0.3", "grayscale"):
        assert not results[inconsistent].consistent and results[inconsistent].ratio > 3


def test_augmentation_consistency_cli_prints_table_and_writes_csv(tmp_path, capsys):
    series = str(tmp_path / "s.npz")
    training_cli(["simulate-pixel-series", "--out", series, "--pixels-per-cover", "5", "--dates", "12"])
    training_cli(["augmentation-consistency", "--data", series, "--augment", "grayscale,noise:0.001"])
    assert "grayscale" in capsys.readouterr().out
    lines = (tmp_path / "s_consistency.csv").read_text().splitlines()
    assert lines[0] == "augmentation,score,natural_deviation,ratio,consistent" and len(lines) == 3
    assert lines[1].endswith("False") and lines[2].endswith("True")


def test_cli_lists_match_the_implementations():
    assert scene_label_cli.MODELS == MODELS and scene_label_cli.AUGMENTS == AUGMENTATIONS
    assert scene_label_cli.CLIENT_RUNTIMES == CLIENT_RUNTIMES


def test_convmixer_default_is_convmixer_768_32():
    # Trockman & Kolter's ConvMixer-768/32 (patch 7, kernel 7, ReLU), as timm registers it
    ours = scene_backbone("convmixer", 12, 19)
    reference = timm.create_model("convmixer_768_32", pretrained=False, in_chans=12, num_classes=19)
    assert [type(m) for m in ours.modules()] == [type(m) for m in reference.modules()]
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}
    assert ours.blocks[0][0].fn[0].kernel_size == (7, 7) and isinstance(ours.stem[1], torch.nn.ReLU)


def test_learning_rate_warms_up_linearly_then_decays_by_cosine():
    factors = [warmup_cosine(step, 4, 20) for step in range(21)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0] and factors[4] == 1.0
    assert factors[12] == pytest.approx(0.5) and factors[20] == pytest.approx(0.0)


@pytest.mark.parametrize("model", MODELS)
def test_fit_a_few_steps_with_each_backbone(model, ben_store, tmp_path):
    torch.set_num_threads(1)
    checkpoint = fit_scene_labels(
        FitRun(ben_store, tmp_path, max_steps=3, batch_size=4, accelerator="cpu"), "s1,s2", model, TINY["width"],
        TINY["depth"], "cutmix-lp", validate_every=3,
    )
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["task"] == "scene-labels" and saved["provenance"]["steps"] == 3
    assert 0 <= saved["provenance"]["best_validation_ap_macro"] <= 1


def test_dirichlet_partition_covers_every_patch_once_and_skews_labels():
    rng = np.random.default_rng(0)
    labels = rng.random((300, 19)) < 0.15
    labels[np.arange(300), rng.integers(0, 19, 300)] = True
    skewed = partition(labels, 4, alpha=0.1, seed=0)
    assert sorted(np.concatenate(skewed).tolist()) == list(range(300)) and all(len(share) for share in skewed)
    even = partition(labels, 4, alpha=None, seed=0)
    assert [len(share) for share in even] == [75] * 4
    spread = lambda shares: np.std([labels[share].mean(axis=0) for share in shares], axis=0).mean()  # noqa: E731
    assert spread(skewed) > 2 * spread(even)


@pytest.mark.slow
def test_federated_two_rounds_three_clients(ben_root, tmp_path, capsys):
    torch.set_num_threads(1)
    result = run_federated(
        ben_root, clients=3, rounds=2, non_iid="dirichlet:1.0", model="convmixer", width=8, depth=1,
        local_steps=2, batch_size=4, out=tmp_path / "global",
    )
    rounds = result["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2] and sum(result["client_patches"]) == 9
    assert rounds[0]["bytes_to_clients"] == 0  # the initial model is the strategy's, nothing sent
    global_model = SceneLabelsTask(
        [0.0] * 12, [1.0] * 12, list(CLASS_NAMES), list(CLASS_COLOURS), "convmixer", width=8, depth=1
    )
    payload = parameters_bytes(ndarrays_to_parameters(model_arrays(global_model)))  # serialised weights
    for report in rounds[1:]:
        assert report["bytes_to_clients"] == report["bytes_from_clients"] == 3 * payload
    assert all(0 <= r["ap_macro"] <= 1 for r in rounds)
    assert len(split_labels(ben_root, "train")) == 9

    # the saved checkpoint is the final global model (its score is the last round's), and it exports
    module, saved = load_checkpoint(tmp_path / "global" / "checkpoint.pt", "scene-labels")
    assert saved["provenance"]["federated"]["rounds"] == 2 and saved["provenance"]["steps"] == 4
    _, metrics = scene_label_scores(module, scene_label_dataset(ben_root, "test", "s1,s2"), 4)
    assert metrics["ap_macro"] == pytest.approx(rounds[-1]["ap_macro"])
    training_cli(["export", "--checkpoint", str(tmp_path / "global" / "checkpoint.pt"), "--out",
                  str(tmp_path / "federated.onnx")])
    assert "onnxruntime vs torch max abs diff" in capsys.readouterr().out


@pytest.mark.slow
def test_federated_clients_as_ray_actors_give_the_in_process_global_model(ben_root, tmp_path, capsys):
    """Four clients as actors of Flower's simulation engine on a 2-CPU Ray: the same rounds, bytes and
    global model as in this process (each client's round is seeded; FedAvg sums in client order)."""
    ray = pytest.importorskip("ray")
    torch.set_num_threads(1)  # as each 1-CPU actor
    options = {"clients": 4, "rounds": 2, "non_iid": "dirichlet:1.0", "model": "convmixer", "width": 8, "depth": 1,
               "local_steps": 2, "batch_size": 4}
    in_process = run_federated(ben_root, out=tmp_path / "in_process", **options)
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=80 * 2**20,
             log_to_driver=False, logging_level="warning")
    try:
        on_ray = run_federated(ben_root, client_runtime="ray", client_cpus=1, out=tmp_path / "ray", **options)
    finally:
        ray.shutdown()
    assert on_ray["client_patches"] == in_process["client_patches"] and on_ray["client_runtime"] == "ray"
    for expected, actual in zip(in_process["rounds"], on_ray["rounds"], strict=True):
        for key in ("round", "bytes_to_clients", "bytes_from_clients"):
            assert actual[key] == expected[key]
        for key in ("ap_macro", "ap_micro", "loss", "client_train_loss"):
            assert actual[key] == pytest.approx(expected[key], abs=1e-6, nan_ok=True)
    assert on_ray["rounds"][1]["bytes_from_clients"] > 0
    expected_weights = load_checkpoint(tmp_path / "in_process" / "checkpoint.pt")[0].state_dict()
    for name, tensor in load_checkpoint(tmp_path / "ray" / "checkpoint.pt")[0].state_dict().items():
        torch.testing.assert_close(tensor, expected_weights[name], atol=1e-6, rtol=0)
    training_cli(["export", "--checkpoint", str(tmp_path / "ray" / "checkpoint.pt"), "--out",
                  str(tmp_path / "ray.onnx")])
    assert "onnxruntime vs torch max abs diff" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_fit_evaluate_export_with_contract_and_parity(ben_store, tmp_path, capsys):
    torch.set_num_threads(1)
    run, model = tmp_path / "run", tmp_path / "scene.onnx"
    training_cli([
        "fit", "--task", "scene-labels", "--data", str(ben_store), "--modalities", "s1,s2", "--model", "resnet50",
        "--model-width", "4", "--model-depth", "1", "--max-steps", "2", "--batch-size", "4", "--accelerator", "cpu",
        "--out", str(run),
    ])
    training_cli([
        "evaluate", "--data", str(ben_store), "--checkpoint", str(run / "checkpoint.pt"), "--accelerator", "cpu",
        "--json-out", str(run / "metrics.json"),
    ])
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    assert set(metrics) == {f"{m}_{a}" for m in ("ap", "f1", "precision") for a in ("macro", "micro")}
    training_cli(["export", "--checkpoint", str(run / "checkpoint.pt"), "--metrics", str(run / "metrics.json"),
                  "--out", str(model)])
    assert "max abs diff" in capsys.readouterr().out

    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    contract = contract_from_metadata(session.get_modelmeta().custom_metadata_map, str(model))
    assert contract.task == "scene_labels" and contract.band_names == list(MODALITY_BANDS["s1,s2"])
    assert contract.mean == tuple(BAND_MEAN[band] for band in contract.band_names)
    assert contract.bands[0].matches("vv") and contract.bands[9].matches("B08A")
    assert (contract.tile_size, contract.overlap, contract.gsd_m) == (120, 0, 10.0)
    assert contract.outputs.kind == "classes" and contract.outputs.names == CLASS_NAMES
    assert contract.outputs.colors == CLASS_COLOURS and contract.provenance["metrics"]["metrics"] == metrics
    assert contract.provenance["modalities"] == "s1,s2" and "GENERATED" in contract.provenance["training_data"]
    [input_spec], [output_spec] = session.get_inputs(), session.get_outputs()
    assert (input_spec.name, output_spec.name) == ("image", "output")

    sample = BigEarthNetV2Store(ben_store, split="test", transforms=ReferenceInputs("s1,s2"))[0]
    raw = sample["image"][None]
    standardised = (raw - torch.tensor(contract.mean)[:, None, None]) / torch.tensor(contract.std)[:, None, None]
    (probabilities,) = session.run(["output"], {"image": standardised.numpy()})
    module, _ = load_checkpoint(run / "checkpoint.pt", "scene-labels")
    with torch.no_grad():
        expected = torch.sigmoid(module(raw)).numpy()
    assert probabilities.shape == (1, 19, 1, 1)
    np.testing.assert_allclose(probabilities[:, :, 0, 0], expected, atol=1e-5)

    # the training inputs' statistics (engine/input_distribution.py): a held-out patch is like them,
    # the same patch divided by 10 (another product's scaling) is not
    distribution = InputDistribution(contract.input_statistics)
    assert contract.input_statistics["pixels"] > 0 and len(contract.input_statistics["components"]) > 1
    pixels = raw[0].flatten(1).numpy()
    assert np.mean(distribution.distances(pixels) > distribution.threshold) < 0.05
    assert np.mean(distribution.distances(pixels / 10) > distribution.threshold) > 0.95

    # a model exported without them gets them in place, its graph untouched
    before = onnx.load(model)
    training_cli(["record-statistics", "--task", "scene-labels", "--data", str(ben_store), "--model", str(model),
                  "--seed", "1"])
    after = onnx.load(model)
    assert after.graph.SerializeToString() == before.graph.SerializeToString()
    recorded = contract_from_metadata({p.key: p.value for p in after.metadata_props}, str(model))
    assert recorded.input_statistics["distance_threshold"] != contract.input_statistics["distance_threshold"]
    assert "record-statistics" in recorded.provenance["input_statistics_command"]

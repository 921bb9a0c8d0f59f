"""Importing reBEN's published classifiers (Clasen et al., arXiv:2407.03653): checkpoints in the hub's
layout (configilm networks with random weights under the authors' names, model.safetensors with its
config.json, or a Lightning .ckpt) become scene_labels models; on real GeoTIFFs the engine's
probabilities equal the authors' forward pass (configilm's band orders, statistics and class order);
wrong files and options are refused and leave nothing behind."""
import argparse
import json
import time

import numpy as np
import pytest
import rasterio
import torch
from configilm.extra.BENv2_utils import NEW_LABELS, STANDARD_BANDS

from engine.tasks import run_task
from raster_fixtures import write_raster
from reben_reference import S2_ESA_ORDER, AuthorsClassifier, reben_bands
from training.__main__ import _parser
from training.__main__ import main as training_main
from training.importers import ImportRefused, import_model
from training.scene_labels import importers as reben

V011_ALL = ("B02", "B03", "B04", "B08", "B05", "B06", "B07", "B11", "B12", "B8A", "VH", "VV")  # hub model cards


@pytest.fixture(autouse=True)
def two_threads():
    torch.set_num_threads(2)


def _engine_probabilities(tmp_path, inputs, model):
    result = run_task("classify_scenes", {"input": inputs, "output": str(tmp_path / "scenes.gpkg"), "model": str(model),
                                          "probabilities": str(tmp_path / "p.tif"), "min_valid": 0.5},
                      lambda *_: None, lambda: False)
    assert result["names"] == list(reben.CLASS_NAMES)
    with rasterio.open(tmp_path / "p.tif") as raster:
        return {name: raster.read(i + 1)[0] for i, name in enumerate(result["names"])}


def test_published_safetensors_and_config_import_and_run_like_the_authors(tmp_path, capsys):
    authors = AuthorsClassifier("resnet50", 10, seed=1)
    checkpoint = authors.publish(tmp_path / "hub" / "resnet50-s2-v0.2.0")
    model = tmp_path / "models" / "reben_resnet50_s2.onnx"
    started = time.perf_counter()
    training_main(["import", "--source", "reben", "--checkpoint", str(checkpoint), "--out", str(model)])
    seconds = time.perf_counter() - started
    printed = capsys.readouterr().out  # torch.onnx reports its steps before the result
    report = json.loads(printed[printed.index('{\n  "paths"'):])
    print(f"\nreben resnet50 S2 import: {seconds:.1f} s, onnxruntime vs torch {report['max_abs_diff']:.1e}")
    card = model.with_suffix(".md").read_text()
    assert "arXiv:2407.03653" in card and "MIT" in card and "Release v0.2.0" in card
    assert "B02, B03, B04, B05, B06, B07, B08, B8A, B11, B12" in card

    s2 = reben_bands(S2_ESA_ORDER, 120, 240, seed=2)  # one file of all 12 S2 bands, ESA order, two patches
    path = write_raster(tmp_path / "S2_L2A.tif", np.clip(s2, 1, None).round().astype("uint16"),
                        descriptions=S2_ESA_ORDER)
    ours = _engine_probabilities(tmp_path, path, model)
    model_bands = STANDARD_BANDS[10]  # configilm (v0.2.0): B02..B12 without B01, B09
    values = np.stack([np.clip(s2, 1, None).round()[S2_ESA_ORDER.index(b)] for b in model_bands])
    expected = authors.probabilities(values, model_bands)
    spread = np.concatenate(list(expected.values()))
    assert spread.std() > 0.05  # the random network says something
    worst = max(float(np.abs(ours[name] - expected[name]).max()) for name in NEW_LABELS)
    print(f"engine vs the authors' forward pass: max |difference| {worst:.1e}")
    assert worst < 1e-4


def test_lightning_checkpoint_of_release_v011_takes_its_band_order(tmp_path):
    authors = AuthorsClassifier("resnet50", 12, seed=3)
    checkpoint = tmp_path / "epoch=19-step=1000.ckpt"
    torch.save({"epoch": 19, "global_step": 1000, "pytorch-lightning_version": "2.2.1",
                "state_dict": authors.state_dict(), "optimizer_states": [], "lr_schedulers": []}, checkpoint)
    model = tmp_path / "reben_v011.onnx"
    options = argparse.Namespace(backbone="resnet50", bands="s1s2", release="v0.1.1")
    result = import_model("reben", checkpoint, model, options)
    assert result["max_abs_diff"] < reben.PARITY_TOLERANCE

    s2 = np.clip(reben_bands(S2_ESA_ORDER, 120, 120, seed=4), 1, None).round()
    s1 = reben_bands(("VV", "VH"), 120, 120, seed=5)
    inputs = [write_raster(tmp_path / "S2.tif", s2.astype("uint16"), descriptions=S2_ESA_ORDER),
              write_raster(tmp_path / "S1.tif", s1.astype("float32"), descriptions=("VV", "VH"))]
    ours = _engine_probabilities(tmp_path, inputs, model)
    by_name = {**{b: s2[i] for i, b in enumerate(S2_ESA_ORDER)}, "VV": s1[0].astype("float32"),
               "VH": s1[1].astype("float32")}
    expected = authors.probabilities(np.stack([by_name[b] for b in V011_ALL]), V011_ALL)
    for name in NEW_LABELS:
        np.testing.assert_allclose(ours[name], expected[name], atol=1e-4)


def _assert_nothing_written(folder):
    assert [p.name for p in folder.iterdir()] == [], "a refused import must leave no file behind"


def test_wrong_checkpoints_and_options_are_refused(tmp_path):
    published = AuthorsClassifier("resnet50", 10, seed=0).publish(tmp_path / "resnet50-s2-v0.2.0")
    bare = tmp_path / "downloads" / "model.safetensors"  # the same weights without config.json or release name
    bare.parent.mkdir()
    bare.write_bytes(published.read_bytes())
    out = tmp_path / "out"
    out.mkdir()

    def refused(checkpoint, match, **options):
        given = {"backbone": None, "bands": None, "release": None} | options
        with pytest.raises(ImportRefused, match=match):
            import_model("reben", checkpoint, out / "m.onnx", argparse.Namespace(**given))
        _assert_nothing_written(out)

    refused(bare, "holds s2 weights \\(10 input bands\\), not the 12 bands of --bands s1s2; give --bands s2",
            backbone="resnet50", bands="s1s2", release="v0.2.0")
    refused(published, "--bands s1s2 contradicts .*config.json beside the checkpoint \\(s2\\)", bands="s1s2")
    refused(bare, "is not reBEN's resnet101 classifier .*missing: model.vision_encoder.layer3.10",
            backbone="resnet101", bands="s2", release="v0.2.0")
    refused(bare, "--backbone resnet_nope: .*the published backbones are resnet50", backbone="resnet_nope",
            bands="s2", release="v0.2.0")
    refused(bare, "cannot tell the release .*give --release v0.2.0", backbone="resnet50", bands="s2")
    refused(published, "names release v0.2.0 but --release is v0.1.1", release="v0.1.1")
    refused(bare, "needs --backbone .* and --bands", release="v0.2.0")
    truncated = tmp_path / "truncated" / "model.safetensors"
    truncated.parent.mkdir()
    truncated.write_bytes(bare.read_bytes()[:4096])
    refused(truncated, "not a readable safetensors file", backbone="resnet50", bands="s2", release="v0.2.0")


def test_band_and_class_orders_are_the_authors_and_the_cli_choices_the_importers():
    assert reben.RELEASE_BANDS["v0.1.1"]["s1s2"] == V011_ALL
    assert reben.RELEASE_BANDS["v0.2.0"] == {"s1": tuple(STANDARD_BANDS[2]), "s2": tuple(STANDARD_BANDS[10]),
                                             "s1s2": tuple(STANDARD_BANDS[12])}
    assert reben.PUBLISHED_CLASSES == tuple(NEW_LABELS)
    (commands,) = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    options = {a.dest: a for a in commands.choices["import"]._actions}
    assert tuple(options["bands"].choices) == reben.MODALITIES
    assert tuple(options["release"].choices) == reben.RELEASES

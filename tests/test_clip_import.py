"""Importing remote-sensing CLIPs in open_clip's format (RemoteCLIP, GeoRSCLIP, SkyCLIP): one import
writes the image and text encoders as a pair; a tiny open_clip model with random weights, saved in
RemoteCLIP's layout (a plain state dict) and SkyCLIP's (a zipped training checkpoint), indexes a
real GeoTIFF and answers a query with the scores torch gives; presets pick the published
architecture and activation from the weights; wrong files and options are refused."""
import argparse
import json
import time

import numpy as np
import open_clip
import pytest
import torch

from clip_reference import configured_clip, remoteclip_checkpoint, skyclip_checkpoint
from engine.runtime import Model
from engine.tasks import run_task
from engine.tasks.search_results import embed_text
from raster_fixtures import write_raster
from test_text_search_training import TINY_CLIP
from training.__main__ import _parser
from training.__main__ import main as training_main
from training.importers import ImportRefused, import_model
from training.text_search import importers as clip_import

SENTENCES = ["an airport with many airplanes", "a river crossing farmland", "dense green forest next to the city"]


@pytest.fixture(autouse=True)
def two_threads():
    torch.set_num_threads(2)


@pytest.fixture
def authors(tmp_path):
    """A tiny CLIP trained from OpenAI's weights would use QuickGELU, as RemoteCLIP does."""
    return configured_clip(tmp_path / "configs", "tiny-rs-clip", TINY_CLIP | {"quick_gelu": True})


def _run(task, **params):
    return run_task(task, params, lambda *_: None, lambda: False)


def _json(printed):
    return json.loads(printed[printed.index('{\n  "paths"'):])  # torch.onnx reports its steps before the result


def test_remoteclip_layout_imports_as_a_pair_that_searches_like_torch(tmp_path, authors, capsys):
    config, model = authors
    checkpoint = remoteclip_checkpoint(tmp_path / "RemoteCLIP-tiny.pt", model)
    started = time.perf_counter()
    training_main(["import", "--source", "open-clip", "--checkpoint", str(checkpoint), "--architecture", str(config),
                   "--out", str(tmp_path / "models" / "rs_clip.onnx")])
    seconds = time.perf_counter() - started
    report = _json(capsys.readouterr().out)
    print(f"\nopen-clip tiny pair import: {seconds:.1f} s, onnxruntime vs torch {report['max_abs_diff']:.1e}")
    image_model, text_model = (tmp_path / "models" / f"rs_clip_{kind}.onnx" for kind in ("image", "text"))
    assert report["paths"] == [str(image_model), str(text_model)]
    assert [p.name for p in sorted((tmp_path / "models").iterdir())] == [
        "rs_clip_image.md", "rs_clip_image.onnx", "rs_clip_text.md", "rs_clip_text.onnx"]
    assert "QuickGELU" in image_model.with_suffix(".md").read_text()

    rng = np.random.default_rng(3)  # a real GeoTIFF: 2 x 2 tiles of the model's 32 px, 8-bit RGB
    pixels = np.kron(rng.integers(0, 256, size=(3, 8, 8)), np.ones((8, 8))).astype("uint8")
    raster = write_raster(tmp_path / "scene.tif", pixels, descriptions=("red", "green", "blue"))
    index = tmp_path / "index"
    built = _run("build_search_index", input=raster, index=str(index), model=str(image_model), device="cpu")
    assert built["tiles"] == 4 and built["space"].startswith("open_clip:tiny-rs-clip:")
    found = _run("search_text", index=str(index), query=SENTENCES[1], text_model=str(text_model), top_k=4,
                 exact=True, device="cpu")

    mean, std = np.array(open_clip.OPENAI_DATASET_MEAN), np.array(open_clip.OPENAI_DATASET_STD)
    positions = [(hit["tile_row"], hit["tile_col"]) for hit in found["results"]]
    batch = np.stack([(pixels[:, r:r + 32, c:c + 32] / 255.0 - mean[:, None, None]) / std[:, None, None]
                      for r, c in positions]).astype("float32")
    with torch.no_grad():
        images = model.encode_image(torch.from_numpy(batch), normalize=True).numpy()
        texts = model.encode_text(open_clip.get_tokenizer("ViT-B-32")(SENTENCES), normalize=True).numpy()
    engine_images = Model(image_model, "cpu").run(batch).reshape(len(batch), -1)
    engine_texts = embed_text(Model(text_model, "cpu"), SENTENCES)
    worst = max(abs(hit["score"] - score) for hit, score in zip(found["results"], images @ texts[1]))
    print(f"engine vs torch: image embeddings {np.abs(engine_images - images).max():.1e}, text embeddings "
          f"{np.abs(engine_texts - texts).max():.1e}, search scores {worst:.1e}")
    np.testing.assert_allclose(engine_images, images, atol=1e-4)
    np.testing.assert_allclose(engine_texts, texts, atol=1e-4)
    assert len(found["results"]) == 4 and worst < 5e-4  # the index keeps float16 vectors


def test_skyclip_training_checkpoint_in_a_zip_imports(tmp_path):
    # a ResNet image tower (as RemoteCLIP's RN50), which keeps its image size as one number
    resnet_tower = {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8}
    config, model = configured_clip(tmp_path / "configs", "tiny-rn-clip", TINY_CLIP | {"vision_cfg": resnet_tower})
    checkpoint = skyclip_checkpoint(tmp_path / "SkyCLIP_tiny.zip", model, "SkyCLIP_tiny")
    options = argparse.Namespace(architecture=str(config), preset=None)
    result = import_model("open-clip", checkpoint, tmp_path / "out" / "skyclip.onnx", options)
    assert [p.rsplit("/", 1)[1] for p in result["paths"]] == ["skyclip_image.onnx", "skyclip_text.onnx"]
    assert result["max_abs_diff"] < 1e-4
    with torch.no_grad():
        reference = model.encode_text(open_clip.get_tokenizer("ViT-B-32")(SENTENCES), normalize=True).numpy()
    np.testing.assert_allclose(embed_text(Model(result["paths"][1], "cpu"), SENTENCES), reference, atol=1e-4)


def _published(model_name):
    """The names and shapes of a published model's state dict, without its weights."""
    return open_clip.create_model(model_name, pretrained=None, device="meta").state_dict()


def test_presets_pick_the_published_architecture_and_activation():
    assert clip_import.preset_architecture("remoteclip", _published("RN50")) == "RN50-quickgelu"
    assert clip_import.preset_architecture("skyclip", _published("ViT-B-32")) == "ViT-B-32"
    assert clip_import.preset_architecture("skyclip", {}, "ViT-L-14") == "ViT-L-14-quickgelu"
    assert clip_import.preset_architecture("georsclip", {}, "ViT-B-32") == "ViT-B-32-quickgelu"
    with pytest.raises(ImportRefused, match="none of SkyCLIP's releases \\(ViT-B-32, ViT-L-14\\)"):
        clip_import.preset_architecture("skyclip", _published("RN50"))
    with pytest.raises(ImportRefused, match="GeoRSCLIP was published as ViT-B-32, ViT-H-14, not ViT-L-14"):
        clip_import.preset_architecture("georsclip", {}, "ViT-L-14")
    (commands,) = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    options = {a.dest: a for a in commands.choices["import"]._actions}
    assert tuple(options["preset"].choices) == tuple(clip_import.PRESETS)


def test_wrong_checkpoints_and_options_are_refused(tmp_path, authors):
    config, model = authors
    checkpoint = remoteclip_checkpoint(tmp_path / "tiny.pt", model)
    out = tmp_path / "out"
    out.mkdir()

    def refused(match, **options):
        with pytest.raises(ImportRefused, match=match):
            import_model("open-clip", checkpoint, out / "m.onnx", argparse.Namespace(**({"architecture": None,
                                                                                          "preset": None} | options)))
        assert list(out.iterdir()) == [], "a refused import must leave no file behind"

    refused("is not an open_clip ViT-B-32 checkpoint \\(missing: .*wrong shape: ", architecture="ViT-B-32")
    refused("none of SkyCLIP's releases", preset="skyclip")
    refused("--architecture ViT-Q-99: ", architecture="ViT-Q-99")
    refused("needs --architecture .* or --preset")

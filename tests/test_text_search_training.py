"""Tests for text-based search in training/: caption fixtures and their readers (GAIA, LEVIR-CC,
paired multispectral and simulated SAR), the SAR simulator, tokenisers the engine can run without
torch, retrieval metrics, the four training tasks, WiSE-FT, and ONNX export with contract and
parity for every encoder."""
from __future__ import annotations

import json
import shutil

import numpy as np
import onnxruntime
import open_clip
import pytest
import rasterio
import torch

from engine.contract import TOKENIZER_KEY, contract_from_metadata
from training.checkpoint import load_checkpoint
from training.datasets.gaia import GaiaCaptions
from training.datasets.levir_cc import LevirCCPairs
from training.datasets.paired_modalities import PairedModalities
from training.families import family_of
from training.simulation import sar_backscatter
from training.simulation.caption_fixtures import write_caption_fixtures
from training.simulation.caption_scenes import REAL_SCENES, SIMULATED_LANDSCAPES, simulate_scene
from training.simulation.land_cover import LAND_COVER, LandUseContext
from training.simulation.land_cover_captions import change_answers, change_captions, image_answers, image_captions
from training.text_search import cli as text_search_cli
from training.text_search.evaluate import CHANGE_QUERIES, SEARCH_QUERIES, evaluate_search, query_precision
from training.text_search.export import (
    MULTISPECTRAL_UNITS,
    QUANTIZATIONS,
    convert_clip,
    export_minilm_text_encoder,
    export_search,
)
from training.text_search.fit import (
    fit_align_modality,
    fit_bitemporal,
    fit_clip_finetune,
    fit_locked_text,
)
from training.text_search.model import (
    FUSIONS,
    MINILM_SPACE,
    BitemporalEncoder,
    TileImageEncoder,
    build_open_clip,
    open_clip_config,
)
from training.text_search.module import MODULES, wise_ft
from training.text_search.retrieval import ranking_metrics
from training.text_search.tokenization import (
    clip_tokenizer_json,
    minilm_model_dir,
    minilm_tokenizer_json,
    tokenize,
)
from training.trainer import FitRun

TILE = 16
SENTENCES = [
    "A river crossing farmland.",
    "  Salt   flats and ARID hills, 40% water!",
    "the city's coast; 12 boats, 3.5 km",
    "über café naïve – 東京",
    "word " * 100,
]
TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
}


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def fixture_root(tmp_path_factory):
    """Simulated coastal-city and desert-lake scenes cut into GAIA / paired (multispectral, SAR) /
    LEVIR-CC fixtures."""
    root = tmp_path_factory.mktemp("captions")
    scenes = [simulate_scene(landscape, 128, seed) for seed, landscape in enumerate(SIMULATED_LANDSCAPES)]
    write_caption_fixtures(root, scenes, TILE, train_stride=8, change_pairs_per_scene=24, seed=0, sar=True)
    return root


@pytest.fixture(scope="session")
def rgb_checkpoint(fixture_root, tmp_path_factory):
    torch.set_num_threads(1)
    run = FitRun(fixture_root / "gaia", tmp_path_factory.mktemp("rgb"), max_steps=150, batch_size=32, accelerator="cpu")
    return fit_locked_text(run, embedding_width=16)


def test_cli_repeats_the_modules_choices():
    assert family_of("locked-text").tasks == tuple(MODULES)
    assert text_search_cli.FUSIONS == FUSIONS
    assert text_search_cli.REAL_SCENES == tuple(REAL_SCENES)
    assert text_search_cli.SIMULATED_LANDSCAPES == tuple(SIMULATED_LANDSCAPES)
    assert text_search_cli.QUANTIZATIONS == QUANTIZATIONS


def test_gaia_reader_reads_shards_and_annotations_alike(fixture_root, tmp_path):
    from_shards = GaiaCaptions(fixture_root / "gaia", "test")
    copy = tmp_path / "gaia"
    shutil.copytree(fixture_root / "gaia", copy)
    shutil.rmtree(copy / "test")  # no webdataset: the annotation file and images/ are read
    from_annotations = GaiaCaptions(copy, "test")
    assert [s.id for s in from_shards.samples] == [s.id for s in from_annotations.samples]
    item, other = from_shards[3], from_annotations[3]
    assert item["image"].shape == (3, TILE, TILE) and item["image"].dtype == np.uint8
    assert np.array_equal(item["image"], other["image"]) and item["captions"] == other["captions"]
    assert len(item["captions"]) == 5
    entry = json.loads((fixture_root / "gaia" / "test_data.json").read_text())[0]
    assert set(entry) == {"id", "image_src", "image_alt", "captions", "credits", "location", "lat", "lon", "tag",
                          "resolution", "satellite", "sensor", "modalities"}


def test_paired_and_change_readers(fixture_root):
    paired = PairedModalities(fixture_root / "gaia", "train")
    assert paired.band_names == ("B02", "B03", "B04", "B08", "B11", "B12")
    item = paired[0]
    assert item["other"].shape == (6, TILE, TILE)
    assert np.array_equal(item["rgb"], item["other"][[2, 1, 0]].astype(np.uint8))  # the same ground
    pairs = LevirCCPairs(fixture_root / "levir_cc", "train")
    assert len(pairs) > 10
    changed = [pairs[i] for i in range(len(pairs)) if pairs[i]["changed"]]
    unchanged = [pairs[i] for i in range(len(pairs)) if not pairs[i]["changed"]]
    assert changed and unchanged
    assert all(len(p["captions"]) == 5 and p["before"].shape == p["after"].shape == (3, TILE, TILE) for p in changed)
    assert all("no change" in " ".join(p["captions"]) for p in unchanged)


def test_sar_simulator_gives_typical_c_band_backscatter_per_class():
    """Per class, sigma0 averaged over the speckle (in linear power) lies in the typical C-band
    ranges of the references in ``sar_backscatter``; VH is below VV, water darkest, built-up
    brightest; single pixels carry the speckle of about 4.4 looks; the seed fixes the result."""
    expected_db = {  # (VV range, VH range)
        "water": ((-25, -17), (-32, -24)), "vegetation": ((-9, -5), (-16, -11)), "built-up": ((-6, 1), (-13, -7)),
        "salt flat": ((-19, -12), (-28, -20)), "arid land": ((-16, -9), (-24, -16)),
    }
    classes = np.repeat(np.arange(len(LAND_COVER), dtype=np.int8), 40)[:, None].repeat(200, axis=1)  # 40-row stripes
    sigma0 = sar_backscatter.simulate_backscatter(classes, LAND_COVER, seed=0)
    assert sigma0.shape == (2, *classes.shape) and sigma0.dtype == np.float32
    mean_db = {}
    for index, name in enumerate(LAND_COVER):
        pixels = sigma0[:, classes == index]
        mean_db[name] = 10 * np.log10((10 ** (pixels / 10)).mean(axis=1))
        for value, (low, high) in zip(mean_db[name], expected_db[name]):
            assert low <= value <= high, (name, mean_db[name])
        assert mean_db[name][1] < mean_db[name][0] - 5  # VH well below VV
    vv = {name: values[0] for name, values in mean_db.items()}
    assert min(vv, key=vv.get) == "water" and max(vv, key=vv.get) == "built-up"
    water_vv = sigma0[0, classes == LAND_COVER.index("water")]
    assert 2.0 < water_vv.std() < 2.7  # 4.4-look speckle: 2.2 dB, texture 0.7 dB
    assert np.array_equal(sar_backscatter.simulate_backscatter(classes, LAND_COVER, seed=0), sigma0)
    assert not np.array_equal(sar_backscatter.simulate_backscatter(classes, LAND_COVER, seed=1), sigma0)


def test_paired_sar_folder_holds_each_tiles_backscatter(fixture_root):
    """``--sar`` fixtures: one VV, VH tile in dB per GAIA id on the tile's footprint, read by
    ``--paired-folder sar``; every tile whose largest class is water is darker than every tile
    whose largest class is city, by more than 8 dB on average."""
    sar = PairedModalities(fixture_root / "gaia", "test", "sar")
    multispectral = PairedModalities(fixture_root / "gaia", "test")
    assert sar.band_names == ("VV", "VH") and sar.units == sar_backscatter.UNITS
    assert [s.id for s in sar.rgb.samples] == [s.id for s in multispectral.rgb.samples]
    items = [sar[i] for i in range(len(sar))]
    assert all(item["other"].shape == (2, TILE, TILE) and item["other"].dtype == np.float32 for item in items)
    with rasterio.open(fixture_root / "gaia" / "sar" / f"{items[0]['id']}.tif") as tile, \
            rasterio.open(fixture_root / "gaia" / "multispectral" / f"{items[0]['id']}.tif") as reference:
        assert tile.transform == reference.transform and tile.crs == reference.crs
    mean_vv = {name: [item["other"][0].mean() for item in items if name in image_answers(item["captions"])]
               for name in ("sea", "lake", "city")}
    water, city = mean_vv["sea"] + mean_vv["lake"], mean_vv["city"]
    assert water and city
    assert max(water) < min(city) and np.mean(water) < np.mean(city) - 8
    assert all(item["other"][1].mean() < item["other"][0].mean() for item in items)


def test_captions_state_the_measured_content():
    context = LandUseContext("sea", bare_land=("built-up",))
    classes = np.full((20, 20), LAND_COVER.index("built-up"), dtype=np.int8)
    classes[:, 12:] = LAND_COVER.index("water")
    captions = image_captions(classes, context)
    assert len(captions) == 5
    assert "Land cover: city 60%, sea 40%." in captions
    assert "Sea on the east side of the image, city elsewhere." in captions
    assert image_answers(captions) == {"city", "shoreline"}
    assert image_answers(image_captions(np.full((20, 20), LAND_COVER.index("water"), np.int8), context)) == {"sea"}
    after = classes.copy()
    after[:, :6] = LAND_COVER.index("vegetation")
    sentences = change_captions(classes, after, context)
    assert sentences[0] == "vegetation grew in the west"
    assert change_answers(sentences) == {"vegetation"}
    assert change_captions(classes, classes, context)[0] == "the scene is the same as before"
    assert change_answers(change_captions(classes, classes, context)) == {"no change"}


def test_ranking_metrics_by_hand():
    scores = torch.tensor([[0.9, 0.8, 0.1], [0.2, 0.9, 0.3]])
    relevant = torch.tensor([[False, True, True], [False, True, False]])
    metrics = ranking_metrics(scores, relevant)
    assert metrics["R@1"] == pytest.approx(50.0) and metrics["R@5"] == pytest.approx(100.0)
    # query 1: relevant at ranks 2 and 3 -> AP (1/2 + 2/3) / 2; query 2: rank 1 -> AP 1
    assert metrics["mAP"] == pytest.approx(100 * ((0.5 + 2 / 3) / 2 + 1.0) / 2)


def test_clip_tokenizer_json_equals_open_clip_tokenizer():
    ours = tokenize(clip_tokenizer_json(), SENTENCES)
    reference = open_clip.get_tokenizer("ViT-B-32")(SENTENCES).numpy()
    assert np.array_equal(ours["input_ids"], reference)
    assert ours["attention_mask"].sum(1).tolist() == (reference != 0).sum(1).tolist()


def test_minilm_tokenizer_json_equals_transformers_tokenizer():
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(str(minilm_model_dir()))(
        SENTENCES, padding=True, truncation=True, max_length=128, return_tensors="np"
    )
    ours = tokenize(minilm_tokenizer_json(), SENTENCES)
    assert np.array_equal(ours["input_ids"], reference["input_ids"])
    assert np.array_equal(ours["attention_mask"], reference["attention_mask"])


@pytest.fixture(scope="session")
def minilm_int8(tmp_path_factory):
    """The shipped kind of text encoder: all-MiniLM-L6-v2 exported and quantised to int8."""
    path = tmp_path_factory.mktemp("text") / "text.onnx"
    return path, export_minilm_text_encoder(path)


@pytest.mark.slow
def test_minilm_int8_onnx_matches_sentence_transformers(minilm_int8):
    """The int8 text encoder, fed by the tokenizer it carries, stays next to sentence-transformers'
    own all-MiniLM-L6-v2 embeddings and picks the same best sentence for a query."""
    from sentence_transformers import SentenceTransformer

    path, result = minilm_int8
    assert result["max_abs_diff"] < 1e-4  # the fp32 export before quantisation
    assert 0.98 <= result["min_cosine"] <= 1.0
    assert path.stat().st_size < 30e6  # fp32: 91.5 MB
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    metadata = session.get_modelmeta().custom_metadata_map
    contract = contract_from_metadata(metadata, str(path))
    assert contract.task == "text_embedding" and contract.provenance["space"] == MINILM_SPACE
    assert contract.provenance["dim"] == 384 and contract.provenance["max_length"] == 128
    assert contract.provenance["quantization"] == "int8 dynamic (onnxruntime), per-channel"
    assert json.loads(metadata[TOKENIZER_KEY]) == json.loads(minilm_tokenizer_json())
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    reference = SentenceTransformer(str(minilm_model_dir()), device="cpu")

    def embed(sentences):
        (onnx_embeddings,) = session.run(["output"], tokenize(metadata[TOKENIZER_KEY], sentences))
        return onnx_embeddings, reference.encode(sentences, normalize_embeddings=True)

    embeddings, expected = embed(SENTENCES)
    assert embeddings.shape == (len(SENTENCES), 384)
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert (embeddings * expected).sum(1).min() >= 0.98

    queries = ["a lake next to salt flats", "new houses were built", "a dense forest"]
    candidates = ["Salt flats around a shallow lake.", "A field of wheat.", "Buildings appeared in the west.",
                  "Tall trees cover the whole area.", "The sea at night.", "A river crossing farmland."]
    (queries_int8, queries_fp32), (candidates_int8, candidates_fp32) = embed(queries), embed(candidates)
    best_int8 = (queries_int8 @ candidates_int8.T).argmax(1)
    best_fp32 = (queries_fp32 @ candidates_fp32.T).argmax(1)
    assert best_fp32.tolist() == [0, 2, 3] and best_int8.tolist() == best_fp32.tolist()


@pytest.mark.slow
def test_locked_text_encoder_ranks_matching_tiles_first(rgb_checkpoint, fixture_root):
    trained = evaluate_search(rgb_checkpoint, fixture_root / "gaia", "test")
    module, saved = load_checkpoint(rgb_checkpoint)
    untrained = type(module)(**saved["hyper_parameters"])
    torch.save(saved | {"state_dict": untrained.state_dict()}, rgb_checkpoint.parent / "untrained.pt")
    baseline = evaluate_search(rgb_checkpoint.parent / "untrained.pt", fixture_root / "gaia", "test")
    assert trained["text_to_image"]["mAP"] > 1.5 * baseline["text_to_image"]["mAP"]
    assert trained["image_to_text"]["R@10"] > 85.0

    # a one-class sentence finds a tile that is mostly that class
    test = GaiaCaptions(fixture_root / "gaia", "test")
    images = torch.stack([torch.from_numpy(test[i]["image"]).float() for i in range(len(test))])
    with torch.no_grad():
        image_embeddings = module.embed_images({"image": images})
    for query, word in (("The whole area is sea.", "sea"), ("The whole area is city.", "city")):
        best = int((image_embeddings @ module.embed_texts([query]).T).argmax())
        assert word in test.samples[best].captions[2].split(",")[0], test.samples[best].captions


@pytest.mark.slow
def test_image_student_and_change_exports_match_torch(rgb_checkpoint, fixture_root, minilm_int8, tmp_path):
    settings = {"max_steps": 5, "batch_size": 16, "accelerator": "cpu"}
    student = fit_align_modality(FitRun(fixture_root / "gaia", tmp_path / "s2", **settings), rgb_checkpoint, 0.1,
                                 embedding_width=16)
    change = fit_bitemporal(FitRun(fixture_root / "levir_cc", tmp_path / "change", **settings), "tff", rgb_checkpoint,
                            embedding_width=16)
    expected = {
        rgb_checkpoint: ("image_embedding", ["image"], 3),
        student: ("image_embedding", ["image"], 6),
        change: ("change_embedding", ["before", "after"], 3),
    }
    exported = {}
    for checkpoint, (task, inputs, bands) in expected.items():
        path = exported[checkpoint] = tmp_path / f"{checkpoint.parent.name}.onnx"
        result = export_search(checkpoint, path)
        assert result["max_abs_diff"] < 1e-4
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        contract = contract_from_metadata(session.get_modelmeta().custom_metadata_map, str(path))
        assert contract.task == task and contract.outputs.kind == "embedding"
        assert contract.provenance["space"] == MINILM_SPACE and contract.provenance["dim"] == 384
        assert [i.name for i in session.get_inputs()] == inputs and len(contract.bands) == bands
        feeds = {name: np.zeros((2, bands, TILE, TILE), np.float32) for name in inputs}
        (output,) = session.run(["output"], feeds)
        assert output.shape == (2, 384, 1, 1)
        assert np.allclose(np.linalg.norm(output[:, :, 0, 0], axis=1), 1.0, atol=1e-5)
        if checkpoint == student:
            assert contract.input_units == MULTISPECTRAL_UNITS and contract.bands[3].matches("nir")
    assert contract.provenance["fusion"] == "tff"

    # the cards' free-text queries through ONNX image + int8 text encoders, on RGB and 6-band tiles
    text_model, _ = minilm_int8
    rgb = query_precision(exported[rgb_checkpoint], text_model, fixture_root / "gaia")
    multispectral = query_precision(exported[student], text_model, fixture_root / "gaia")
    assert list(rgb["queries"]) == [query for query, _ in SEARCH_QUERIES] and rgb["top"] == 10
    shares = {query: measured["share"] for query, measured in rgb["queries"].items()}
    assert shares == {query: measured["share"] for query, measured in multispectral["queries"].items()}
    classes = [query for query, answer in SEARCH_QUERIES if answer != "shoreline"]
    assert sum(shares[query] for query in classes) == pytest.approx(1.0)  # one largest class per tile
    precision = np.mean([rgb["queries"][query]["precision"] for query in classes])
    assert precision > 2 * np.mean([shares[query] for query in classes])  # the trained encoder beats chance
    changes = query_precision(exported[change], text_model, fixture_root / "levir_cc")
    assert list(changes["queries"]) == [query for query, _ in CHANGE_QUERIES]
    assert changes["items"] == len(LevirCCPairs(fixture_root / "levir_cc", "test"))
    assert sum(measured["share"] for measured in changes["queries"].values()) == pytest.approx(1.0)  # one answer each


@pytest.mark.slow
def test_align_modality_reads_another_paired_folder(rgb_checkpoint, fixture_root, minilm_int8, tmp_path):
    """A student for another modality (the fixtures' simulated SAR, ``sar/``) trains from
    ``modality_folder``, evaluates, exports with Sentinel-1 band names, aliases and the units its
    tiles state, and answers the cards' queries on its own folder."""
    run = FitRun(fixture_root / "gaia", tmp_path / "sar", max_steps=3, batch_size=16, accelerator="cpu")
    checkpoint = fit_align_modality(run, rgb_checkpoint, 0.1, embedding_width=8, modality_folder="sar")
    metrics = evaluate_search(checkpoint, fixture_root / "gaia", "test")
    assert metrics["task"] == "align-modality" and 0.0 <= metrics["text_to_image"]["mAP"] <= 100.0
    path = tmp_path / "sar.onnx"
    export_search(checkpoint, path)
    contract = contract_from_metadata(
        onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map,
        str(path),
    )
    assert [band.name for band in contract.bands] == ["VV", "VH"]
    vv, vh = contract.bands
    assert vv.matches("vv") and vv.matches("VV_dB") and vh.matches("sigma0_vh") and not vh.matches("VV")
    assert contract.input_units == sar_backscatter.UNITS
    text_model, _ = minilm_int8
    result = query_precision(path, text_model, fixture_root / "gaia")
    assert result["items"] == len(GaiaCaptions(fixture_root / "gaia", "test"))


def test_bitemporal_heads_shapes_and_training_steps(fixture_root, tmp_path):
    before, after = torch.randn(3, 3, TILE, TILE), torch.randn(3, 3, TILE, TILE)
    for fusion in FUSIONS:
        encoder = BitemporalEncoder(TileImageEncoder(3, 384, 8), fusion).eval()
        with torch.no_grad():
            embedding = encoder(before, after)
        assert embedding.shape == (3, 384)
        assert torch.allclose(embedding.norm(dim=1), torch.ones(3), atol=1e-5)
    settings = {"max_steps": 3, "batch_size": 8, "accelerator": "cpu"}
    checkpoint = fit_bitemporal(FitRun(fixture_root / "levir_cc", tmp_path / "gff", **settings), "gff-concat", None,
                                embedding_width=8)
    module, saved = load_checkpoint(checkpoint, "bitemporal")
    assert saved["provenance"]["steps"] == 3 and module.hparams.fusion == "gff-concat"
    with pytest.raises(ValueError, match="holds a 'bitemporal' model, not 'locked-text'"):
        evaluate_search(checkpoint, fixture_root / "levir_cc", task="locked-text")
    with pytest.raises(ValueError, match="the teacher is a locked-text or clip-finetune checkpoint"):
        fit_align_modality(FitRun(fixture_root / "gaia", tmp_path / "student", **settings), checkpoint, 0.1,
                           embedding_width=8)


def test_wise_ft_endpoints_and_midpoint():
    zero_shot = {"weight": torch.zeros(3), "count": torch.tensor(7)}
    fine_tuned = {"weight": torch.tensor([2.0, 4.0, 6.0]), "count": torch.tensor(9)}
    assert torch.equal(wise_ft(zero_shot, fine_tuned, 0.0)["weight"], zero_shot["weight"])
    assert torch.equal(wise_ft(zero_shot, fine_tuned, 1.0)["weight"], fine_tuned["weight"])
    assert torch.equal(wise_ft(zero_shot, fine_tuned, 0.5)["weight"], torch.tensor([1.0, 2.0, 3.0]))
    assert int(wise_ft(zero_shot, fine_tuned, 0.5)["count"]) == 9


@pytest.mark.slow
def test_clip_finetune_wise_ft_alpha_and_conversion(fixture_root, tmp_path):
    config_file = tmp_path / "tiny-clip.json"
    config_file.write_text(json.dumps(TINY_CLIP))
    name, config = open_clip_config(str(config_file))
    start = build_open_clip(name, config)
    torch.save(start.state_dict(), tmp_path / "init.pt")  # stands for a RemoteCLIP / GeoRSCLIP file

    kept = {}
    for alpha in (0.0, 1.0):
        run = FitRun(fixture_root / "gaia", tmp_path / f"alpha{alpha}", max_steps=3, batch_size=8, lr=1e-3,
                     accelerator="cpu")
        checkpoint = fit_clip_finetune(run, str(config_file), tmp_path / "init.pt", alpha, 0.1)
        kept[alpha] = load_checkpoint(checkpoint, "clip-finetune")[0].model.state_dict()
    weight = "visual.conv1.weight"
    assert torch.equal(kept[0.0][weight], start.state_dict()[weight])  # alpha 0: the zero-shot model
    assert not torch.equal(kept[1.0][weight], start.state_dict()[weight])  # alpha 1: the fine-tuned one

    result = convert_clip(tmp_path / "init.pt", str(config_file), tmp_path / "tiny")
    image = onnxruntime.InferenceSession(result["paths"][0], providers=["CPUExecutionProvider"])
    text = onnxruntime.InferenceSession(result["paths"][1], providers=["CPUExecutionProvider"])
    image_contract = contract_from_metadata(image.get_modelmeta().custom_metadata_map, "image")
    text_contract = contract_from_metadata(text.get_modelmeta().custom_metadata_map, "text")
    assert image_contract.provenance["space"] == text_contract.provenance["space"] == result["space"]
    assert image_contract.tile_size == 32 and image_contract.mean[0] == pytest.approx(255 * 0.48145466)
    tokens = tokenize(text.get_modelmeta().custom_metadata_map[TOKENIZER_KEY], SENTENCES)
    (embeddings,) = text.run(["output"], tokens)
    with torch.no_grad():
        reference = start.eval().encode_text(open_clip.get_tokenizer("ViT-B-32")(SENTENCES), normalize=True).numpy()
    assert np.abs(embeddings - reference).max() < 1e-4

"""Bad inputs named as user errors, with the problem and the fix, before any work (issue #14):
hand-edited contracts in real ONNX files, bad parameters, paths the OS refuses, garbage files, HyCoT
files with edited tags, untrusted names in data files (HyCoT decoder tag, index manifest), and type
holes in requests to a real worker process."""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import rasterio

from engine.contract import CONTRACT_KEY, Band, ModelContract, Modality, Outputs
from engine.errors import EngineError, ModelContractError
from engine.onnx_metadata import write_metadata
from engine.tasks import run_task
from raster_fixtures import contract, scene, write_model, write_raster
from training.hycot.pca_codec import fit_pca_codec
from training.pointwise_onnx import time_series_classifier_model

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data" / "olinda_landsat7.tif"
BANDS = ("B02", "B03", "B04")
STORED_CONTRACT_FIX = "Re-export the model (`python -m training export`), or correct the field in its 'rsai_contract'"


def run(task, **params):
    return run_task(task, params, lambda fraction, message: None, lambda: False)


def written(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def scene_tif(tmp_path):
    return write_raster(tmp_path / "scene.tif", scene(), descriptions=BANDS)


@pytest.fixture
def depth_model(tmp_path):
    return write_model(tmp_path / "depth.onnx", contract(), [[1.0, 0.0, 0.0]], [0.0])


@pytest.fixture
def classes_model(tmp_path):
    return write_model(tmp_path / "classes.onnx", contract("classes", 3), np.eye(3), np.zeros(3))


def with_edited_contract(model: str, target: Path, edit) -> str:
    """A copy of ``model`` whose contract JSON was changed by ``edit`` (a dict -> None function), written
    with the engine's own metadata writer, as a hand edit of the metadata would leave it."""
    stored = {p.key: p.value for p in onnx.load(model).metadata_props}[CONTRACT_KEY]
    data = json.loads(stored)
    edit(data)
    write_metadata(model, {CONTRACT_KEY: json.dumps(data)}, target, check=lambda path: None)
    return str(target)


def setter(field: str, value):
    """An edit setting a (dotted) contract field."""
    def edit(data: dict) -> None:
        *parents, key = field.split(".")
        for parent in parents:
            data = data[parent]
        data[key] = value
    return edit


def remover(field: str):
    def edit(data: dict) -> None:
        *parents, key = field.split(".")
        for parent in parents:
            data = data[parent]
        del data[key]
    return edit


# ---------------------------------------------------------------- contracts validated on load
CONTRACT_CASES = {
    "batch_size 0": (setter("batch_size", 0), r"batch_size is 0; it must be a whole number >= 1"),
    "batch_size -1": (setter("batch_size", -1), r"batch_size is -1; it must be a whole number >= 1"),
    "NaN outputs.scale": (setter("outputs.scale", math.nan), r"field 'outputs\.scale' is NaN; expected a finite"),
    "infinite outputs.offset": (setter("outputs.offset", math.inf),
                                r"field 'outputs\.offset' is Infinity; expected a finite number"),
    "NaN mean": (setter("mean", [math.nan, 0.0, 0.0]), r"field 'mean' is \[NaN, 0\.0, 0\.0\]; expected a list of "
                                                         "finite numbers"),
    "zero std": (setter("std", [1.0, 0.0, 1.0]), r"std is \[1\.0, 0\.0, 1\.0\]; every std must be a finite number > 0"),
    "fractional tile_size": (setter("tile_size", 1.5), r"field 'tile_size' is 1\.5; expected a whole number"),
    "overlap of a whole tile": (setter("overlap", 64), r"tile_size is 64 and overlap 64; tiling needs"),
    "a band listed twice": (setter("bands", [{"name": "B02"}, {"name": "B02"}, {"name": "B04"}]),
                            r"bands list 'B02' more than once"),
    "bands as text": (setter("bands", "B02,B03,B04"), r"field 'bands' is \"B02,B03,B04\"; expected a list"),
    "a band without a name": (setter("bands", [{"aliases": ["blue"]}, {"name": "B03"}, {"name": "B04"}]),
                              r"missing the field 'bands\[0\]\.name'"),
    "no output names": (remover("outputs.names"), r"missing the field 'outputs\.names'"),
    "contract version from the future": (setter("version", 99), r"contract version 99 is newer"),
}


@pytest.mark.parametrize("case", CONTRACT_CASES)
def test_a_hand_edited_contract_is_refused_naming_the_field_value_and_fix(tmp_path, scene_tif, depth_model, case):
    edit, message = CONTRACT_CASES[case]
    model = with_edited_contract(depth_model, tmp_path / "edited.onnx", edit)
    with pytest.raises(ModelContractError, match=message) as refused:
        run("estimate_bathymetry", input=scene_tif, output=str(tmp_path / "depth.tif"), model=model)
    assert str(refused.value).startswith("edited.onnx: ") and STORED_CONTRACT_FIX in str(refused.value)
    assert not (tmp_path / "depth.tif").exists()


def test_a_class_colour_that_is_not_rrggbb_is_refused(tmp_path, scene_tif, classes_model):
    model = with_edited_contract(classes_model, tmp_path / "edited.onnx",
                                 setter("outputs.colors", ["#000000", "blue", "#2800zz"]))
    with pytest.raises(ModelContractError, match=r"outputs\.colors has \['blue', '#2800zz'\]; write each colour "
                                                 "as '#rrggbb'"):
        run("classify_seabed", input=scene_tif, output=str(tmp_path / "classes.tif"), model=model)


def test_nan_scale_in_a_contract_fails_the_cli_instead_of_writing_nan_depths(tmp_path, scene_tif, depth_model):
    model = with_edited_contract(depth_model, tmp_path / "nan_scale.onnx", setter("outputs.scale", math.nan))
    output = tmp_path / "depth.tif"
    cli = subprocess.run([sys.executable, "-m", "engine", "run", "estimate_bathymetry", "--input", scene_tif,
                          "--output", str(output), "--model", model], cwd=REPO, capture_output=True, text=True)
    assert cli.returncode == 2, cli.stderr
    assert "field 'outputs.scale' is NaN; expected a finite number" in cli.stderr
    assert "Traceback" not in cli.stderr and not output.exists()


def test_a_modality_band_list_that_does_not_fit_the_graph_is_refused(tmp_path):
    crops = ModelContract(
        task="crop_map", name="test-crops", bands=(), mean=(), std=(),
        outputs=Outputs("classes", ("wheat", "maize")), tile_size=16, overlap=4, gsd_m=10.0,
        modalities=(Modality("s2", (Band("B04"), Band("B08")), (1000.0, 1000.0), (500.0, 500.0), 6),))
    path = tmp_path / "crops.onnx"
    onnx.save(time_series_classifier_model(crops, np.eye(2), np.zeros(2)), path)

    def add_a_band(data: dict) -> None:
        s2 = data["modalities"][0]
        s2["bands"].append({"name": "B11"})
        s2["mean"].append(1000.0)
        s2["std"].append(500.0)

    model = with_edited_contract(str(path), tmp_path / "three_bands.onnx", add_a_band)
    with pytest.raises(ModelContractError, match=r"the graph takes 2 s2 bands but the contract lists 3 "
                                                 r"\(B04, B08, B11\)"):
        run("describe_model", model=model)


def test_run_onnx_options_that_make_an_invalid_contract_name_the_option(tmp_path, scene_tif, depth_model):
    with pytest.raises(ModelContractError, match=r"tile_size is 8 and overlap 8; .*Correct the options of 'Run ONNX "
                                                 r"model'"):
        run("run_onnx", input=scene_tif, output=str(tmp_path / "out.tif"), model=depth_model, tile_size=8, overlap=8)


# ---------------------------------------------------------------- parameters refused before any work
def test_a_band_name_given_twice_is_refused(tmp_path, scene_tif, depth_model):
    with pytest.raises(EngineError, match=r"band mapping names B02 twice \(B02=1,B02=2,B04=3\)"):
        run("estimate_bathymetry", input=scene_tif, output=str(tmp_path / "depth.tif"), model=depth_model,
            bands="B02=1,B02=2,B04=3")
    assert not (tmp_path / "depth.tif").exists()


def test_an_inverted_extent_is_refused(tmp_path, scene_tif, depth_model):
    with pytest.raises(EngineError, match=r"parameter 'extent' must be \[xmin, ymin, xmax, ymax\] .*"
                                          r"\[580800, 3869000, 580100, 3869900\] is inverted or empty"):
        run("estimate_bathymetry", input=scene_tif, output=str(tmp_path / "depth.tif"), model=depth_model,
            extent=[580800, 3869000, 580100, 3869900])


def test_a_nan_extent_is_refused_by_the_cli(tmp_path, scene_tif, depth_model):
    output = tmp_path / "depth.tif"
    cli = subprocess.run([sys.executable, "-m", "engine", "run", "estimate_bathymetry", "--input", scene_tif,
                          "--output", str(output), "--model", depth_model, "--extent", "nan", "3869000", "580800",
                          "3869900"], cwd=REPO, capture_output=True, text=True)
    assert cli.returncode == 2
    assert "parameter 'extent' must be [xmin, ymin, xmax, ymax]" in cli.stderr
    assert "item 1: NaN is not a finite number" in cli.stderr and not output.exists()


def test_output_equal_to_probabilities_is_refused_and_writes_nothing(tmp_path, scene_tif, classes_model):
    same = str(tmp_path / "classes.tif")
    with pytest.raises(EngineError, match="output and probabilities are the same file .*classes.tif; one would "
                                          "overwrite the other: give probabilities another file name"):
        run("classify_seabed", input=scene_tif, output=same, probabilities=same, model=classes_model)
    assert written(tmp_path) == ["classes.onnx", "scene.tif"]


def test_outputs_that_are_existing_folders_are_refused(tmp_path, scene_tif, depth_model):
    for folder in ("depth.tif", "hits.gpkg", "model.onnx"):
        (tmp_path / folder).mkdir()
    with pytest.raises(EngineError, match=r"output .*depth.tif is an existing folder; give a file path, e\.g\. "
                                          r".*depth.tif/result.tif"):
        run("estimate_bathymetry", input=scene_tif, output=str(tmp_path / "depth.tif"), model=depth_model)
    with pytest.raises(EngineError, match="output .*model.onnx is an existing folder"):
        run("set_contract", model=depth_model, out=str(tmp_path / "model.onnx"), tile_size=32)
    from engine.vector_io import Field, atomic_geopackage
    with pytest.raises(EngineError, match="output .*hits.gpkg is an existing folder"):
        with atomic_geopackage(str(tmp_path / "hits.gpkg"), "hits", [Field("rank", int)], "", None):
            pass
    assert all(not any((tmp_path / folder).iterdir()) for folder in ("depth.tif", "hits.gpkg", "model.onnx"))


# ---------------------------------------------------------------- paths the OS refuses, garbage files
LONG_NAME = "x" * 300


@pytest.mark.parametrize("parameter", ["model", "input", "output"])
def test_a_300_character_file_name_is_a_user_error(tmp_path, scene_tif, depth_model, parameter):
    params = {"input": scene_tif, "output": str(tmp_path / "depth.tif"), "model": depth_model}
    params[parameter] = str(tmp_path / f"{LONG_NAME}.{'onnx' if parameter == 'model' else 'tif'}")
    with pytest.raises(EngineError, match=rf"parameter '{parameter}' .* is refused by the operating system \(File "
                                          r"name too long\): one of its names has 30\d bytes and at most 255 are "
                                          "allowed; rename the file or folder"):
        run("estimate_bathymetry", **params)


def test_a_symbolic_link_loop_is_a_user_error(tmp_path, scene_tif):
    (tmp_path / "a.onnx").symlink_to(tmp_path / "b.onnx")
    (tmp_path / "b.onnx").symlink_to(tmp_path / "a.onnx")
    with pytest.raises(EngineError, match=r"parameter 'model' .*a.onnx' is refused by the operating system \(Too many "
                                          r"levels of symbolic links\): choose a file in a folder you can read"):
        run("estimate_bathymetry", input=scene_tif, output=str(tmp_path / "d.tif"), model=str(tmp_path / "a.onnx"))


def test_a_path_holding_a_nul_character_is_a_user_error(tmp_path, depth_model):
    with pytest.raises(EngineError, match="parameter 'input' .* holds a NUL character"):
        run("estimate_bathymetry", input=str(tmp_path / "sce\x00ne.tif"), output=str(tmp_path / "d.tif"),
            model=depth_model)


def test_garbage_files_given_as_input_or_model_are_named_with_the_fix(tmp_path, scene_tif, depth_model):
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"II*\x00" + bytes(range(256)) * 40)
    with pytest.raises(EngineError, match=r"cannot open input raster .*garbage.tif: .* The file is not a raster GDAL "
                                          r"reads, or it is damaged .*export or fetch it again"):
        run("estimate_bathymetry", input=str(garbage), output=str(tmp_path / "depth.tif"), model=depth_model)
    with pytest.raises(EngineError, match=r"model file .*garbage.tif is not a valid ONNX model .*Re-export it or "
                                          "choose another model file"):
        run("estimate_bathymetry", input=scene_tif, output=str(tmp_path / "depth.tif"), model=str(garbage))
    assert not (tmp_path / "depth.tif").exists()


# ---------------------------------------------------------------- HyCoT files with edited tags
HYCOT_BANDS = 12


@pytest.fixture
def compressed(tmp_path):
    """A real HyCoT-form compressed file (PCA codec pair, as in test_hycot_engine) and its decoder."""
    rng = np.random.default_rng(0)
    spectra = rng.uniform(500, 5000, size=(3, HYCOT_BANDS))
    data = (rng.dirichlet(np.ones(3), size=30 * 40) @ spectra).T.reshape(HYCOT_BANDS, 30, 40).astype(np.int16)
    image = write_raster(tmp_path / "cube.tif", data, crs="EPSG:32633", pixel=30.0)
    encoder, decoder = fit_pca_codec(data.reshape(HYCOT_BANDS, -1).T, 4, [f"b{i:02d}" for i in range(HYCOT_BANDS)])
    onnx.save(encoder, tmp_path / "pca_encoder.onnx")
    onnx.save(decoder, tmp_path / "pca_decoder.onnx")
    run("compress_hyperspectral", input=image, output=str(tmp_path / "cube_cr4.tif"),
        model=str(tmp_path / "pca_encoder.onnx"))
    return tmp_path / "cube_cr4.tif", tmp_path / "pca_decoder.onnx"


def retag(path: Path, **tags: str) -> None:
    with rasterio.open(path, "r+") as dataset:
        dataset.update_tags(**tags)


def retagged(path: Path) -> dict[str, str]:
    with rasterio.open(path) as dataset:
        return dataset.tags()


TAG_CASES = {
    "garbled band names": ({"original_band_names": "[oops"}, r"the HyCoT tag 'original_band_names' is '\[oops', "
                                                              "not valid JSON"),
    "band names of another file": ({"original_band_names": '["a", "b"]'},
                                   r"the HyCoT tag 'original_band_names' names 2 bands but its decoder restores 12"),
    "band names that are numbers": ({"original_band_names": "[1, 2]"},
                                    r"the HyCoT tag 'original_band_names' is '\[1, 2\]', not a list of band names"),
    "missing nodata": ({"original_nodata": ""}, r"the HyCoT tag 'original_nodata' is missing"),
    "nodata as text": ({"original_nodata": '"zero"'}, r"the HyCoT tag 'original_nodata' is '\"zero\"', not a number"),
    "unknown data type": ({"original_dtype": "complex64"}, r"the HyCoT tag 'original_dtype' is 'complex64', not one "
                                                           "of"),
    "missing decoder": ({"decoder": ""}, r"the HyCoT tag 'decoder' is missing"),
}


@pytest.mark.parametrize("case", TAG_CASES)
def test_a_hycot_file_with_bad_tags_is_named_as_damaged(tmp_path, compressed, case):
    path, decoder = compressed
    tags, message = TAG_CASES[case]
    retag(path, **tags)
    with pytest.raises(EngineError, match=message) as refused:
        run("decompress_hyperspectral", input=str(path), output=str(tmp_path / "restored.tif"), model=str(decoder))
    assert str(refused.value).startswith(str(path)) and "compress the original raster again" in str(refused.value)
    assert not (tmp_path / "restored.tif").exists()


# ---------------------------------------------------------------- names in data files confined
def test_the_decoder_tag_is_looked_up_in_the_models_folders_only(tmp_path, compressed, monkeypatch):
    path, decoder = compressed
    user_models = tmp_path / "user_models"
    (user_models / "pca").mkdir(parents=True)
    monkeypatch.setenv("RSAI_MODELS_DIR", str(user_models))
    output = tmp_path / "restored.tif"
    with pytest.raises(EngineError, match=r"names the model pca_decoder.onnx, which is not installed \(.*models_onnx "
                                          r"or .*user_models\); put it in the user models folder, or give the model"):
        run("decompress_hyperspectral", input=str(path), output=str(output))
    (user_models / "pca" / decoder.name).write_bytes(decoder.read_bytes())
    run("decompress_hyperspectral", input=str(path), output=str(output))
    with rasterio.open(output) as restored:
        assert restored.count == HYCOT_BANDS and restored.tags()["pair_id"] == retagged(path)["pair_id"]


@pytest.mark.parametrize("named", ["../pca_decoder.onnx", "ABSOLUTE", "sub/pca_decoder.onnx",
                                   "..\\pca_decoder.onnx", "pca_decoder.sh"])
def test_a_decoder_tag_naming_a_path_is_refused_even_when_the_file_exists(tmp_path, compressed, monkeypatch, named):
    path, decoder = compressed
    user_models = tmp_path / "user_models"
    (user_models / "sub").mkdir(parents=True)
    (user_models / decoder.name).write_bytes(decoder.read_bytes())
    monkeypatch.setenv("RSAI_MODELS_DIR", str(user_models / "sub"))  # where ../pca_decoder.onnx is a real decoder
    named = str(decoder) if named == "ABSOLUTE" else named
    retag(path, decoder=named)
    with pytest.raises(EngineError, match=r"the decoder tag of .*cube_cr4.tif names the model .*, which is not a "
                                          r"plain \.onnx file name: a model named by a data file must be an installed "
                                          r"model .* If you trust the file, give that model yourself"):
        run("decompress_hyperspectral", input=str(path), output=str(tmp_path / "restored.tif"))
    assert not (tmp_path / "restored.tif").exists()


@pytest.fixture(scope="module")
def small_index(tmp_path_factory):
    """A real index, built by the engine, of a 96 x 96 px corner of the sample (9 tiles of 32 px)."""
    folder = tmp_path_factory.mktemp("index")
    with rasterio.open(SAMPLE) as sample:
        data, descriptions = sample.read(window=((0, 96), (0, 96))), sample.descriptions
        profile = dict(driver="GTiff", width=96, height=96, count=sample.count, dtype=data.dtype, crs=sample.crs,
                       transform=sample.window_transform(((0, 96), (0, 96))), nodata=sample.nodata)
    layer = folder / "corner.tif"
    with rasterio.open(layer, "w", **profile) as raster:
        raster.write(data)
        for band, name in enumerate(descriptions, start=1):
            raster.set_band_description(band, name)
    run("build_search_index", input=str(layer), index=str(folder / "index"), device="cpu")
    return folder / "index"


@pytest.mark.parametrize("field, value, named", [
    ("id", "../../outside", "the id of entry 'corner'"),
    ("id", "/etc/passwd", "the id of entry 'corner'"),
    ("store", "../store", "the store generation"),
])
def test_a_manifest_naming_files_outside_the_index_is_refused(small_index, tmp_path, field, value, named):
    index = tmp_path / "index"
    index.mkdir()
    for part in small_index.iterdir():
        (index / part.name).write_bytes(part.read_bytes())
    manifest = json.loads((index / "manifest.json").read_text())
    (manifest["entries"][0] if field == "id" else manifest)[field] = value
    (index / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(EngineError, match=rf"index manifest .*manifest.json is damaged: {named} is "
                                          rf"'{re.escape(value)}', not a plain name \(letters, digits, - and _\)"
                                          ".*delete the folder and build the index again"):
        run("search_text", index=str(index), query="the sea", device="cpu")
    assert run("search_text", index=str(small_index), query="the sea", device="cpu")["results"]


# ---------------------------------------------------------------- type holes in worker requests
WORKER_CASES = {
    "a number among input paths": ("estimate_bathymetry", {"input": ["SCENE", 3], "output": "OUT"},
                                   "parameter 'input' must be a file path or a list of file paths; item 2: 3 is not "
                                   "a file path"),
    "an extent of strings": ("estimate_bathymetry", {"input": "SCENE", "output": "OUT",
                                                     "extent": ["a", "b", "c", "d"]},
                             "parameter 'extent' must be [xmin, ymin, xmax, ymax] with xmin < xmax and ymin < ymax; "
                             'item 1: "a" is not a number'),
    "an extent of three numbers": ("estimate_bathymetry", {"input": "SCENE", "output": "OUT", "extent": [1, 2, 3]},
                                   "parameter 'extent' must be [xmin, ymin, xmax, ymax]"),
    "a band number in a list": ("estimate_bathymetry", {"input": "SCENE", "output": "OUT", "bands": {"B02": [1]}},
                                "parameter 'bands' must be text or a JSON object of whole numbers; 'B02': [1] is not "
                                "a whole number"),
    "true as a tile size": ("run_onnx", {"input": "SCENE", "output": "OUT", "model": "MODEL", "tile_size": True},
                            "parameter 'tile_size' must be a whole number; true is not a whole number"),
    "a text among means": ("run_onnx", {"input": "SCENE", "output": "OUT", "model": "MODEL", "mean": [0.1, "x"]},
                           'parameter \'mean\' must be a list of numbers; item 2: "x" is not a number'),
    "a number among layer names": ("build_search_index", {"input": ["SCENE"], "index": "OUT", "names": [3]},
                                   "parameter 'names' must be a list of texts; item 1: 3 is not text"),
    "a layer holding a number": ("build_search_index", {"input": [["SCENE", 7]], "index": "OUT"},
                                 "parameter 'input' must be a file path or a list of file paths or lists of file "
                                 "paths; item 1: item 2: 7 is not a file path"),
    "a point of text": ("search_similar", {"index": "OUT", "layer": "x", "point": ["x", 1]},
                        'parameter \'point\' must be a list of 2 numbers; item 1: "x" is not a number'),
    "infinite threshold": ("classify_scenes", {"input": "SCENE", "output": "OUT", "threshold": "Infinity"},
                           "parameter 'threshold' must be a number; Infinity is not a finite number"),
}


def test_the_worker_refuses_type_holes_naming_the_parameter(tmp_path, scene_tif, depth_model):
    names = {"SCENE": scene_tif, "OUT": str(tmp_path / "out.tif"), "MODEL": depth_model}
    requests = []
    for number, (task, params, _) in enumerate(WORKER_CASES.values()):
        text = json.dumps({"id": str(number), "task": task, "params": params})
        for placeholder, value in names.items():
            text = text.replace(f'"{placeholder}"', json.dumps(value))
        requests.append(text.replace('"Infinity"', "Infinity"))  # JSON as Python writes a float('inf')
    worker = subprocess.run([sys.executable, "-m", "engine.worker"], cwd=REPO, input="\n".join(requests) + "\n",
                            capture_output=True, text=True, timeout=120)
    answers = {event["id"]: event for event in map(json.loads, worker.stdout.splitlines())}
    for number, (case, (task, _, message)) in enumerate(WORKER_CASES.items()):
        answer = answers[str(number)]
        assert (answer["event"], answer["kind"]) == ("error", "EngineError"), case
        assert message in answer["message"], (case, answer["message"])
    assert "Traceback" not in worker.stderr and written(tmp_path) == ["depth.onnx", "scene.tif"]

"""Command line over the same task functions the worker runs.

    python -m engine run estimate_bathymetry --input scene.tif --output depth.tif [--device cpu]
    python -m engine run classify_seabed --input scene.tif --output classes.tif --probabilities p.tif
    python -m engine run compress_hyperspectral --input cube.tif --output cube_cr8.tif --ratio 8 --quality
    python -m engine run decompress_hyperspectral --input cube_cr8.tif --output restored.tif
    python -m engine run classify_scenes --input s2_stack.tif s1_VV.tif s1_VH.tif --output patches.gpkg
    python -m engine index --input scene.tif other.tif --index search_index/
    python -m engine search --index search_index/ --query "the sea" --output hits.gpkg [--heatmap h.tif]
    python -m engine similar --index search_index/ --layer scene --tile 17 --output hits.gpkg
    python -m engine changes --before 2019.tif --after 2024.tif --index search_index/ --query "new buildings"
    python -m engine describe [--model model.onnx] [--task classify_seabed]
    python -m engine run run_onnx --model any.onnx --input scene.tif --output out.tif --scale 255 --output-kind classes
    python -m engine contract set --model any.onnx --bands B04 B03 B02 --tile-size 256 --classes sea land [--out m.onnx]
    python -m engine contract show --model any.onnx
    python -m engine models list | download ID [--to DIR] | installed
    python -m engine batch --task estimate_bathymetry --inputs 'scenes/**/*.tif' --output-dir out/ [--ray-address auto]
    python -m engine doctor [--json]     which device each shipped model runs on, and why not CUDA
    python -m engine wheelhouse --out DIR [--flavour cpu|cuda|directml] [--from-installed]   wheels for an offline set-up

Progress goes to stderr; the result is printed as JSON on stdout. Exit status 2 on bad input, 130
on Ctrl+C and 143 on SIGTERM (temporary files removed, no output written; a batch keeps its finished scenes).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from engine import doctor, wheelhouse
from engine.contract import TEST_TIME_AUGMENTATIONS
from engine.errors import EngineError
from engine.model_catalogue import load_catalogue
from engine.output_files import Terminated, stop_cleanly_on_sigterm
from engine.tasks import RASTER_TASKS, run_task
from engine.tasks.batch_over_files import BatchOverFiles, batch_tasks


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a raster task")
    run.add_argument("task", choices=sorted(RASTER_TASKS))
    run.add_argument("--input", required=True, nargs="+",
                     help="input raster(s) GDAL reads; several files of one area are stacked (e.g. one per band)")
    run.add_argument("--output", required=True, help="output GeoTIFF")
    _add_task_options(run)
    run.add_argument("--probabilities", help="classify_seabed/classify_scenes: also write class probabilities")
    run.add_argument("--quality-layer", dest="quality_layer",
                     help="estimate_bathymetry/classify_seabed: also write the reason per pixel (valid, land, cloud, "
                          "sun glint, optically deep, out of range)")
    run.add_argument("--uncertainty",
                     help="estimate_bathymetry/classify_seabed/run_onnx/map_crops: also write the uncertainty by "
                          "test-time augmentation (spread of regression values; entropy and largest probability of "
                          "classes); the output is then the mean over the augmentations")
    _add_search_commands(commands)
    _add_batch_command(commands)
    describe = commands.add_parser("describe", help="print a model's contract")
    describe.add_argument("--model")
    describe.add_argument("--task", choices=sorted(RASTER_TASKS))
    _add_contract_commands(commands)
    _add_models_commands(commands)
    commands.add_parser("doctor", help="which device each shipped model runs on, why not CUDA, a one-tile test "
                                       "per device (python -m engine doctor --help)")
    commands.add_parser("wheelhouse", help="a folder of the wheels the engine needs, for the plugin's offline "
                                           "Engine set-up (python -m engine wheelhouse --help)")
    return parser


def _add_task_options(parser) -> None:
    """The options of a task run that are not file paths (run, and batch for every scene)."""
    parser.add_argument("--model", help="ONNX model with a contract (default: the shipped model)")
    parser.add_argument("--bands", help="band mapping NAME=INDEX,... when band names do not match")
    parser.add_argument("--extent", type=float, nargs=4, metavar=("XMIN", "YMIN", "XMAX", "YMAX"),
                        help="process only this extent (in the raster's CRS)")
    parser.add_argument("--resample", action="store_true", help="resample to the model's pixel size")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="where models run (default auto)")
    parser.add_argument("--batch-size", dest="batch_size", type=int,
                        help="tiles per model run instead of the model's own (smaller: less memory)")
    parser.add_argument("--max-memory", dest="max_memory", type=int, metavar="MB",
                        help="memory a run may use for its tiles and buffers (default: 128 MB and the model's memory "
                             "for a 1024 px tile): fully convolutional models run at the largest tile that fits it")
    _add_strict_argument(parser)
    parser.add_argument("--keep-masked", dest="keep_masked", action="store_true",
                        help="estimate_bathymetry/classify_seabed: keep values where the quality layer finds land, "
                             "cloud, glint, deep water or out-of-range depths (default: they become nodata)")
    parser.add_argument("--threshold", type=float, help="classify_scenes: probability from which a label is given")
    parser.add_argument("--min-valid", dest="min_valid", type=float,
                        help="classify_scenes: least valid fraction of a patch to classify it (default 0.9); "
                             "build_search_index: of an indexed tile (default 0.5)")
    parser.add_argument("--ratio", type=int, help="compress_hyperspectral: compression ratio (4, 8, 16, 32)")
    parser.add_argument("--quality", action="store_true",
                        help="compress_hyperspectral: also report PSNR and spectral angle against the input")
    _add_contract_arguments(parser, "--band-names", "run_onnx: ")


def _add_batch_command(commands) -> None:
    batch = commands.add_parser(
        "batch", help="batch_over_files: run a task over many scenes on Ray (local, or a cluster), resumable",
        description="One Ray task per scene; outputs <output-dir>/<scene>.tif (.gpkg for classify_scenes, the "
                    "folder index/ for build_search_index) and the manifest batch-manifest.jsonl, by which a "
                    "second run skips finished scenes. The task options below apply to every scene.")
    batch.add_argument("--task", required=True, choices=batch_tasks())
    batch.add_argument("--inputs", required=True,
                       help="glob pattern ('scenes/**/*.tif'; a matched folder is one scene of its files), a folder, "
                            "a .txt list of paths, or a STAC ItemCollection .json (with --asset-bands)")
    batch.add_argument("--output-dir", dest="output_dir", required=True, help="folder for the outputs and the manifest")
    batch.add_argument("--asset-bands", dest="asset_bands",
                       help="STAC: the model band of each asset, e.g. blue=B02,green=B03,red=B04 (visual=B04+B03+B02)")
    batch.add_argument("--extra-outputs", dest="extra_outputs", nargs="+",
                       choices=("probabilities", "quality_layer", "uncertainty"),
                       help="also write these per scene, as <scene>.<kind>.tif")
    batch.add_argument("--ray-address", dest="ray_address",
                       help="auto (the cluster this machine belongs to) or ray://head:10001; default: a local Ray")
    batch.add_argument("--workers", type=int, help="local Ray: scenes run at once (default: the CPU count)")
    batch.add_argument("--cpus-per-task", dest="cpus_per_task", type=float, help="CPUs one scene takes (default 1)")
    batch.add_argument("--gpus-per-task", dest="gpus_per_task", type=float,
                       help="GPUs one scene takes (0.25: four scenes share a GPU; default 0)")
    batch.add_argument("--max-in-flight", dest="max_in_flight", type=int,
                       help="scenes submitted at once (default: twice the cluster's CPUs)")
    batch.add_argument("--skip-failed", dest="skip_failed", action="store_true",
                       help="report scenes that failed in an earlier run instead of running them again")
    _add_task_options(batch)


def _batch_params(params: dict) -> dict:
    """The CLI's batch options: the batch's own, and the task's (every other option) under ``params``."""
    own = {key: value for key, value in params.items() if key in BatchOverFiles.params}
    return {**own, "params": {key: value for key, value in params.items() if key not in BatchOverFiles.params}}


def _add_models_commands(commands) -> None:
    models = commands.add_parser("models", help="published models: the catalogue, downloads, installed models")
    actions = models.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="the catalogue of published models (source, licence, size, SHA-256) as JSON")
    download = actions.add_parser(
        "download", help="download a catalogue model's checkpoint (resumable, SHA-256 checked), say how to import it")
    download.add_argument("id", help="catalogue id (python -m engine models list)")
    download.add_argument("--to", dest="folder", help="folder for the file (default: the user models folder/downloads)")
    actions.add_parser("installed", help="the ONNX models in models_onnx/ and the user models folder, by task")


def _add_contract_commands(commands) -> None:
    contract = commands.add_parser("contract", help="write or print the contract in an ONNX model's metadata")
    actions = contract.add_subparsers(dest="contract_action", required=True)
    write = actions.add_parser(
        "set", help="write a contract into an ONNX file (over its own contract, if any); refused when it "
                    "does not fit the graph")
    write.add_argument("--model", required=True, help="ONNX model file")
    write.add_argument("--out", help="write this file instead of changing --model")
    write.add_argument("--task", help="task name stored in the contract (default: run_onnx)")
    _add_contract_arguments(write, "--bands", "")
    actions.add_parser("show", help="print a model's contract (as describe)").add_argument("--model", required=True)


def _add_contract_arguments(parser, bands_flag: str, prefix: str) -> None:
    """The options of engine.tasks.contract_options.CONTRACT_OPTIONS."""
    parser.add_argument(bands_flag, dest="band_names", nargs="+", metavar="BAND",
                        help=f"{prefix}the model's input bands in order, matched against band descriptions")
    parser.add_argument("--scale", type=float, help=f"{prefix}divide raw values by this first (255 for 8-bit)")
    parser.add_argument("--mean", type=float, nargs="+", help=f"{prefix}per-band mean of scaled values (or one)")
    parser.add_argument("--std", type=float, nargs="+", help=f"{prefix}per-band std of scaled values (or one)")
    parser.add_argument("--tile-size", dest="tile_size", type=int, help=f"{prefix}tile side in px")
    parser.add_argument("--overlap", type=int, help=f"{prefix}overlap of neighbouring tiles in px")
    parser.add_argument("--classes", nargs="+", metavar="NAME[:#RRGGBB]",
                        help=f"{prefix}one name (and colour) per output channel")
    parser.add_argument("--output-kind", dest="output_kind", choices=("classes", "regression", "embedding"),
                        help=f"{prefix}what the output channels are")
    parser.add_argument("--activation", choices=("none", "softmax", "sigmoid"),
                        help=f"{prefix}applied to class scores: softmax or sigmoid when the graph gives "
                             "logits, none when it gives probabilities")
    parser.add_argument("--units", help=f"{prefix}units of regression output")
    parser.add_argument("--test-time-augmentations", dest="test_time_augmentations",
                        choices=TEST_TIME_AUGMENTATIONS,
                        help=f"{prefix}views of a tile whose outputs should agree (the model was trained with "
                             "them): flips, or dihedral (flips and 90-degree rotations); allows --uncertainty")


def _add_search_commands(commands) -> None:
    index = commands.add_parser("index", help="build_search_index: embed raster layers into a search index")
    index.add_argument("--input", required=True, nargs="+", help="raster layers, one file each")
    index.add_argument("--names", nargs="+", help="a display name per layer (default: file names)")
    _add_tiling_arguments(index)
    index.add_argument("--model", help="image encoder (default: models_onnx/search_image_rgb.onnx)")
    searches = {
        "search": ("search_text", "rank indexed tiles by a sentence"),
        "similar": ("search_similar", "rank indexed tiles by their likeness to one indexed tile"),
        "changes": ("search_changes", "rank tile pairs of two dates by a change sentence"),
    }
    for command, (task, text) in searches.items():
        search = commands.add_parser(command, help=f"{task}: {text}")
        search.add_argument("--output", help="GeoPackage of the result tiles")
        search.add_argument("--heatmap", help="GeoTIFF of every tile's score on the best result's layer")
        search.add_argument("--top-k", dest="top_k", type=int, help="results (default 20)")
        search.add_argument("--probes", type=int, help="inverted lists scanned in large indexes (default: 1/10 of them)")
        search.add_argument("--exact", action="store_true", help="scan every tile, even in large indexes")
        if command != "similar":
            search.add_argument("--query", required=True, help="what to look for, in words")
            search.add_argument("--text-model", dest="text_model", help="text encoder (default: the shipped one)")
    for command in (index, *(commands.choices[name] for name in searches)):
        command.add_argument("--index", required=True, help="index folder")
        command.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    similar = commands.choices["similar"]
    similar.add_argument("--layer", required=True, help="name of the indexed layer the query tile is in")
    similar.add_argument("--tile", type=int, help="tile number (a search result's 'tile')")
    similar.add_argument("--point", type=float, nargs=2, metavar=("X", "Y"), help="a point inside the query tile")
    similar.add_argument("--point-crs", dest="point_crs", help="CRS of --point (default: the layer's)")
    changes = commands.choices["changes"]
    changes.add_argument("--before", required=True, nargs="+", help="raster(s) of the first date")
    changes.add_argument("--after", required=True, nargs="+", help="raster(s) of the second date")
    changes.add_argument("--fusion", choices=("gff", "tff"), help="global or transformer feature fusion (default gff)")
    changes.add_argument("--model", help="change encoder (default: the shipped one of --fusion)")
    changes.add_argument("--name", help="name of the pair in the index")
    _add_tiling_arguments(changes)


def _add_strict_argument(parser) -> None:
    parser.add_argument("--strict", action="store_true",
                        help="refuse input whose values are implausible for the model (e.g. 8-bit values where "
                             "reflectance x 10000 is expected) instead of warning")


def _add_tiling_arguments(parser) -> None:
    parser.add_argument("--bands", help="band mapping NAME=INDEX,... when band names do not match")
    parser.add_argument("--extent", type=float, nargs=4, metavar=("XMIN", "YMIN", "XMAX", "YMAX"))
    parser.add_argument("--tile-size", dest="tile_size", type=int, help="tile side in px (default: the model's)")
    parser.add_argument("--overlap", type=int, help="overlap of neighbouring tiles in px (default: the model's)")
    parser.add_argument("--min-valid", dest="min_valid", type=float, help="least valid fraction of an indexed tile")
    _add_strict_argument(parser)


def _print_progress(fraction: float, message: str) -> None:
    print(f"\r{fraction:6.1%} {message}", end="", file=sys.stderr, flush=True)


COMMAND_TASKS = {"describe": "describe_model", "index": "build_search_index", "search": "search_text",
                 "batch": "batch_over_files",
                 "similar": "search_similar", "changes": "search_changes",
                 "contract set": "set_contract", "contract show": "describe_model"}
MODELS_TASKS = {"download": "download_model", "installed": "installed_models"}


def main(argv: list[str] | None = None) -> int:
    stop_cleanly_on_sigterm()
    arguments = sys.argv[1:] if argv is None else argv
    own_parsers = {"doctor": doctor.main, "wheelhouse": wheelhouse.main}  # commands with their own options
    if arguments[:1] and arguments[0] in own_parsers:
        return own_parsers[arguments[0]](arguments[1:])
    args = vars(_parser().parse_args(argv))
    command = args.pop("command")
    if command == "contract":
        command += " " + args.pop("contract_action")
    action = args.pop("action", None)
    task = COMMAND_TASKS.get(command) or MODELS_TASKS.get(action) or args.pop("task", None)
    params = {key: value for key, value in args.items() if value is not None and value is not False}
    if command == "run" and len(params["input"]) == 1:
        params["input"] = params["input"][0]
    if command == "batch":
        params = _batch_params(params)
    try:
        if action == "list":
            print(json.dumps([asdict(model) for model in load_catalogue()], indent=2, ensure_ascii=False))
            return 0
        result = run_task(task, params, _print_progress, lambda: False)
    except EngineError as err:
        print(f"\nerror: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:  # Ctrl+C or SIGTERM, after every output's cleanup
        kept = "the finished scenes are kept; run again to resume" if command == "batch" else "no output was written"
        print(f"\n{stop or 'interrupted'}: {kept}", file=sys.stderr)
        return 143 if isinstance(stop, Terminated) else 130
    print(file=sys.stderr)
    for warning in result.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    if task == "download_model":
        print(f"downloaded {result['path']}; import it with:\n  {result['import_command']}", file=sys.stderr)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

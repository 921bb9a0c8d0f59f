"""Command line over the same task functions the worker runs.

    python -m engine run estimate_bathymetry --input scene.tif --output depth.tif [--device cpu]
    python -m engine run classify_seabed --input scene.tif --output classes.tif --probabilities p.tif
    python -m engine run compress_hyperspectral --input cube.tif --output cube_cr8.tif --ratio 8 --quality
    python -m engine run decompress_hyperspectral --input cube_cr8.tif --output restored.tif
    python -m engine run classify_scenes --input s2_stack.tif s1_VV.tif s1_VH.tif --output patches.gpkg
    python -m engine describe [--model model.onnx] [--task classify_seabed]

Progress goes to stderr; the result is printed as JSON on stdout. Exit status 2 on bad input.
"""
from __future__ import annotations

import argparse
import json
import sys

from engine.errors import EngineError
from engine.tasks import RASTER_TASKS, run_task


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a raster task")
    run.add_argument("task", choices=sorted(RASTER_TASKS))
    run.add_argument("--input", required=True, nargs="+",
                     help="input raster(s) GDAL reads; several files of one area are stacked (e.g. one per band)")
    run.add_argument("--output", required=True, help="output GeoTIFF")
    run.add_argument("--model", help="ONNX model with a contract (default: the shipped model)")
    run.add_argument("--bands", help="band mapping NAME=INDEX,... when band names do not match")
    run.add_argument("--extent", type=float, nargs=4, metavar=("XMIN", "YMIN", "XMAX", "YMAX"),
                     help="process only this extent (in the raster's CRS)")
    run.add_argument("--resample", action="store_true", help="resample to the model's pixel size")
    run.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    run.add_argument("--probabilities", help="classify_seabed/classify_scenes: also write class probabilities")
    run.add_argument("--threshold", type=float, help="classify_scenes: probability from which a label is given")
    run.add_argument("--min-valid", dest="min_valid", type=float,
                     help="classify_scenes: least valid fraction of a patch to classify it (default 0.9)")
    run.add_argument("--ratio", type=int, help="compress_hyperspectral: compression ratio (4, 8, 16, 32)")
    run.add_argument("--quality", action="store_true",
                     help="compress_hyperspectral: also report PSNR and spectral angle against the input")
    describe = commands.add_parser("describe", help="print a model's contract")
    describe.add_argument("--model")
    describe.add_argument("--task", choices=sorted(RASTER_TASKS))
    return parser


def _print_progress(fraction: float, message: str) -> None:
    print(f"\r{fraction:6.1%} {message}", end="", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = vars(_parser().parse_args(argv))
    command = args.pop("command")
    task = "describe_model" if command == "describe" else args.pop("task")
    params = {key: value for key, value in args.items() if value not in (None, False)}
    if command == "run" and len(params["input"]) == 1:
        params["input"] = params["input"][0]
    try:
        result = run_task(task, params, _print_progress, lambda: False)
    except EngineError as err:
        print(f"\nerror: {err}", file=sys.stderr)
        return 2
    print(file=sys.stderr)
    for warning in result.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

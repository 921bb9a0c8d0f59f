"""Importers of published weights: import time, ONNX-vs-torch difference, engine vs bare session.run.

Every source's checkpoint is built in its authors' layout (their parameter names, random weights;
tests/*_reference.py), imported, and the imported model run by the engine task a user runs it with.
The overhead ratio is engine wall time / bare ``session.run`` wall time over the same inputs:

- MagicBathyNet (three rows): each importer's zipped checkpoint; ``estimate_bathymetry`` or
  ``classify_seabed`` over a Sentinel-2-sized scene; the ratio as in bench/throughput.py (session.run
  over exactly the tiles and batches the engine makes).
- ``hycot`` (Fuchs, Rasti, Demir, WHISPERS 2024): ``hycot_cr<N>.pth.tar`` at the published sizes; its
  encoder compresses a simulated EnMAP-like scene (202 bands); ratio as above.
- ``reben`` (Clasen et al., arXiv:2407.03653): a configilm-built classifier in the hub's layout
  (``<backbone>-s2-v0.2.0/model.safetensors`` + ``config.json``), ResNet-50 by default (a published
  backbone at its published size); ``classify_scenes`` over a 12-band Sentinel-2 L2A scene cut into
  120 px patches (GeoPackage of labels); ratio as above, session.run over the same patches.
- ``open-clip`` (RemoteCLIP, Liu et al., IEEE TGRS 2024; the other presets share its architectures):
  a RemoteCLIP-layout state dict of ViT-B-32 by default (the smallest ViT every preset published;
  ViT-L-14 and ViT-H-14 take too long here), imported as an image + text pair; two rows.
  The engine keeps both encoders loaded between requests (as the dock's worker does), so the faster
  run is a warm one. *image*: ``build_search_index`` of an 8-bit RGB layer into a fresh index (embed,
  unit-normalise, FAISS store, manifest) vs session.run over the same 224 px tiles in the index's
  batches (``EMBED_BATCH``). *text*: one search_text request per sentence of ``QUERIES`` against that
  index (tokenise, embed, scan, rank) vs session.run of the same one-sentence token batches; so its
  ratio is the cost of a whole query over the text encoder's share of it. Their difference column is measured through the engine:
  the image model on the layer's first row of tiles vs open_clip's ``encode_image``, ``embed_text`` of
  the queries vs ``encode_text`` (unit embeddings both).
- ``tsvit-pastis`` (Tarasiou, Chavez, Zafeiriou, CVPR 2023): ``best.pth`` of TSViT at the published
  PASTIS24 size (dim 128, 4 + 4 layers); ``map_crops`` over a simulated Sentinel-2 season
  (training/simulation/crop_geotiffs.py, one GeoTIFF per date) vs session.run of as many tiles,
  batches and dates on the three inputs s2, s2_doy, s2_mask (bench/crop.py); the engine's share
  is reading and resampling every date of every tile, building those inputs and blending.

Usage: python bench/import_models.py [--size 192] [--segformer B5] [--hycot-size 128] [--hycot-cr 16]
    [--reben-backbone resnet50] [--reben-size 1920] [--clip-architecture ViT-B-32] [--clip-size 1792]
    [--tsvit-size 96] [--sources reben open-clip tsvit-pastis ...]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import open_clip
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "bench")]

from clip_reference import random_clip, remoteclip_checkpoint  # noqa: E402
from crop import bare_seconds as bare_series_seconds  # noqa: E402
from hycot_reference import ReferenceHyCoT, published_checkpoint  # noqa: E402
from magicbathynet_reference import ReferenceBathymetryUNet, published_zip, randomise  # noqa: E402
from raster_fixtures import write_raster  # noqa: E402
from reben_reference import S2_ESA_ORDER, AuthorsClassifier, reben_bands  # noqa: E402
from throughput import bare_session_seconds  # noqa: E402
from tsvit_reference import ReferenceTSViT  # noqa: E402
from tsvit_reference import randomise as randomise_tsvit  # noqa: E402

from engine.contract import TOKENIZER_KEY  # noqa: E402
from engine.raster_io import normalise  # noqa: E402
from engine.runtime import Model  # noqa: E402
from engine.tasks import run_task  # noqa: E402
from engine.tasks.search_index import EMBED_BATCH, embedding_model  # noqa: E402
from engine.tasks.search_results import embed_text, tokenizer_from  # noqa: E402
from training.importers import import_model  # noqa: E402
from training.marine.model import SeabedUNet  # noqa: E402
from training.marine.segformer import SegFormer  # noqa: E402
from training.scene_labels.importers import BACKBONES, RELEASE_BANDS  # noqa: E402
from training.simulation.crop_geotiffs import write_crop_time_series  # noqa: E402
from training.simulation.hyperspectral import simulate_scene, write_scene_geotiff  # noqa: E402
from training.text_search.importers import PRESETS  # noqa: E402

LOW, HIGH = np.array([100.0, 200.0, 300.0]), np.array([1500.0, 1700.0, 1900.0])
MAGICBATHYNET = ("magicbathynet-bathymetry", "magicbathynet-seabed-unet", "magicbathynet-seabed-segformer")
SOURCES = (*MAGICBATHYNET, "hycot", "reben", "open-clip", "tsvit-pastis")
QUERIES = ("an airport with many airplanes", "a river crossing farmland", "dense green forest next to the city",
           "a harbour with boats", "a beach along the sea", "a residential area with small houses",
           "a highway interchange", "bare soil after the harvest", "a lake surrounded by trees",
           "greenhouses in rows", "a golf course", "a quarry in the hills", "salt evaporation ponds",
           "a stadium in a city", "snow on the mountains", "terraced vineyards on a slope")


def timed(task: str, params: dict) -> tuple[float, dict]:
    """Wall time of one engine task on the CPU, and its result."""
    began = time.perf_counter()
    result = run_task(task, params | {"device": "cpu"}, lambda *_: None, lambda: False)
    return time.perf_counter() - began, result


def fastest(run: Callable[[int], tuple[float, dict]]) -> tuple[float, dict]:
    """The faster of two runs; ``run`` gets the run's number, for outputs that must be new each time."""
    return min((run(number) for number in range(2)), key=lambda pair: pair[0])


def imported(source: str, checkpoint: Path, options: argparse.Namespace, work: Path) -> tuple[dict, float]:
    """``import_model``'s result and its wall time."""
    began = time.perf_counter()
    result = import_model(source, checkpoint, work / f"{source}.onnx", options)
    return result, time.perf_counter() - began


def print_row(source: str, import_seconds: float | None, difference: float, inputs: str, engine: float,
              bare: float) -> None:
    seconds = "(same import)" if import_seconds is None else f"{import_seconds:.1f}"
    print(f"| {source} | {seconds} | {difference:.1e} | {inputs} | {engine:.1f} | {bare:.1f} | {engine / bare:.2f} |",
          flush=True)


def raster_row(source: str, checkpoint: Path, options: argparse.Namespace, task: str, scene: Path,
               image: np.ndarray, output: Path) -> None:
    """Import ``checkpoint``, run its (first) model through the engine task over ``scene`` and bare
    session.run over the same tiles of ``image`` (its values in the model's band order)."""
    result, import_seconds = imported(source, checkpoint, options, output.parent)
    bare, tile = bare_raster_seconds(result["paths"][0], image)
    engine, run = fastest(lambda _: timed(task, {"input": str(scene), "output": str(output),
                                                 "model": result["paths"][0]}))
    print_row(source, import_seconds, result["max_abs_diff"], f"{run['tiles']} ({tile})", engine, bare)


def bare_raster_seconds(path: str, image: np.ndarray) -> tuple[float, int]:
    """The faster of two bare runs over ``image`` and the model's tile size; the session is released
    on return, before the engine loads its own (SegFormer B5's holds GBs)."""
    model = Model(path, "cpu")
    return min(bare_session_seconds(model, image.astype(np.float32)) for _ in range(2)), model.contract.tile_size


def magicbathynet_rows(args: argparse.Namespace, wanted: set[str], work: Path) -> None:
    norm_param = work / "norm_param_s2_an.npy"
    np.save(norm_param, np.stack([LOW, HIGH]))
    image = np.random.default_rng(0).integers(200, 1500, size=(3, args.size, args.size)).astype(np.uint16)
    scene = work / "scene.tif"
    write_raster(scene, image, descriptions=("B04", "B03", "B02"))  # 10 m pixels in UTM 36N, off Cyprus
    cases = (  # source, the network in the authors' layout, the engine task
        ("magicbathynet-bathymetry", ReferenceBathymetryUNet, "estimate_bathymetry"),
        ("magicbathynet-seabed-unet", lambda: SeabedUNet(3, 5), "classify_seabed"),
        ("magicbathynet-seabed-segformer", lambda: SegFormer(args.segformer, 5), "classify_seabed"),
    )
    for source, network, task in (case for case in cases if case[0] in wanted):
        checkpoint = published_zip(work / f"{source}.zip", randomise(network(), seed=1))
        options = argparse.Namespace(area="agia_napa", modality="s2", norm_param=norm_param, tile_size=None)
        raster_row(source, checkpoint, options, task, scene, image, work / f"{source}.tif")


def hycot_row(args: argparse.Namespace, work: Path) -> None:
    torch.manual_seed(1)
    hycot = published_checkpoint(work / f"hycot_cr{args.hycot_cr}.pth.tar", ReferenceHyCoT(202, args.hycot_cr))
    enmap = simulate_scene(args.hycot_size, args.hycot_size, seed=5)
    write_scene_geotiff(enmap, work / "enmap.tif")
    raster_row("hycot", hycot, argparse.Namespace(tile_size=None, compression_ratio=None), "compress_hyperspectral",
               work / "enmap.tif", enmap.kept_bands, work / "hycot.tif")


def reben_row(args: argparse.Namespace, work: Path) -> None:
    """A release v0.2.0 S2 classifier over a 12-band L2A scene in ESA band order."""
    authors = AuthorsClassifier(args.reben_backbone, 10, seed=1)
    checkpoint = authors.publish(work / "hub" / f"{args.reben_backbone}-s2-v0.2.0")
    values = np.clip(reben_bands(S2_ESA_ORDER, args.reben_size, args.reben_size, seed=2), 1, 10000).round()
    scene = work / "S2_L2A.tif"
    write_raster(scene, values.astype("uint16"), descriptions=S2_ESA_ORDER)
    image = values[[S2_ESA_ORDER.index(band) for band in RELEASE_BANDS["v0.2.0"]["s2"]]]  # the model's order
    raster_row("reben", checkpoint, argparse.Namespace(backbone=None, bands=None, release=None), "classify_scenes",
               scene, image, work / "scenes.gpkg")


def clip_rows(args: argparse.Namespace, work: Path) -> None:
    """RemoteCLIP's layout of ``--clip-architecture``: the image encoder builds a search index, the
    text encoder answers the ``QUERIES`` from it."""
    architecture = PRESETS["remoteclip"].architectures[args.clip_architecture]
    clip = random_clip(architecture)
    checkpoint = remoteclip_checkpoint(work / f"RemoteCLIP-{args.clip_architecture}.pt", clip)
    options = argparse.Namespace(architecture=None, preset="remoteclip")
    result, import_seconds = imported("open-clip", checkpoint, options, work)
    image_path, text_path = result["paths"]
    pixels = np.random.default_rng(3).integers(0, 256, size=(3, args.clip_size, args.clip_size)).astype("uint8")
    layer = work / "rgb.tif"
    write_raster(layer, pixels, descriptions=("red", "green", "blue"))

    image_model = Model(image_path, "cpu")
    contract = image_model.contract
    tile = contract.tile_size
    first_row = np.stack([normalise(pixels[:, :tile, col:col + tile].astype(np.float32), True, contract.mean,
                                    contract.std) for col in range(0, args.clip_size - tile + 1, tile)])
    with torch.no_grad():
        reference = clip.encode_image(torch.from_numpy(first_row), normalize=True).numpy()
    image_difference = float(np.abs(image_model.run(first_row).reshape(len(first_row), -1) - reference).max())
    image_model.contract = dataclasses.replace(contract, batch_size=EMBED_BATCH)  # the index's batches
    bare = min(bare_session_seconds(image_model, pixels.astype(np.float32)) for _ in range(2))
    engine, built = fastest(lambda number: timed("build_search_index", {"input": str(layer), "model": image_path,
                                                                        "index": str(work / f"index{number}")}))
    print_row("open-clip image", import_seconds, image_difference, f"{built['tiles']} ({tile})", engine, bare)

    text_model = embedding_model(text_path, "cpu", "text_embedding")  # the session the engine's queries run on
    with torch.no_grad():
        reference = clip.encode_text(open_clip.get_tokenizer(architecture)(list(QUERIES)), normalize=True).numpy()
    text_difference = float(np.abs(embed_text(text_model, list(QUERIES)) - reference).max())
    tokenizer = tokenizer_from(text_model.metadata[TOKENIZER_KEY])
    batches = [{"input_ids": np.array([encoding.ids], np.int64),
                "attention_mask": np.array([encoding.attention_mask], np.int64)}
               for encoding in tokenizer.encode_batch(list(QUERIES))]

    def queries(_: int) -> tuple[float, dict]:
        began = time.perf_counter()
        for query in QUERIES:
            timed("search_text", {"index": str(work / "index0"), "query": query, "text_model": text_path})
        return time.perf_counter() - began, {}

    def bare_queries() -> float:
        seconds = 0.0
        for feeds in batches:
            began = time.perf_counter()
            text_model.run(feeds)
            seconds += time.perf_counter() - began
        return seconds

    engine, _ = fastest(queries)
    bare = min(bare_queries() for _ in range(2))
    print_row("open-clip text", None, text_difference,
              f"{len(QUERIES)} queries ({batches[0]['input_ids'].shape[1]} tokens)", engine, bare)


def tsvit_row(args: argparse.Namespace, work: Path) -> None:
    """TSViT's ``best.pth`` at the PASTIS24 size over a simulated season, one GeoTIFF per date."""
    checkpoint = work / "best.pth"
    torch.save(randomise_tsvit(ReferenceTSViT(), seed=3).state_dict(), checkpoint)  # their training loop's save
    result, import_seconds = imported("tsvit-pastis", checkpoint, argparse.Namespace(), work)
    series = write_crop_time_series(work / "series", size=args.tsvit_size, seed=5, stack=False)
    model = Model(result["paths"][0], "cpu")
    (modality,) = model.contract.modalities
    dates = min(len(series.s2), modality.max_dates)
    bare = min(bare_series_seconds(model, args.tsvit_size, dates) for _ in range(2))
    engine, run = fastest(lambda _: timed("map_crops", {"s2": [str(path) for path in series.s2],
                                                        "output": str(work / "crops.tif"),
                                                        "model": result["paths"][0]}))
    print_row("tsvit-pastis", import_seconds, result["max_abs_diff"],
              f"{run['tiles']} ({model.contract.tile_size}, {dates} dates)", engine, bare)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=192, help="MagicBathyNet scene side in Sentinel-2 pixels")
    parser.add_argument("--segformer", default="B5", help="MiT variant of the SegFormer checkpoint (published: B5)")
    parser.add_argument("--hycot-size", type=int, default=128, help="EnMAP-like scene side in 30 m pixels")
    parser.add_argument("--hycot-cr", type=int, default=16, choices=(4, 8, 16, 32), help="published HyCoT CR")
    parser.add_argument("--reben-backbone", default="resnet50", choices=BACKBONES, help="published reBEN backbone")
    parser.add_argument("--reben-size", type=int, default=1920, help="reBEN scene side in 10 m pixels (120 per patch)")
    parser.add_argument("--clip-architecture", default="ViT-B-32", choices=tuple(PRESETS["remoteclip"].architectures),
                        help="RemoteCLIP's published architecture")
    parser.add_argument("--clip-size", type=int, default=1792, help="RGB layer side in pixels (224 per tile)")
    parser.add_argument("--tsvit-size", type=int, default=96, help="simulated crop area side in 10 m pixels")
    parser.add_argument("--sources", nargs="+", choices=SOURCES, help="only these importers' rows (default: all)")
    args = parser.parse_args()
    wanted = set(args.sources or SOURCES)
    print(f"scenes: MagicBathyNet {args.size}x{args.size} S2 px, HyCoT {args.hycot_size}x{args.hycot_size} EnMAP px, "
          f"reBEN {args.reben_backbone} {args.reben_size}x{args.reben_size} S2 px, open-clip {args.clip_architecture} "
          f"{args.clip_size}x{args.clip_size} RGB px, TSViT {args.tsvit_size}x{args.tsvit_size} S2 px; CPU; "
          "the faster of two runs each")
    print("| source | import s | ONNX vs torch max diff | tiles (px) | engine s | bare session.run s | ratio |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="rsai-import-bench-") as folder:  # checkpoints and models: GBs
        work = Path(folder)
        if wanted & set(MAGICBATHYNET):
            magicbathynet_rows(args, wanted, work)
        for source, rows in (("hycot", hycot_row), ("reben", reben_row), ("open-clip", clip_rows),
                             ("tsvit-pastis", tsvit_row)):
            if source in wanted:
                rows(args, work)


if __name__ == "__main__":
    main()

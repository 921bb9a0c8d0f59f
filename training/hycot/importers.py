"""Importer of HyCoT's published HySpecNet-11k weights (Fuchs, Rasti, Demir: "HyCoT: A
Transformer-Based Autoencoder for Hyperspectral Image Compression", WHISPERS 2024,
arXiv:2408.08700; code and weights: git.tu-berlin.de/rsim/hycot, MIT).

The authors publish ``hycot_cr4.pth.tar``, ``hycot_cr8.pth.tar``, ``hycot_cr16.pth.tar`` and
``hycot_cr32.pth.tar`` (links in their README), written by their CompressAI-derived training script:
``{"state_dict": model.state_dict()}`` of ``models/hycot.py``'s
``HyperspectralCompressionTransformer`` (``final.pth.tar``; the ``last``/``best`` files add
``epoch``, ``loss`` and ``optimizer``), with no ``module.`` prefix, which their test script loads
strictly. The network, configured as their factories ``hycot_cr<N>`` do for 202 bands: token width
64, 5 pre-norm blocks of 4 heads of 16, MLP 8, hidden width 1024, groups of 4 bands,
L = ceil(202 / CR) latent values.

The toolbox's HyCoT (``training.hycot.model``, without ``final_norm``) computes the same, layer by
layer: zero padding at the short-wavelength end (202 -> 204 bands), 51 tokens of 4 adjacent bands,
the compression token first, learned position embeddings, residual pre-norm attention (bias-free
q/k/v in that order, then heads) and GELU MLP, the compression token through
Linear -> LeakyReLU -> Linear -> sigmoid, and the decoder Linear -> LeakyReLU -> Linear -> sigmoid per
pixel. Only the names differ: ``HYCOT_NAMES`` maps each published tensor onto one of ours, and
``load_weights`` then requires every one of ours to be filled. Their ``transformer.skipcat``
convolutions belong to a "CAF" mode that HyCoT does not run: they are checked and left out.

Their input is HySpecNet-11k's ``*-DATA.npy``: the 202 bands left after removing the water-vapour
bands 127-141 and 161-167, clipped to [0, 10000] and divided by 10000 (hyspecnet-tools'
``tif_to_npy``); their data loader adds no normalisation. The encoder contract divides EnMAP L2A
reflectance x 10000 by 10000 and the graph clips to [0, 1], which is that preparation.
"""
from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

from torch import Tensor

from training.hycot.bit_rate import latent_channels
from training.hycot.data import INPUT_UNITS
from training.hycot.export import write_hycot_pair
from training.hycot.module import PAPER, HyCoTTask
from training.importers import (
    ImportedModel,
    Importer,
    ImportRefused,
    layer_count,
    load_state_dict,
    load_weights,
    refuse_mismatches,
    required_shapes,
    toolbox_name,
)
from training.simulation.hyperspectral import GSD_M, KEPT_BANDS, WAVELENGTHS_NM

LICENCE = "MIT (the authors' hycot repository; the weights state no licence of their own)"
URL = "https://git.tu-berlin.de/rsim/hycot (README: Pre-Trained Weights, tubcloud.tu-berlin.de)"
BANDS = len(KEPT_BANDS)  # HySpecNet-11k: 224 EnMAP bands without the 22 water-vapour bands
GROUP = 4  # patch_depth of every published factory
HEADS = 4  # every factory; not recoverable from the weights (q/k/v width = heads x head width)
PUBLISHED_RATIOS = (4, 8, 16, 32)
REPORTED_PSNR_DB = {4: 56.29, 8: 55.38, 16: 53.20, 32: 50.26}  # their README, HySpecNet-11k test set
TILE_SIZE = 64  # pixelwise, so tiles do not change the result; 64 x 64 keeps the encoder near 1.2 GB
HYCOT_NAMES = (  # published -> training.hycot.model (as HyCoTTask's encoder and decoder)
    (r"^patch_to_embedding\.", "encoder.embed."),
    (r"^comp_token$", "encoder.compression_token"),
    (r"^pos_embedding$", "encoder.position"),
    (r"^transformer\.layers\.(\d+)\.0\.fn\.norm\.", r"encoder.blocks.\1.attention_norm."),
    (r"^transformer\.layers\.(\d+)\.0\.fn\.fn\.to_qkv\.", r"encoder.blocks.\1.attention.to_qkv."),
    (r"^transformer\.layers\.(\d+)\.0\.fn\.fn\.to_out\.0\.", r"encoder.blocks.\1.attention.to_out."),
    (r"^transformer\.layers\.(\d+)\.1\.fn\.norm\.", r"encoder.blocks.\1.mlp_norm."),
    (r"^transformer\.layers\.(\d+)\.1\.fn\.fn\.net\.0\.", r"encoder.blocks.\1.mlp.0."),
    (r"^transformer\.layers\.(\d+)\.1\.fn\.fn\.net\.3\.", r"encoder.blocks.\1.mlp.2."),
    (r"^to_latent\.", "encoder.to_latent."),
    (r"^patch_deembed\.", "decoder.to_spectrum."),
)
SKIPCAT = re.compile(r"^transformer\.skipcat\.\d+\.(weight|bias)$")


def published_sizes(state: dict[str, Tensor], checkpoint: Path) -> dict:
    """HyCoTTask's model options of the published network, read from its tensors; anything that is
    not a HyCoT for HySpecNet-11k's 202 bands is refused."""
    required = ("patch_to_embedding.weight", "comp_token", "pos_embedding",
                "transformer.layers.0.0.fn.fn.to_qkv.weight", "transformer.layers.0.1.fn.fn.net.0.weight",
                "to_latent.0.weight", "to_latent.2.weight", "patch_deembed.2.weight")
    shape = required_shapes(state, required, checkpoint, "a HyCoT state dict as Fuchs et al. publish it",
                            "models/hycot.py HyperspectralCompressionTransformer",
                            "give one of their hycot_cr<N>.pth.tar files")
    dim, group = shape["patch_to_embedding.weight"]
    tokens = math.ceil(BANDS / GROUP) + 1
    depth = layer_count(state, "transformer.layers")
    skipcat = {f"transformer.skipcat.{i}.{kind}": (tokens, tokens, 1, 2) if kind == "weight" else (tokens,)
               for i in range(depth - 2) for kind in ("weight", "bias")}
    found_skipcat = {name: tuple(tensor.shape) for name, tensor in state.items() if SKIPCAT.match(name)}
    inner = shape["transformer.layers.0.0.fn.fn.to_qkv.weight"][0] // 3
    refuse_mismatches((
        (f"patch_deembed.2.weight {shape['patch_deembed.2.weight']}: HySpecNet-11k's {BANDS} bands expected",
         shape["patch_deembed.2.weight"][0] != BANDS),
        (f"patch_to_embedding.weight {shape['patch_to_embedding.weight']}: groups of {GROUP} bands expected",
         group != GROUP),
        (f"pos_embedding {shape['pos_embedding']}: (1, {tokens}, {dim}) expected",
         shape["pos_embedding"] != (1, tokens, dim)),
        (f"to_qkv {shape['transformer.layers.0.0.fn.fn.to_qkv.weight']}: {HEADS} heads expected", inner % HEADS),
        (f"transformer.skipcat {sorted(found_skipcat.items())}: {depth - 2} Conv2d({tokens}, {tokens}, (1, 2)) "
         f"expected for {depth} layers", found_skipcat != skipcat),
    ), checkpoint, "HyCoT for HySpecNet-11k")
    return {"dim": dim, "depth": depth, "heads": HEADS, "head_dim": inner // HEADS,
            "mlp_dim": shape["transformer.layers.0.1.fn.fn.net.0.weight"][0],
            "hidden_dim": shape["to_latent.0.weight"][0], "latent": shape["to_latent.2.weight"][0]}


def compression_ratio(latent: int, given: int | None) -> int:
    """The nominal CR of a network with ``latent`` values per pixel (their factory's name): the one
    given, if it yields that many, else the published one that does."""
    if given:
        if latent_channels(BANDS, given) != latent:
            raise ImportRefused(f"--compression-ratio {given} gives ceil({BANDS} / {given}) = "
                                f"{latent_channels(BANDS, given)} latent values, but the checkpoint has {latent}")
        return given
    matches = [ratio for ratio in PUBLISHED_RATIOS if latent_channels(BANDS, ratio) == latent]
    if not matches:
        raise ImportRefused(f"the checkpoint has {latent} latent values, which none of the published compression "
                            f"ratios {PUBLISHED_RATIOS} gives; give --compression-ratio")
    return matches[0]


def hycot_names(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The published tensors under ``HyCoTTask``'s names, without the unused ``skipcat``
    convolutions (checked by ``published_sizes``). Names it does not know are kept, so that
    ``load_weights`` reports them."""
    return {toolbox_name(key, HYCOT_NAMES): value for key, value in state.items() if not SKIPCAT.match(key)}


def import_hycot(checkpoint: Path, out: Path, options: argparse.Namespace, provenance: dict) -> ImportedModel:
    state = load_state_dict(checkpoint)
    sizes = published_sizes(state, checkpoint)
    latent = sizes.pop("latent")
    ratio = compression_ratio(latent, getattr(options, "compression_ratio", None))
    module = HyCoTTask(bands=BANDS, compression_ratio=ratio, **sizes)
    load_weights(module, hycot_names(state), checkpoint, f"HyCoT with {latent} latent values (CR {ratio})")
    data = {"bands": [f"B{n}" for n in KEPT_BANDS], "wavelengths_nm": [round(float(w), 1) for w in WAVELENGTHS_NM],
            "gsd_m": GSD_M, "input_units": INPUT_UNITS}
    tile_size = getattr(options, "tile_size", None) or TILE_SIZE
    written = write_hycot_pair(module.eval(), out.with_suffix(""), data,
                               provenance | {"architecture": "HyperspectralCompressionTransformer"}, tile_size)
    reported = (f" The authors report {REPORTED_PSNR_DB[ratio]} dB PSNR at CR {ratio} on HySpecNet-11k's test set "
                "(their README)." if ratio in REPORTED_PSNR_DB else "")
    return ImportedModel(
        (Path(written["encoder"]), Path(written["decoder"])), written["max_abs_diff"],
        f"HyCoT (models/hycot.py HyperspectralCompressionTransformer): {sizes['depth']} pre-norm blocks, token width "
        f"{sizes['dim']}, {HEADS} heads of {sizes['head_dim']}, MLP {sizes['mlp_dim']}, hidden width "
        f"{sizes['hidden_dim']}; {BANDS} bands in groups of {GROUP} -> {latent} latent values (CR {ratio})",
        ("Encoder and decoder are two files, <name>_encoder.onnx (Compress hyperspectral raster) and "
         "<name>_decoder.onnx (Decompress hyperspectral raster), paired by the pair id in their contracts.",
         "Input: EnMAP L2A reflectance x 10000 of the 202 HySpecNet-11k bands (without the water-vapour bands "
         "127-141 and 161-167); the contract divides by 10000 and the graph clips to [0, 1], as HySpecNet-11k's "
         "preparation (clip to [0, 10000], divide by 10000) made the authors' training data.",
         "Trained by the authors on HySpecNet-11k (EnMAP, 128 x 128 px patches); other sensors' band sets do not "
         "fit." + reported,
         "The published tensors load one to one under the toolbox's layer names (training/hycot/"
         "importers.py HYCOT_NAMES); the reference's transformer.skipcat convolutions, used only by its 'CAF' "
         "mode and not by HyCoT, are checked and left out.",
         "The reference's output reshape assumes square inputs (it swaps height and width otherwise); the graph is "
         "pixelwise on any tile and equals the reference on square ones.",
         "The compressed file stores each latent as a 16-bit code (quantisation error at most 0.5 / 65534); the "
         "bit rate recorded is the paper's, 32 bits per latent value.",
         f"Tiles of {tile_size} px, no overlap: the model is pixelwise, so tiles do not change the result."),
    )


IMPORTERS = (
    Importer("hycot", "hyperspectral", "HyCoT hyperspectral compression (encoder + decoder), HySpecNet-11k, "
             "CR 4/8/16/32", LICENCE, PAPER, URL, import_hycot),
)

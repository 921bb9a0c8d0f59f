"""Importing HyCoT's published HySpecNet-11k weights (Fuchs, Rasti, Demir, WHISPERS 2024): a
checkpoint in the authors' layout (their parameter names, random weights, ``hycot_cr16.pth.tar`` as
their training script leaves it) becomes an encoder/decoder pair whose engine compression and
decompression of an EnMAP-like GeoTIFF equal the reference's compress and decompress; wrong and
damaged files are refused and leave nothing behind."""
import argparse
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from engine.tasks import run_task
from hycot_reference import TINY, ReferenceHyCoT, published_checkpoint
from training.__main__ import main as training_main
from training.hycot.importers import compression_ratio, published_sizes
from training.importers import ImportRefused, import_model, load_state_dict
from training.simulation.hyperspectral import KEPT_BANDS, simulate_scene, write_scene_geotiff
from training.hycot.module import HyCoTTask

LEVELS = 65534.0  # latent codes 1 + round(z * 65534)


def _run(task: str, **params) -> dict:
    return run_task(task, params, lambda *_: None, lambda: False)


def test_published_checkpoint_compresses_and_decompresses_in_the_engine_like_the_reference(tmp_path, capsys):
    torch.manual_seed(5)
    network = ReferenceHyCoT(202, 16, **TINY).eval()
    checkpoint = published_checkpoint(tmp_path / "hycot_cr16.pth.tar", network)
    stem = tmp_path / "models" / "hycot_cr16"
    training_main(["import", "--source", "hycot", "--checkpoint", str(checkpoint), "--out", f"{stem}.onnx",
                   "--tile-size", "16"])
    assert '"max_abs_diff"' in capsys.readouterr().out
    card = Path(f"{stem}_encoder.md").read_text()
    assert "WHISPERS 2024" in card and "MIT" in card and "--source hycot" in card and "skipcat" in card
    assert "mean 0 for every band, std 10000 for every band" in card and "the graph takes any size" in card
    assert "13 latent values (CR 16)" in card and "53.2 dB PSNR at CR 16" in card

    scene = simulate_scene(48, 48, seed=3)  # EnMAP-like reflectance x 10000, EPSG:32633, 30 m
    scene.reflectance[:, 0, :3] = 12000  # above the [0, 10000] that HySpecNet-11k's preparation clips to
    scene.reflectance[KEPT_BANDS[5] - 1, 1, 0] = -40
    image = tmp_path / "scene.tif"
    write_scene_geotiff(scene, image)
    compressed = _run("compress_hyperspectral", input=str(image), output=str(tmp_path / "c.tif"),
                      model=f"{stem}_encoder.onnx")
    assert compressed["latent_bands"] == 13 and compressed["bits_per_pixel_per_channel"] == round(13 * 32 / 202, 4)
    with torch.no_grad():
        reflectance = torch.from_numpy(np.clip(scene.kept_bands, 0, 10000) / 10000.0).float()[None]
        expected_codes = 1 + np.rint(network.compress(reflectance)[0].numpy() * LEVELS)
    assert np.ptp(expected_codes) > 1000  # the random network says something
    with rasterio.open(tmp_path / "c.tif") as latent:
        codes = latent.read().astype(np.float64)
        assert latent.crs == "EPSG:32633" and latent.tags()["compression_ratio"] == "16"
    assert np.abs(codes - expected_codes).max() <= 1 and (codes == expected_codes).mean() > 0.99

    _run("decompress_hyperspectral", input=str(tmp_path / "c.tif"), output=str(tmp_path / "r.tif"),
         model=f"{stem}_decoder.onnx")
    with torch.no_grad():
        expected = np.rint(network.decompress(torch.from_numpy((codes - 1) / LEVELS).float()[None])[0].numpy() * 1e4)
    with rasterio.open(tmp_path / "r.tif") as restored, rasterio.open(image) as original:
        assert restored.crs == original.crs and restored.transform == original.transform
        assert restored.descriptions == original.descriptions and restored.dtypes[0] == "int16"
        np.testing.assert_allclose(restored.read(), expected, atol=1)


def test_published_sizes_and_training_checkpoints(tmp_path):
    for ratio, latent in ((4, 51), (8, 26), (16, 13), (32, 7)):
        sizes = published_sizes(ReferenceHyCoT(202, ratio).state_dict(), Path(f"hycot_cr{ratio}.pth.tar"))
        assert sizes == {"dim": 64, "depth": 5, "heads": 4, "head_dim": 16, "mlp_dim": 8, "hidden_dim": 1024,
                         "latent": latent}
        assert compression_ratio(latent, None) == ratio
    best = published_checkpoint(tmp_path / "best.pth.tar", ReferenceHyCoT(202, 8, **TINY), training_state=True)
    assert set(load_state_dict(best)) == set(ReferenceHyCoT(202, 8, **TINY).state_dict())
    assert compression_ratio(26, 8) == 8
    with pytest.raises(ImportRefused, match=r"--compression-ratio 16 gives ceil\(202 / 16\) = 13 latent values, "
                                            r"but the checkpoint has 26"):
        compression_ratio(26, 16)


def test_wrong_and_damaged_checkpoints_are_refused_and_leave_nothing(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    good = ReferenceHyCoT(202, 16, **TINY).state_dict()

    def refused(state_or_bytes, match, sha256=None):
        path = tmp_path / "hycot_cr16.pth.tar"
        if isinstance(state_or_bytes, bytes):
            path.write_bytes(state_or_bytes)
        else:
            torch.save({"state_dict": state_or_bytes}, path)
        with pytest.raises(ImportRefused, match=match):
            import_model("hycot", path, out / "hycot.onnx", argparse.Namespace(), sha256)
        assert list(out.iterdir()) == [], "a refused import must leave no file behind"

    toolbox = HyCoTTask(bands=202, compression_ratio=16).state_dict()  # a `training fit` model, not the authors'
    refused(toolbox, r"not a HyCoT state dict as Fuchs et al\. publish it .*no patch_to_embedding\.weight")
    refused(ReferenceHyCoT(103, 16, **TINY).state_dict(), r"patch_deembed\.2\.weight \(103, 32\): HySpecNet-11k's "
                                                          r"202 bands expected")  # their PaviaU variant
    refused({k: v for k, v in good.items() if not k.startswith("transformer.skipcat")},
            r"transformer\.skipcat \[\]: 1 Conv2d\(52, 52, \(1, 2\)\) expected for 3 layers")
    refused(good | {"entropy_bottleneck.quantiles": torch.zeros(13, 1, 3)},
            r"unexpected: entropy_bottleneck\.quantiles")
    refused({k: v for k, v in good.items() if k != "to_latent.0.bias"}, r"missing: encoder\.to_latent\.0\.bias")
    torch.save({"state_dict": good}, tmp_path / "whole.pth.tar")
    whole = (tmp_path / "whole.pth.tar").read_bytes()
    refused(whole[: len(whole) // 2], "not a readable PyTorch checkpoint.*download it again")
    refused(whole, "has SHA-256 .* but 0{64} was expected: the file is damaged, incomplete or a different release",
            sha256="0" * 64)

"""Importing TSViT's published PASTIS24 weights (Tarasiou et al., CVPR 2023): a checkpoint in the
authors' layout (their parameter names and sizes, random weights, ``best.pth`` as their training
loop saves it) becomes a crop-map model whose engine output on dated GeoTIFFs equals the
reference inference; wrong and damaged files are refused and leave nothing behind."""
import argparse
import datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from engine.tasks import run_task
from raster_fixtures import write_raster
from training.__main__ import main as training_main
from training.crop_maps.importers import published_config
from training.crop_maps.model import TSViT
from training.datasets.pastis_r_format import S2_BANDS
from training.importers import ImportRefused, import_model
from tsvit_reference import PASTIS24, ReferenceTSViT, randomise, reference_probabilities

# 34 dates of 2019 (PASTIS has 33-61), among them days 13, 26, 52 and 104, which their float32
# day arithmetic maps to the previous day's embedding row
DAYS = sorted({13, 26, 52, 104, *range(20, 360, 10)} - {20, 30, 100, 110})


def _date(day: int) -> str:
    return (datetime.date(2019, 1, 1) + datetime.timedelta(days=day - 1)).strftime("%Y%m%d")


def _series(count: int, height: int, width: int, seed: int) -> np.ndarray:
    """[T, 10, H, W] reflectance x 10000: smooth fields with a seasonal signal, uint16 as PASTIS."""
    rng = np.random.default_rng(seed)
    fields = np.kron(rng.uniform(500, 3500, (count, 10, height // 4 + 1, width // 4 + 1)), np.ones((4, 4)))
    noise = rng.normal(0, 150, (count, 10, height, width))
    return np.clip(fields[:, :, :height, :width] + noise, 1, 10000).round().astype("uint16")


def _run(**params) -> dict:
    return run_task("map_crops", params, lambda *_: None, lambda: False)


def test_published_checkpoint_runs_in_the_engine_like_the_reference(tmp_path, capsys):
    network = randomise(ReferenceTSViT(), seed=3)
    checkpoint = tmp_path / "best.pth"
    torch.save(network.state_dict(), checkpoint)
    model = tmp_path / "models" / "tsvit_pastis_fold1.onnx"
    training_main(["import", "--source", "tsvit-pastis", "--checkpoint", str(checkpoint), "--out", str(model)])
    assert '"max_abs_diff"' in capsys.readouterr().out
    card = model.with_suffix(".md").read_text()
    assert "CVPR 2023" in card and "Apache-2.0" in card and "time series `s2` (at most 60 dates)" in card
    assert "issue #22" in card and "--source tsvit-pastis" in card

    raw = _series(len(DAYS), 24, 24, seed=1)  # one PASTIS24 sample, one GeoTIFF per date
    paths = [write_raster(tmp_path / f"S2_{_date(day)}.tif", image, descriptions=S2_BANDS)
             for day, image in zip(DAYS, raw)]
    result = _run(s2=paths, output=str(tmp_path / "crops.tif"), probabilities=str(tmp_path / "p.tif"),
                  model=str(model))
    assert result["names"][:3] == ["background", "meadow", "soft_winter_wheat"] and len(result["names"]) == 19
    expected = reference_probabilities(network, raw.astype("float32"), DAYS)
    assert expected.max() > 0.3  # the random network says something
    with rasterio.open(tmp_path / "p.tif") as probabilities, rasterio.open(tmp_path / "crops.tif") as classes:
        np.testing.assert_allclose(probabilities.read(), expected, atol=1e-4)
        ranked = np.sort(expected, axis=0)
        decisive = ranked[-1] - ranked[-2] > 1e-3
        assert decisive.mean() > 0.95
        np.testing.assert_array_equal(classes.read(1)[decisive], expected.argmax(axis=0)[decisive])
        assert classes.colormap(1)[2][:3] == (255, 127, 14)  # PASTIS soft winter wheat

    days = list(range(3, 353, 5))  # 70 dates in one stack, more than the 60 the model takes
    scene = _series(len(days), 40, 52, seed=2)
    stack = write_raster(tmp_path / "s2_stack.tif", scene.reshape(-1, 40, 52),
                         descriptions=[f"{_date(d)} {band}" for d in days for band in S2_BANDS])
    result = _run(s2=stack, output=str(tmp_path / "scene.tif"), model=str(model))
    assert result["tiles"] > 4 and any("at most 60" in warning for warning in result["warnings"])
    with rasterio.open(tmp_path / "scene.tif") as classes:
        assert classes.shape == (40, 52) and (classes.read(1) < 19).all()


def test_published_sizes_are_read_from_the_checkpoint():
    small = published_config(ReferenceTSViT(PASTIS24 | {"dim": 64, "dim_head": 16}).state_dict(), Path("s.pth"))
    assert (small.dim, small.heads, small.head_dim, small.mlp_ratio) == (64, 4, 16, 4)  # TSViT-S
    assert (small.image_size, small.patch_size, small.temporal_depth, small.spatial_depth) == (24, 2, 4, 4)


def _assert_nothing_written(folder: Path):
    assert [p.name for p in folder.iterdir()] == [], "a refused import must leave no file behind"


def test_wrong_and_damaged_checkpoints_are_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()

    def refused(state_or_bytes, match):
        path = tmp_path / "best.pth"
        if isinstance(state_or_bytes, bytes):
            path.write_bytes(state_or_bytes)
        else:
            torch.save(state_or_bytes, path)
        with pytest.raises(ImportRefused, match=match):
            import_model("tsvit-pastis", path, out / "tsvit.onnx", argparse.Namespace())
        _assert_nothing_written(out)

    refused(TSViT(10, 19).state_dict(), r"not a TSViT state dict as Tarasiou et al\. publish it .*no temporal_token")
    refused(ReferenceTSViT(PASTIS24 | {"num_classes": 20}).state_dict(),
            r"not TSViT for PASTIS24 Sentinel-2 \(temporal_token \(1, 20, 128\): 19 PASTIS classes expected\)")
    refused(ReferenceTSViT(PASTIS24 | {"num_channels": 14}).state_dict(), "patches of the 10 Sentinel-2 bands expected")
    extra = ReferenceTSViT().state_dict() | {"temporal_pos_embedding": torch.zeros(60, 128)}
    refused(extra, r"unexpected: temporal_pos_embedding")
    torch.save(ReferenceTSViT().state_dict(), tmp_path / "whole.pth")
    refused((tmp_path / "whole.pth").read_bytes()[:5000], "not a readable PyTorch checkpoint.*download it again")

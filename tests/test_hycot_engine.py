"""Engine compress/decompress tasks, driven by PCA codecs in HyCoT's contract form (exact maths)."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import rasterio

from engine.errors import EngineError, ModelContractError
from engine.tasks import run_task
from raster_fixtures import write_raster
from training.hycot.pca_codec import fit_pca_codec

BANDS = 24
WAVELENGTHS = [f"{w:.1f} nm" for w in np.linspace(450, 2400, BANDS)]


def cube(seed=0, height=70, width=90, rank=4):
    """Low-rank int16 reflectance cube (linear mixing of `rank` spectra) with a nodata corner."""
    rng = np.random.default_rng(seed)
    spectra = rng.uniform(500, 5000, size=(rank, BANDS))
    abundances = rng.dirichlet(np.ones(rank), size=height * width)
    data = (abundances @ spectra + rng.normal(0, 2, size=(height * width, BANDS))).T
    data = data.reshape(BANDS, height, width).astype(np.int16)
    data[:, :5, :7] = -1
    return data


def codec(tmp_path, data, ratio, tag="a"):
    pixels = data.reshape(BANDS, -1).T
    encoder, decoder = fit_pca_codec(pixels[pixels[:, 0] != -1], ratio, [f"b{i:03d}" for i in range(BANDS)])
    paths = tmp_path / f"{tag}_encoder.onnx", tmp_path / f"{tag}_decoder.onnx"
    onnx.save(encoder, paths[0])
    onnx.save(decoder, paths[1])
    return str(paths[0]), str(paths[1])


def run(task, **params):
    return run_task(task, params, lambda f, m: None, lambda: False)


def test_round_trip_restores_grid_dtype_nodata_and_values(tmp_path):
    data = cube()
    image = write_raster(tmp_path / "cube.tif", data, crs="EPSG:32633", pixel=30.0, nodata=-1,
                         descriptions=WAVELENGTHS)
    encoder, decoder = codec(tmp_path, data, ratio=4)
    compressed = run("compress_hyperspectral", input=image, output=str(tmp_path / "c.tif"), model=encoder,
                     quality=True)
    assert compressed["latent_bands"] == 6 and compressed["bits_per_pixel_per_channel"] == 8.0  # 32 x 6 / 24
    assert compressed["size_ratio"] > 0.9 * 4  # 16-bit input -> 6 of 24 bands at 16 bits (+ file overhead)
    assert compressed["psnr_db"] > 60 and compressed["spectral_angle_deg"] < 0.1
    with rasterio.open(tmp_path / "c.tif") as latent, rasterio.open(image) as src:
        assert latent.count == 6 and latent.dtypes[0] == "uint16" and latent.nodata == 0
        assert latent.crs == src.crs and latent.transform == src.transform
        assert (latent.read(1)[:5, :7] == 0).all() and (latent.read(1)[5:] > 0).all()
        assert json.loads(latent.tags()["original_band_names"]) == WAVELENGTHS
    run("decompress_hyperspectral", input=str(tmp_path / "c.tif"), output=str(tmp_path / "r.tif"), model=decoder)
    with rasterio.open(tmp_path / "r.tif") as restored, rasterio.open(image) as src:
        assert restored.count == BANDS and restored.dtypes[0] == "int16" and restored.nodata == -1
        assert restored.crs == src.crs and restored.transform == src.transform
        assert list(restored.descriptions) == WAVELENGTHS
        out, original = restored.read(), src.read()
    assert (out[:, :5, :7] == -1).all()
    error = np.abs(out[:, 5:].astype(int) - original[:, 5:].astype(int))
    assert error.max() <= 20  # rank-4 data, 6 components: only noise and quantisation remain


def test_quantisation_error_is_bounded(tmp_path):
    data = cube(seed=1, rank=BANDS)
    image = write_raster(tmp_path / "cube.tif", data, crs="EPSG:32633", pixel=30.0, nodata=-1)
    encoder, decoder = codec(tmp_path, data, ratio=1)  # as many latents as bands: only quantisation is lost
    run("compress_hyperspectral", input=image, output=str(tmp_path / "c.tif"), model=encoder)
    run("decompress_hyperspectral", input=str(tmp_path / "c.tif"), output=str(tmp_path / "r.tif"), model=decoder)
    decoder_weights = onnx.numpy_helper.to_array(onnx.load(decoder).graph.initializer[0])[:, :, 0, 0]
    # each latent is off by at most half a level: 0.5 / 65534 of its range, mapped through the decoder
    bound = 10000 * np.abs(decoder_weights).sum(axis=1) * 0.5 / 65534 + 0.5 + 1e-3
    with rasterio.open(tmp_path / "r.tif") as restored:
        error = np.abs(restored.read()[:, 5:].astype(float) - data[:, 5:].astype(float))
    assert (error.max(axis=(1, 2)) <= bound).all()


def test_decompress_refuses_a_file_from_another_model(tmp_path):
    data = cube()
    image = write_raster(tmp_path / "cube.tif", data, crs="EPSG:32633", pixel=30.0, nodata=-1)
    encoder, _ = codec(tmp_path, data, ratio=4, tag="a")
    _, other_decoder = codec(tmp_path, cube(seed=5), ratio=4, tag="b")
    run("compress_hyperspectral", input=image, output=str(tmp_path / "c.tif"), model=encoder)
    with pytest.raises(ModelContractError, match="not by the partner of decoder"):
        run("decompress_hyperspectral", input=str(tmp_path / "c.tif"), output=str(tmp_path / "r.tif"),
            model=other_decoder)
    assert not (tmp_path / "r.tif").exists()
    with pytest.raises(EngineError, match="is not a HyCoT-compressed raster"):
        run("decompress_hyperspectral", input=image, output=str(tmp_path / "r.tif"), model=other_decoder)


def test_wrong_band_count_is_a_clear_error(tmp_path):
    data = cube()
    encoder, _ = codec(tmp_path, data, ratio=4)
    image = write_raster(tmp_path / "cube.tif", data[:20], crs="EPSG:32633", pixel=30.0)
    with pytest.raises(EngineError, match="has 20 band\\(s\\) but the model needs 24"):
        run("compress_hyperspectral", input=image, output=str(tmp_path / "c.tif"), model=encoder)
    with pytest.raises(EngineError, match="no shipped model; choose one of"):
        run("compress_hyperspectral", input=image, output=str(tmp_path / "c.tif"), ratio=5)


def test_shipped_model_reports_the_papers_bit_rate_from_its_contract(tmp_path):
    image = write_raster(tmp_path / "enmap.tif", np.full((202, 2, 3), 1500, np.int16), crs="EPSG:32633", pixel=30.0)
    compressed = run("compress_hyperspectral", input=image, output=str(tmp_path / "c.tif"), ratio=32)
    assert compressed["latent_bands"] == 7 and compressed["bits_per_pixel_per_channel"] == 1.1089  # 32 x 7 / 202
    with rasterio.open(tmp_path / "c.tif") as latent:
        assert latent.tags()["bits_per_pixel_per_channel"] == "1.1089" and latent.tags()["latent_bits"] == "16"


@pytest.mark.slow
def test_shipped_encoder_flags_spectra_unlike_its_training_data(tmp_path):
    """The shipped encoders record their training spectra on principal components: a new simulated
    scene passes; divided by 10, or with its spectra shifted by 8 bands (another sensor's band
    centres), it is flagged and named."""
    from training.simulation.hyperspectral import simulate_scene, write_scene_geotiff

    scene = tmp_path / "enmap_sim.tif"
    write_scene_geotiff(simulate_scene(48, 40, seed=11), scene)
    with rasterio.open(scene) as source:
        data, profile, descriptions = source.read(), source.profile, source.descriptions
    shares = {}
    for name, values in (("scene", data), ("tenth", np.maximum(data // 10, 1)), ("shifted", np.roll(data, 8, axis=0))):
        path = tmp_path / f"{name}.tif"
        with rasterio.open(path, "w", **profile) as target:
            target.write(values.astype(data.dtype))
            target.descriptions = descriptions
        result = run("compress_hyperspectral", input=str(path), output=str(tmp_path / f"{name}_c.tif"), ratio=32)
        shares[name] = (result["out_of_distribution"]["share"], any("unlike the training" in w for w in result["warnings"]))
    assert shares["scene"][0] < 0.05 and not shares["scene"][1]
    assert shares["tenth"] == (1.0, True) and shares["shifted"][0] > 0.95 and shares["shifted"][1]

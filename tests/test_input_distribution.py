"""Out-of-distribution flag (engine/input_distribution.py, training/input_statistics.py) on the
simulated data the shipped marine models are trained on (training/reproduce_shipped_models.sh:
400 training patches of 64 px, seed 1; a held-out simulation of 150 patches, seed 2), run through
the engine on real GeoTIFFs: the held-out data is flagged at or below the calibrated share; the same
pixels divided by 10, in 8 bits, or with a top-of-atmosphere path reflectance almost everywhere."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import rasterio

from engine.errors import EngineError
from engine.quality import OUT_OF_DISTRIBUTION, REASONS, VALID
from engine.tasks import run_task
from raster_fixtures import RGB_BANDS, contract, write_model, write_raster
from training.datasets.magicbathynet import MagicBathyNet
from training.marine.data import training_input_statistics
from training.simulation.shallow_water import BANDS, write_magicbathynet_layout

PATCH = 64
# Rayleigh and aerosol path reflectance a Level-1C (top-of-atmosphere) product adds over water, of
# the order Gordon & Wang give for a clear maritime atmosphere (Applied Optics 33(3), 1994): B04, B03, B02
PATH_REFLECTANCE = (0.03, 0.05, 0.08)


def run(task, **params):
    return run_task(task, params, lambda fraction, message: None, lambda: False)


@pytest.fixture(scope="module")
def training(tmp_path_factory):
    """The input statistics of the training split and a mosaic of the held-out simulation's patches."""
    folder = tmp_path_factory.mktemp("simulated")
    write_magicbathynet_layout(folder / "train", "agia_napa", 400, PATCH, seed=1)
    write_magicbathynet_layout(folder / "heldout", "agia_napa", 150, PATCH, seed=2)
    statistics = training_input_statistics(MagicBathyNet(folder / "train", ["agia_napa"], "s2", "bathymetry", "train"))
    heldout = [sample["image"].numpy() for split in ("train", "test")
               for sample in MagicBathyNet(folder / "heldout", ["agia_napa"], "s2", "bathymetry", split)]
    rows = [np.concatenate(heldout[k:k + 15], axis=2) for k in range(0, 150, 15)]
    return statistics, np.concatenate(rows, axis=1).astype(np.uint16)  # [3, 640, 960]


def water_model(path, statistics) -> str:
    """A model over the simulator's bands that says 10 m everywhere, recording the training inputs."""
    order = {band.name: band for band in RGB_BANDS}
    model_contract = replace(contract(), bands=tuple(order[name] for name in BANDS), input_statistics=statistics,
                             input_units="surface reflectance x 10000", test_time_augmentations="dihedral")
    return write_model(path, model_contract, np.zeros((1, 3)), [10.0])


def mosaic_file(path, image) -> str:
    return write_raster(path, image, descriptions=BANDS)


def test_the_held_out_split_is_flagged_at_or_below_the_calibrated_share(training, tmp_path):
    statistics, heldout = training
    result = run("estimate_bathymetry", input=mosaic_file(tmp_path / "heldout.tif", heldout),
                 output=str(tmp_path / "d.tif"), model=water_model(tmp_path / "m.onnx", statistics),
                 quality_layer=str(tmp_path / "q.tif"))
    flagged = result["out_of_distribution"]
    assert 0 < flagged["share"] <= flagged["calibrated_share"] == 0.005
    assert result["quality"]["shares"]["out of distribution"] <= 0.005
    assert not any("unlike the training inputs" in warning for warning in result["warnings"])


@pytest.mark.parametrize("name, rescale", [
    ("divided by 10", lambda image: np.rint(image / 10.0)),
    ("8-bit", lambda image: np.clip(np.rint(image * 255 / 10000.0), 1, 255)),
    ("top of atmosphere", lambda image: image + np.reshape(PATH_REFLECTANCE, (3, 1, 1)) * 10000),
])
def test_the_same_scene_rescaled_is_flagged_almost_everywhere(training, tmp_path, name, rescale):
    statistics, heldout = training
    result = run("estimate_bathymetry", input=mosaic_file(tmp_path / "scene.tif", rescale(heldout).astype(np.uint16)),
                 output=str(tmp_path / "d.tif"), model=water_model(tmp_path / "m.onnx", statistics),
                 quality_layer=str(tmp_path / "q.tif"))
    assert result["out_of_distribution"]["share"] >= 0.97, name
    (warning,) = [w for w in result["warnings"] if "unlike the training inputs" in w]
    assert "Level-1C" in warning and "8-bit" in warning
    with rasterio.open(tmp_path / "q.tif") as quality, rasterio.open(tmp_path / "d.tif") as depth:
        reasons, values, nodata = quality.read(1), depth.read(1), depth.nodata
        assert quality.tags()[f"reason_{OUT_OF_DISTRIBUTION}"] == REASONS[OUT_OF_DISTRIBUTION]
    assert np.mean(reasons == OUT_OF_DISTRIBUTION) >= 0.9  # the rest: other reasons (deep water, cloud) first
    assert np.all((values == nodata) == (reasons != VALID))


def test_other_raster_tasks_give_the_distance_in_the_uncertainty_layer(training, tmp_path):
    statistics, heldout = training
    window = heldout[:, :128, :192]
    model = water_model(tmp_path / "m.onnx", statistics)
    for name, image in (("same", window), ("divided", np.rint(window / 10.0).astype(np.uint16))):
        result = run("run_onnx", input=mosaic_file(tmp_path / f"{name}.tif", image), output=str(tmp_path / "o.tif"),
                     model=model, uncertainty=str(tmp_path / f"{name}_u.tif"))
        with rasterio.open(tmp_path / f"{name}_u.tif") as layer:
            distance = layer.read(2)
            assert layer.descriptions[1] == "input distance (1 = out-of-distribution threshold)"
        assert result["out_of_distribution"]["share"] == pytest.approx(float(np.mean(distance > 1)), abs=1e-4)
        if name == "same":
            assert np.mean(distance > 1) < 0.02 and np.median(distance) < 0.5
        else:
            assert np.all(distance > 1)


def test_statistics_that_do_not_fit_the_model_are_refused(training, tmp_path):
    statistics, _ = training
    singular = {**statistics, "components": [{**statistics["components"][0], "covariance": [[1, 0, 0]] * 3}]}
    with pytest.raises(EngineError, match="components \\[0\\] have a covariance that is not positive definite"):
        water_model(tmp_path / "singular.onnx", singular)
    with pytest.raises(EngineError, match="distance_threshold is None; give the calibrated distance"):
        water_model(tmp_path / "uncalibrated.onnx", {**statistics, "distance_threshold": None})
    with pytest.raises(EngineError, match="input_statistics.mean must be a list of finite numbers for the model's 3"):
        water_model(tmp_path / "short.onnx", {**statistics, "mean": [1.0, 2.0]})


def test_many_collinear_bands_are_judged_on_principal_components_and_their_residual():
    """Hundreds of nearly collinear bands (hyperspectral): the components live on 6 principal-component
    scores and the residual norm; a held-out patch passes, the same patch divided by 10 or with its
    spectra shifted by a few bands (another sensor's band centres) does not."""
    from engine.input_distribution import InputDistribution, input_statistics_problems
    from training.input_statistics import input_statistics

    rng = np.random.default_rng(0)
    bands = 120
    endmembers = 1000 + 3000 * np.abs(np.cumsum(rng.normal(0, 0.1, size=(4, bands)), axis=1))  # smooth spectra

    def patch(pixels=2000):
        abundances = rng.dirichlet(np.ones(4), size=pixels)
        return (abundances @ endmembers).T * rng.uniform(0.8, 1.2, size=pixels) + rng.normal(0, 5, (bands, pixels))

    statistics = input_statistics([patch() for _ in range(8)], projection_axes=6)
    assert "covariance" not in statistics and len(statistics["projection"]["axes"]) == 6
    assert statistics["projection"]["explained_variance"] > 0.99
    assert len(statistics["components"][0]["mean"]) == 7 and input_statistics_problems(statistics, bands) == []
    assert "projection must have a 'mean' of 119 numbers" in input_statistics_problems(statistics, bands - 1)[0]
    distribution = InputDistribution(statistics)
    held_out = patch()
    assert np.mean(distribution.distances(held_out) > distribution.threshold) < 0.02
    assert np.mean(distribution.distances(held_out / 10) > distribution.threshold) > 0.99
    assert np.mean(distribution.distances(np.roll(held_out, 5, axis=0)) > distribution.threshold) > 0.95

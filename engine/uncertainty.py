"""Uncertainty by test-time augmentation: every tile is also seen flipped and rotated by 90 degrees,
in the same model batches; each output is turned back onto the tile and the outputs are averaged.

Ayhan & Berens, "Test-time data augmentation for estimation of heteroscedastic aleatoric uncertainty
in deep neural networks", MIDL 2018; Wang et al., "Aleatoric uncertainty estimation with test-time
augmentation for medical image segmentation with convolutional neural networks", Neurocomputing 338,
2019. Imagery seen from above has no preferred orientation, so a model trained with these symmetries
(the contract's ``test_time_augmentations``: "dihedral", the 8 symmetries of the square, or "flips",
the 4 that flip rows and columns) should give each pixel the same value in every view; where it does
not, its answer is uncertain.

With augmentation, the task's outputs are the MEAN over the views. The uncertainty layer holds:

- regression (and embedding) outputs: per output channel, the standard deviation over the views in
  the output's units, blended across tiles like the outputs;
- class outputs: the entropy of the mean class probabilities over the views, divided by its maximum
  (0: certain, 1: all classes alike; multi-label sigmoid outputs: the mean binary entropy), and the
  largest mean class probability;
- when the contract records its training inputs (engine/input_distribution.py): the input's distance
  to them over the calibrated threshold (above 1: out of distribution).

A model whose contract allows no augmentation still gives classes their entropy and largest
probability (of its plain output); its regression outputs have no spread to give.
"""
from __future__ import annotations

import numpy as np

from engine.contract import ModelContract
from engine.errors import ModelContractError
from engine.raster_io import OutputSpec
from engine.runtime import Model

# (quarter turns, flip of the columns) applied to a tile's last two axes: flip first, then rotate
VIEWS = {
    "none": ((0, False),),
    "flips": ((0, False), (0, True), (2, True), (2, False)),  # identity, columns, rows, both (180 degrees)
    "dihedral": tuple((turns, flip) for flip in (False, True) for turns in range(4)),
}
UNCERTAINTY_NODATA = -1.0


def seen(array: np.ndarray, turns: int, flip: bool) -> np.ndarray:
    """A view of tiles ``[..., height, width]``."""
    return np.rot90(array[..., ::-1] if flip else array, turns, axes=(-2, -1))


def turned_back(array: np.ndarray, turns: int, flip: bool) -> np.ndarray:
    """The inverse of ``seen``: an output of a view back on the tile."""
    array = np.rot90(array, -turns, axes=(-2, -1))
    return array[..., ::-1] if flip else array


class TestTimeAugmentation:
    """Runs batches of tiles in every view the contract allows and blends nothing: returns the mean
    output and, for regression and embeddings, the spread per channel (appended as channels)."""

    __test__ = False  # not a pytest test class

    def __init__(self, contract: ModelContract):
        self.views = VIEWS[contract.test_time_augmentations]
        self.batch_size = contract.batch_size
        self.spread_channels = 0 if contract.outputs.kind == "classes" else contract.outputs.channels

    @property
    def tiles_per_batch(self) -> int:
        """Tiles read per batch: their views fill the model's batch of ``batch_size`` as plain tiles would."""
        return max(1, self.batch_size // len(self.views))

    def run(self, model: Model, tiles: np.ndarray | dict[str, np.ndarray]) -> np.ndarray:
        """``tiles``: a batch [N, bands, T, T] or a multi-input model's named inputs (spatial ones end
        in [..., T, T] and have 4 or more dimensions; others, like dates, are repeated per view).
        Returns [N, channels + spread_channels, T, T]."""
        count = len(next(iter(tiles.values())) if isinstance(tiles, dict) else tiles)
        augmented = _each(tiles, lambda value: np.concatenate(
            [seen(value, *view) if value.ndim >= 4 else value for view in self.views]))
        outputs = np.concatenate([model.run(_each(augmented, lambda value: value[start:start + self.batch_size]))
                                  for start in range(0, count * len(self.views), self.batch_size)])
        views = np.stack([turned_back(outputs[k * count:(k + 1) * count], *view)
                          for k, view in enumerate(self.views)])
        # in float64: the mean of equal values is exactly that value, and their spread exactly 0
        mean = views.mean(axis=0, dtype=np.float64)
        if not self.spread_channels:
            return mean.astype(np.float32)
        spread = np.sqrt(((views - mean) ** 2).mean(axis=0))
        return np.concatenate([mean, spread], axis=1).astype(np.float32)


def _each(tiles: np.ndarray | dict[str, np.ndarray], function) -> np.ndarray | dict[str, np.ndarray]:
    """``function`` applied to a batch, or to each named input of a multi-input model."""
    return {name: function(value) for name, value in tiles.items()} if isinstance(tiles, dict) else function(tiles)


def check_uncertainty(contract: ModelContract) -> None:
    """Refuse an uncertainty layer the model cannot give: a regression spread without augmentation."""
    if contract.outputs.kind != "classes" and contract.test_time_augmentations == "none":
        raise ModelContractError(
            f"model {contract.name}'s contract allows no test-time augmentation (test_time_augmentations "
            f"'none'), so its {contract.outputs.kind} output has no spread to give as uncertainty. Leave the "
            "uncertainty layer out, or, if the model was trained with flips and 90-degree rotations (or is fully "
            "convolutional over imagery without a preferred orientation), re-export it (`python -m training "
            "export` records it for the toolbox's models) or set it with `python -m engine contract set "
            "--test-time-augmentations dihedral`")


class UncertaintyLayer:
    """The uncertainty raster of one run (see the module docstring for its bands)."""

    def __init__(self, contract: ModelContract, path: str, with_distance: bool):
        self.contract = contract
        self.with_distance = with_distance
        outputs = contract.outputs
        if outputs.kind == "classes":
            names = ("entropy (0-1)", "largest class probability")
        else:
            names = tuple(f"spread of {name}" + (f" ({outputs.units})" if outputs.units else "")
                          for name in outputs.names)
        names += ("input distance (1 = out-of-distribution threshold)",) * with_distance
        self.spec = OutputSpec(path, len(names), "float32", UNCERTAINTY_NODATA, band_names=names, tags={
            "model": contract.name, "augmentations": str(len(VIEWS[contract.test_time_augmentations])),
            "test_time_augmentations": contract.test_time_augmentations})

    def bands(self, mean: np.ndarray, spread: np.ndarray | None, valid: np.ndarray,
              relative_distance: np.ndarray | None) -> np.ndarray:
        """``mean`` [channels, h, w] blended (mean) model output, ``spread`` its blended spread
        (regression), ``relative_distance`` [h, w] -> the layer's bands [bands, h, w]."""
        if self.contract.outputs.kind == "classes":
            layers = [*class_uncertainty(mean, self.contract.outputs.activation)]
        else:
            layers = list(spread * abs(self.contract.outputs.scale))
        if self.with_distance:
            layers.append(relative_distance)
        bands = np.stack(layers).astype(np.float32)
        bands[:, ~valid] = UNCERTAINTY_NODATA
        return bands


def class_uncertainty(probabilities: np.ndarray, activation: str) -> tuple[np.ndarray, np.ndarray]:
    """Normalised entropy and largest probability of class probabilities [classes, h, w]."""
    p = np.clip(probabilities, 1e-12, 1.0)
    if activation == "sigmoid":  # independent labels: the mean binary entropy
        q = np.clip(1.0 - probabilities, 1e-12, 1.0)
        entropy = -(p * np.log(p) + q * np.log(q)).mean(axis=0) / np.log(2.0)
    else:
        entropy = -(p * np.log(p)).sum(axis=0) / np.log(len(p)) if len(p) > 1 else np.zeros(p.shape[1:])
    return np.clip(entropy, 0.0, 1.0), probabilities.max(axis=0)

"""CutMix for multi-label scenes, with and without label propagation.

CutMix (Yun et al., "CutMix: Regularization Strategy to Train Strong Classifiers with Localizable
Features", ICCV 2019) pastes a box of image B into image A; the box area follows
lambda ~ Beta(alpha, alpha) and the pasted fraction is 1 - lambda.

- ``"cutmix"``: Yun et al.'s label mixing by area ratio, label = (1 - r) * label_A + r * label_B
  with r the fraction of pixels taken from B (soft targets for the BCE loss). For multi-label
  scenes this is wrong wherever the box erases a class of A or misses the classes of B.
- ``"cutmix-lp"``: CutMix with label propagation for multi-label remote-sensing scenes
  (shared/papers.md section 3): the pixel-level class maps (reBEN's reference maps) are mixed with
  the same box and the label is recomputed from the mixed map: a class is present iff it covers at
  least one pixel of it. Pixels outside the nomenclature (``NO_CLASS``) give no label.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from training.datasets.ben_labels import NO_CLASS, NUM_CLASSES

CUTMIX_MODES = ("cutmix", "cutmix-lp")
CUTMIX_ALPHA = 1.0  # Beta(1, 1): uniform box area, as in Yun et al.
CUTMIX_PROBABILITY = 0.5  # share of training batches that are mixed


@dataclass(frozen=True)
class Box:
    top: int
    left: int
    height: int
    width: int

    def fraction_of(self, height: int, width: int) -> float:
        return self.height * self.width / (height * width)


def sample_box(height: int, width: int, alpha: float = CUTMIX_ALPHA) -> Box:
    """Yun et al.'s box: sides scaled by sqrt(1 - lambda), centre uniform, clipped to the image."""
    keep = float(torch.distributions.Beta(alpha, alpha).sample())
    side = (1 - keep) ** 0.5
    centre_row, centre_col = int(torch.randint(height, ())), int(torch.randint(width, ()))
    half_height, half_width = int(height * side) // 2, int(width * side) // 2
    top, bottom = max(centre_row - half_height, 0), min(centre_row + half_height, height)
    left, right = max(centre_col - half_width, 0), min(centre_col + half_width, width)
    return Box(top, left, bottom - top, right - left)


def labels_from_mask(mask: Tensor, num_classes: int = NUM_CLASSES) -> Tensor:
    """Multi-hot float labels [N, classes] of the classes covering pixels of masks [N, H, W]."""
    index = torch.where(mask == NO_CLASS, num_classes, mask).flatten(1)
    counts = torch.zeros(len(mask), num_classes + 1, device=mask.device)
    counts.scatter_add_(1, index, torch.ones_like(index, dtype=counts.dtype))
    return (counts[:, :num_classes] > 0).float()


def mix(batch: dict[str, Tensor], partner: Tensor, box: Box, mode: str) -> dict[str, Tensor]:
    """Paste ``box`` of ``batch[partner[i]]`` into sample i; image, mask and label follow ``mode``."""
    if mode not in CUTMIX_MODES:
        raise ValueError(f"mode must be one of {CUTMIX_MODES}, got {mode!r}")
    rows = slice(box.top, box.top + box.height)
    cols = slice(box.left, box.left + box.width)
    image, mask = batch["image"].clone(), batch["mask"].clone()
    image[..., rows, cols] = batch["image"][partner][..., rows, cols]
    mask[..., rows, cols] = batch["mask"][partner][..., rows, cols]
    if mode == "cutmix-lp":
        label = labels_from_mask(mask, batch["label"].shape[1])
    else:
        pasted = box.fraction_of(*image.shape[-2:])
        label = (1 - pasted) * batch["label"] + pasted * batch["label"][partner]
    return batch | {"image": image, "mask": mask, "label": label}


def cutmix(batch: dict[str, Tensor], mode: str, alpha: float = CUTMIX_ALPHA) -> dict[str, Tensor]:
    """One random box and a random partner per sample (a permutation of the batch)."""
    box = sample_box(*batch["image"].shape[-2:], alpha)
    return mix(batch, torch.randperm(len(batch["image"]), device=batch["image"].device), box, mode)

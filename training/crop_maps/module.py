"""Crop-type mapping from Sentinel-2 (+ Sentinel-1) time series with (multi-modal) TSViT.

Tarasiou et al., "ViTs for SITS", CVPR 2023 (TSViT); the multi-modal fusions of the IGARSS 2024
multi-modal multi-temporal TSViT paper (``training.crop_maps.model``). Per-pixel cross-entropy
over the classes the model predicts; labels outside them (PASTIS void, 19) are ignored, as in the
PASTIS protocol. AdamW with a linear warm-up and a cosine decay. Metrics as in the papers: overall
accuracy, mean per-class accuracy and mean IoU, from the confusion matrix over the evaluated split
(classes absent from both reference and prediction do not enter the means).

Batches hold raw values per modality (``training.datasets.pastis_r``); ``forward`` standardises them
with the training statistics and zeroes invalid pixels, exactly what the engine does before the
exported graph, which starts after that step and ends with a softmax over classes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from lightning import LightningModule
from torch import Tensor, nn
from torchmetrics.classification import MulticlassConfusionMatrix

from engine.contract import Outputs
from training.crop_maps.model import TSViTConfig, build_crop_model
from training.schedule import adamw_with_warmup_cosine
from training.task_io import class_outputs

IGNORE_INDEX = 255


def segmentation_scores(confusion: Tensor) -> dict[str, Tensor]:
    """Overall accuracy, mean class accuracy (classes present in the reference), mean IoU (classes
    present in reference or prediction) and IoU per class (NaN where absent) from [K, K] counts
    (rows: reference, columns: prediction)."""
    confusion = confusion.double()
    correct = confusion.diagonal()
    reference, predicted = confusion.sum(dim=1), confusion.sum(dim=0)
    union = reference + predicted - correct
    accuracy = torch.where(reference > 0, correct / reference.clamp_min(1), torch.nan)
    iou = torch.where(union > 0, correct / union.clamp_min(1), torch.nan)
    return {
        "overall_accuracy": correct.sum() / confusion.sum().clamp_min(1),
        "mean_accuracy": accuracy.nanmean(),
        "mean_iou": iou.nanmean(),
        "iou_per_class": iou,
    }


class CropMappingTask(LightningModule):
    """Per-pixel crop classes from one or more satellite image time series."""

    def __init__(
        self,
        modalities: list[str],
        band_names: dict[str, list[str]],
        band_mean: dict[str, list[float]],
        band_std: dict[str, list[float]],
        class_codes: list[int],
        class_names: list[str],
        class_colours: list[str],
        fusion: str | None = None,
        model: dict | None = None,
        max_dates: dict[str, int] | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        warmup_steps: int = 0,
        total_steps: int = 1,
    ) -> None:
        """``class_codes``: the dataset label of each output class (PASTIS codes), in output order;
        ``model``: ``TSViTConfig`` fields; ``max_dates``: most dates per modality in training."""
        super().__init__()
        self.save_hyperparameters()
        self.config = TSViTConfig(**(model or {}))
        channels = [len(band_names[m]) for m in modalities]
        self.network = build_crop_model(channels, len(class_codes), fusion, self.config)
        for modality in modalities:
            self.register_buffer(f"{modality}_mean", torch.tensor(band_mean[modality]).view(1, 1, -1, 1, 1), persistent=False)
            self.register_buffer(f"{modality}_std", torch.tensor(band_std[modality]).view(1, 1, -1, 1, 1), persistent=False)
        lookup = torch.full((256,), IGNORE_INDEX, dtype=torch.long)
        lookup[torch.tensor(class_codes)] = torch.arange(len(class_codes))
        self.register_buffer("label_to_class", lookup, persistent=False)
        self.validation_confusion = MulticlassConfusionMatrix(len(class_codes), ignore_index=IGNORE_INDEX)
        self.test_confusion = MulticlassConfusionMatrix(len(class_codes), ignore_index=IGNORE_INDEX)

    @property
    def architecture(self) -> str:
        fusion = self.hparams.fusion or "single modality"
        return f"TSViT ({fusion}), {sum(p.numel() for p in self.network.parameters())} parameters"

    def model_inputs(self, batch: dict[str, Tensor]) -> list[Tensor]:
        """(values, day_of_year, mask) per modality as the exported graph takes them: values
        standardised, invalid pixels 0."""
        inputs = []
        for modality in self.hparams.modalities:
            mask = batch[f"{modality}_mask"]
            mean, std = getattr(self, f"{modality}_mean"), getattr(self, f"{modality}_std")
            values = (batch[modality] - mean) / std * mask[:, :, None]
            inputs += [values, batch[f"{modality}_doy"], mask]
        return inputs

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """Class logits [N, K, H, W]."""
        return self.network(*self.model_inputs(batch))

    def targets(self, batch: dict[str, Tensor]) -> Tensor:
        """Dataset labels -> output class indices, ``IGNORE_INDEX`` for labels the model lacks."""
        return self.label_to_class[batch["label"].clamp(0, 255)]

    def training_step(self, batch: dict[str, Tensor], batch_index: int) -> Tensor:
        loss = F.cross_entropy(self(batch), self.targets(batch), ignore_index=IGNORE_INDEX)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch["label"]))
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_index: int) -> None:
        self.validation_confusion.update(self(batch).argmax(dim=1), self.targets(batch))

    def on_validation_epoch_end(self) -> None:
        self.log_dict({f"val_{k}": v for k, v in self._scores(self.validation_confusion).items()})

    def test_step(self, batch: dict[str, Tensor], batch_index: int) -> None:
        self.test_confusion.update(self(batch).argmax(dim=1), self.targets(batch))

    def on_test_epoch_end(self) -> None:
        scores = segmentation_scores(self.test_confusion.compute())
        self.test_confusion.reset()
        per_class = {f"iou_{name}": iou for name, iou in zip(self.hparams.class_names, scores.pop("iou_per_class"))}
        self.log_dict({name: value.float() for name, value in (scores | per_class).items()})

    def _scores(self, confusion: MulticlassConfusionMatrix) -> dict[str, Tensor]:
        scores = segmentation_scores(confusion.compute())
        confusion.reset()
        return {name: value.float() for name, value in scores.items() if name != "iou_per_class"}

    def configure_optimizers(self) -> dict:
        return adamw_with_warmup_cosine(self)

    def export_graph(self) -> nn.Module:
        """(values, day_of_year, mask) per modality -> softmax class probabilities [N, K, H, W]."""
        return ClassProbabilities(self.network)

    def contract_outputs(self) -> Outputs:
        return class_outputs(
            self.hparams, "per-pixel crop class probabilities (softmax over the classes, PASTIS nomenclature)"
        )


class ClassProbabilities(nn.Module):
    """Softmax over the classes of a crop model's logits."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, *series: Tensor) -> Tensor:
        return self.network(*series).softmax(dim=1)


MODULES = {"crop": CropMappingTask}

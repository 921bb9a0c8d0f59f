"""The model families of ``python -m training``, and how a task name finds its family.

Every family is a package ``training/<package>/`` with the same files in the same roles:

- ``data.py``: a LightningDataModule over the family's torchgeo-style dataset (``training/datasets/``);
- ``model.py``: the networks;
- ``module.py``: the LightningModules, and ``MODULES`` mapping each task name to its module class;
- ``cli.py``: the family's part of the command line, the same functions in every family:
  ``add_data_arguments`` (flags choosing the data, for fit and evaluate), ``add_fit_arguments``
  (model and recipe flags), ``add_import_arguments`` (flags of the published checkpoints it imports),
  ``add_commands`` (the family's own commands, e.g. its simulators),
  ``run_fit``, ``run_evaluate`` (returns the metrics) and ``run_export``; families whose contracts
  record training statistics after the fact also have ``record_statistics``;
- ``fit.py`` and ``evaluate.py``: the fit of a ``FitRun`` (training/trainer.py) and the metrics of a
  checkpoint on a split;
- ``export.py``: the family's ONNX export, built on ``training/onnx_export.py``;
- ``importers.py``: the published checkpoints it imports (``training/importers.py``).

No torch import here, so that the command line starts fast.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType


@dataclass(frozen=True)
class Family:
    package: str
    tasks: tuple[str, ...]
    summary: str
    dataset: str
    reproduce: str  # the script that retrains the family's shipped models
    fp16_variant: bool = False  # export --fp16 offered
    records_statistics: bool = False  # record-statistics offered

    @property
    def name(self) -> str:
        return self.package.replace("_", "-")

    def cli(self) -> ModuleType:
        return importlib.import_module(f"training.{self.package}.cli")

    def module_class(self, task: str) -> type:
        return importlib.import_module(f"training.{self.package}.module").MODULES[task]


FAMILIES = (
    Family("marine", ("bathymetry", "seabed"),
           "MagicBathyNet: bathymetry (light U-Net regression) and seabed classes (U-Net segmentation)",
           "MagicBathyNet (Sentinel-2, SPOT-6, aerial patches with depth and seabed labels)",
           "training/reproduce_shipped_models.sh", fp16_variant=True),
    Family("hycot", ("hycot",),
           "HyCoT: hyperspectral compression transformer (encoder and decoder)",
           "HySpecNet-11k (EnMAP, 202 bands)", "training/reproduce_hycot_models.sh", records_statistics=True),
    Family("scene_labels", ("scene-labels",),
           "reBEN scene multi-labels (19 classes, S1+S2), CutMix label propagation, federated FedAvg",
           "BigEarthNet v2.0 / reBEN, or its `prepare` store", "training/reproduce_scene_labels_model.sh",
           records_statistics=True),
    Family("crop_maps", ("crop",),
           "crop maps from Sentinel-1/2 time series: TSViT with early, cross-attention or class-token fusion",
           "PASTIS-R (S2 and S1 series, semantic labels)", "training/reproduce_crop_model.sh",
           records_statistics=True),
    Family("text_search", ("locked-text", "clip-finetune", "align-modality", "bitemporal"),
           "text search: image and text encoders in one space (locked text, CLIP fine-tuning, modality "
           "alignment, bitemporal change)",
           "GAIA-like captioned tiles, LEVIR-CC-like change captions", "training/reproduce_search_models.sh"),
)
TASK_NAMES = tuple(task for family in FAMILIES for task in family.tasks)


def family_of(task: str) -> Family:
    for family in FAMILIES:
        if task in family.tasks:
            return family
    raise ValueError(f"no family trains task {task!r}; tasks: {', '.join(TASK_NAMES)}")


def checkpoint_task(path: Path) -> str:
    """The task a checkpoint written by ``python -m training fit`` was trained for (its weights are mapped,
    not read: the family reads them next)."""
    from training.checkpoint import read_checkpoint

    return read_checkpoint(path, mmap=True)["task"]


def listing() -> str:
    """What ``python -m training`` prints with no command: every family, its tasks and data."""
    lines = ["python -m training COMMAND [--task TASK] ...  (fit, evaluate, export, import, record-statistics, "
             "and each family's own commands; COMMAND --help for its flags)", "", "Families:"]
    for family in FAMILIES:
        lines += [f"  {family.name:<13} tasks: {', '.join(family.tasks)}",
                  f"  {'':<13} {family.summary}",
                  f"  {'':<13} data: {family.dataset}; shipped models: {family.reproduce}"]
    return "\n".join(lines)

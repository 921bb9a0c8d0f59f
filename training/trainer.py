"""The Lightning trainers every task uses: the settings every fit shares (``FitRun``), one quiet set-up
for fitting (metrics to ``<out>/metrics.csv``; ``fit_and_save`` writes the safe checkpoint, from the rank-0
process only) spread over the devices and machines ``training.scale_out`` asks for, the provenance every
fit records, and one set-up for testing whose metrics do not depend on how many processes share the data."""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning
import torch
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from torch.utils.data import DataLoader, Dataset

from training.checkpoint import save_fit_checkpoint
from training.scale_out import SINGLE_DEVICE, ScaleOut

CHECKPOINT_NAME = "checkpoint.pt"  # what a fit writes in its output folder


@dataclass(frozen=True)
class FitRun:
    """What every family's fit takes besides its own options: the training ``data`` (the family's
    dataset root) and the ``out`` folder for the checkpoint and logs; how long to train (``max_steps``
    or ``epochs``, at least one); the ``batch_size`` and learning rate ``lr`` (None: the family's
    default); the ``seed``; Lightning's ``accelerator``; ``num_workers`` loader processes (for the
    families whose data modules read with workers: scene labels, crop maps); the ``command`` line the
    checkpoint records; and how the fit spreads over devices and machines (``scale_out``)."""

    data: Path
    out: Path
    max_steps: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    seed: int = 0
    accelerator: str = "auto"
    num_workers: int = 0
    command: str = ""
    scale_out: ScaleOut = SINGLE_DEVICE

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> FitRun:
        """From the common flags of ``python -m training fit`` and ``args.command_line``."""
        return cls(args.data, args.out, args.max_steps, args.epochs, args.batch_size, args.lr, args.seed,
                   args.accelerator, args.num_workers, args.command_line, ScaleOut.from_arguments(args))


def fit_trainer(run: FitRun, max_steps: int = -1, max_epochs: int = -1, **options) -> lightning.Trainer:
    """The trainer of ``run`` (its accelerator and scale-out, metrics under its ``out``) for at most
    ``max_steps`` and ``max_epochs`` (-1: no limit); ``options``: more Lightning trainer options.
    Refuses FSDP without CUDA. More than one CUDA process synchronises BatchNorm statistics, so that a
    batch split over the processes normalises as one batch would (torch's SyncBatchNorm runs on CUDA
    only: CPU processes normalise their own share)."""
    accelerator, scale_out = run.accelerator, run.scale_out
    on_cuda = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if scale_out.strategy == "fsdp" and not on_cuda:
        raise ValueError("--distributed-strategy fsdp shards the model over GPUs, and Lightning runs it on CUDA only; "
                         "on CPUs use --distributed-strategy ddp")
    return lightning.Trainer(
        accelerator=accelerator, max_steps=max_steps, max_epochs=max_epochs,
        accumulate_grad_batches=scale_out.accumulate_grad_batches,
        logger=CSVLogger(run.out, name="", version=""), log_every_n_steps=10, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, sync_batchnorm=on_cuda and scale_out.processes > 1,
        **scale_out.trainer_options(), **options,
    )


def start_fit(run: FitRun) -> None:
    """What every fit does first: refuses a run with neither ``max_steps`` nor ``epochs``, seeds torch,
    numpy and Python (loader workers too) with the run's seed and makes its ``out`` folder."""
    if not run.max_steps and not run.epochs:
        raise ValueError("give max_steps or epochs")
    lightning.seed_everything(run.seed, workers=True)
    Path(run.out).mkdir(parents=True, exist_ok=True)


def is_rank_zero() -> bool:
    """True in the process that writes checkpoints and prints results (the only one without DDP)."""
    return rank_zero_only.rank == 0


def fit_provenance(trainer: lightning.Trainer, run: FitRun, started: float) -> dict:
    """What every checkpoint records of its fit: the run's command and seed, the steps, epochs,
    processes and seconds since ``started`` (a ``time.monotonic()`` reading)."""
    return {"command": run.command, "seed": run.seed, "steps": trainer.global_step, "epochs": trainer.current_epoch,
            "processes": trainer.world_size, "seconds": round(time.monotonic() - started, 1)}


def fit_and_save(trainer: lightning.Trainer, module: lightning.LightningModule, data: FamilyData, run: FitRun,
                 task: str, describe: Callable[[], dict], details: Callable[[], dict] | None = None) -> Path:
    """Fits ``module`` on ``data`` and writes ``CHECKPOINT_NAME`` in the run's ``out`` folder from the
    rank-0 process (``save_fit_checkpoint``) with the data record ``describe()`` returns after the fit and
    the fit's provenance, with what ``details()`` returns after the fit (default: the last training
    metrics, ``final_train_metrics``); returns the checkpoint's path."""
    started = time.monotonic()
    trainer.fit(module, datamodule=data)
    provenance = fit_provenance(trainer, run, started) | (details() if details else {
        "final_train_metrics": {name: float(value) for name, value in trainer.callback_metrics.items()}})
    return save_fit_checkpoint(trainer, Path(run.out) / CHECKPOINT_NAME, task, module, describe(), provenance)


class FamilyData(lightning.LightningDataModule):
    """The base of every family's data module (``training/<family>/data.py``): the subclass makes
    ``train_set`` (fit) and ``test_set`` (evaluate). The training loader shuffles and drops a last
    partial batch (Lightning shards it between DDP processes); the test loader splits ``test_set``
    between the processes without repeating a sample (Lightning's default sampler pads the last shard
    with repeats), so the synced metrics of any number of processes equal those of one. ``collate``
    batches samples (default: torch's); training reads with ``num_workers`` loader processes, kept
    between epochs."""

    def __init__(self, batch_size: int, collate: Callable | None = None, num_workers: int = 0) -> None:
        super().__init__()
        self.batch_size, self.collate, self.num_workers = batch_size, collate, num_workers
        self.train_set: Dataset | None = None
        self.test_set: Dataset | None = None

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True,
                          drop_last=len(self.train_set) > self.batch_size, collate_fn=self.collate,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def test_dataloader(self) -> DataLoader:
        if len(self.test_set) < self.trainer.world_size:
            raise ValueError(f"{len(self.test_set)} test samples cannot be shared by {self.trainer.world_size} processes")
        shard = UnrepeatedDistributedSampler(
            self.test_set, num_replicas=self.trainer.world_size, rank=self.trainer.global_rank, shuffle=False
        )
        return DataLoader(self.test_set, batch_size=self.batch_size, sampler=shard, collate_fn=self.collate)


def test_metrics(module: lightning.LightningModule, data: FamilyData, accelerator: str,
                 scale_out: ScaleOut = SINGLE_DEVICE) -> dict:
    """The module's test metrics over ``data.test_set`` (torchmetrics, synced across processes)."""
    trainer = lightning.Trainer(accelerator=accelerator, logger=False, enable_progress_bar=False,
                                enable_model_summary=False, use_distributed_sampler=False,
                                **scale_out.trainer_options())
    return trainer.test(module, data, verbose=False)[0]


def evaluation_record(task: str, checkpoint: Path, data: Path, split: str, **details) -> dict:
    """What an ``evaluate`` result starts with: the task, checkpoint, data and split, then ``details``."""
    return {"task": task, "checkpoint": str(checkpoint), "data": str(data), "split": split, **details}

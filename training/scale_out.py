"""How a fit or an evaluation spreads over devices and machines: Lightning's data-parallel options and
the flags that set them, the same in every family's CLI. No torch or Lightning import, so that the CLI
starts fast."""
from __future__ import annotations

import argparse
from dataclasses import dataclass

STRATEGIES = ("auto", "ddp", "fsdp")
PRECISIONS = ("32-true", "16-mixed", "bf16-mixed")


@dataclass(frozen=True)
class ScaleOut:
    """Lightning's options for data-parallel training: ``devices`` per machine times ``num_nodes``
    machines run one process each (launched by Lightning, ``torchrun`` or SLURM's ``srun``), every
    process reads its own shard of the data and DDP averages the gradients; ``fsdp`` also shards the
    weights, gradients and optimiser state between the GPUs (Zhao et al., PyTorch FSDP, VLDB 2023): it helps
    where one GPU cannot hold a model's training state (e.g. fine-tuning CLIP ViT-L/14), and Lightning runs it
    on CUDA only; ``precision`` 16-mixed (CUDA) or bf16-mixed; ``accumulate_grad_batches`` batches per
    optimiser step."""

    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    accumulate_grad_batches: int = 1

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> ScaleOut:
        """From the flags of ``add_scale_out_arguments`` (evaluate has no ``--accumulate-grad-batches``)."""
        return cls(args.devices, args.num_nodes, args.distributed_strategy, args.precision,
                   getattr(args, "accumulate_grad_batches", 1))

    @property
    def processes(self) -> int:
        return self.devices * self.num_nodes

    def trainer_options(self) -> dict:
        return {
            "devices": self.devices, "num_nodes": self.num_nodes, "strategy": self.strategy,
            "precision": self.precision,
        }


SINGLE_DEVICE = ScaleOut()


def add_scale_out_arguments(parser: argparse.ArgumentParser, fitting: bool = True) -> None:
    """The scale-out flags (``ScaleOut``); ``fitting=False`` leaves out ``--accumulate-grad-batches``."""
    group = parser.add_argument_group("scale-out (Lightning; see README: torchrun and SLURM launch lines)")
    group.add_argument("--devices", type=int, default=1, help="processes (GPUs, or CPU processes) per machine")
    group.add_argument("--num-nodes", type=int, default=1, help="machines")
    group.add_argument("--distributed-strategy", choices=STRATEGIES, default="auto",
                       help="Lightning strategy: ddp for more than one device (auto picks it); fsdp (GPUs only) also "
                       "shards the model's training state, for models too large for one GPU; named so because "
                       "--strategy is HySpecNet-11k's split")
    group.add_argument("--precision", choices=PRECISIONS, default="32-true",
                       help="16-mixed needs CUDA; bf16-mixed runs on CPUs and Ampere or newer GPUs")
    if fitting:
        group.add_argument("--accumulate-grad-batches", type=int, default=1, help="batches per optimiser step")

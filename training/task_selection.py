"""Which task a command line is about, for the commands (evaluate, export) where --task is optional."""
from __future__ import annotations

import argparse
from collections.abc import Collection


def asks_for(args: argparse.Namespace, tasks: Collection[str]) -> bool:
    """--task is one of ``tasks``, or no --task and the checkpoint was saved by one of them."""
    if args.task is not None:
        return args.task in tasks
    import torch  # here, not at import: the CLI starts without torch for the commands that need none

    saved = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    return isinstance(saved, dict) and saved.get("task") in tasks

"""Export a scene-label checkpoint to ONNX with the model contract, and check parity with torch.

Convention for the engine (``engine.contract``), task ``"scene_labels"``:

- input ``image`` float32 ``[N, C, 120, 120]``: one reBEN patch (1200 m at 10 m) per item, bands
  in the contract's order (S1 then S2: VV, VH, B02, B03, B04, B05, B06, B07, B08, B8A, B11, B12
  for "s1,s2"), each standardised with the contract's mean/std; batch is dynamic, the size is
  fixed at 120 (MLP-Mixer's token count depends on it);
- output ``output`` float32 ``[N, 19, 1, 1]``: independent sigmoid probabilities of the 19
  classes for the whole patch (multi-label: they do not sum to 1), in the contract's class order
  (alphabetical, ``training.datasets.ben_labels``); tile_size 120, overlap 0, gsd_m 10.
"""
from __future__ import annotations

from pathlib import Path

from engine.contract import Band, ModelContract
from training.checkpoint import load_checkpoint
from training.datasets.reben_format import PATCH_PIXELS
from training.onnx_export import parity_check, write_onnx
from training.scene_labels.data import describe_training_data
from training.scene_labels.fit import TASK
from training.sentinel_bands import SENTINEL_BANDS

CONTRACT_TASK = "scene_labels"
PARITY_TOLERANCE = 1e-5  # probabilities
PAPER = (
    "Clasen et al.: reBEN: Refined BigEarthNet Dataset for Remote Sensing Image Analysis, 2024 "
    "(arXiv:2407.03653)"
)
INPUT_UNITS = (
    "S1 VV, VH: backscatter sigma0 in dB (10*log10); S2: L2A surface reflectance x 10000 "
    "(reBEN digital numbers, no offset)"
)


def export_scene_labels(checkpoint: Path, out: Path, metrics: dict | None = None, command: str = "") -> dict:
    """Write ``out`` (.onnx); returns ``{"path", "max_abs_diff", "contract"}``."""
    module, saved = load_checkpoint(checkpoint, TASK)
    data, training = saved["data"], saved["provenance"]
    hyper = module.hparams
    contract = ModelContract(
        task=CONTRACT_TASK,
        name=Path(out).stem,
        bands=tuple(Band(name, *SENTINEL_BANDS[name]) for name in data["bands"]),
        mean=tuple(hyper.band_mean),
        std=tuple(hyper.band_std),
        outputs=module.contract_outputs(),
        tile_size=PATCH_PIXELS,
        overlap=0,
        gsd_m=data["gsd_m"],
        input_units=INPUT_UNITS,
        input_statistics=data.get("input_statistics", {}),  # checkpoints fitted before they were recorded lack them
        provenance={
            "paper": PAPER,
            "modalities": data["modalities"],
            "model": {
                "architecture": hyper.model,
                "width": hyper.width,
                "depth": hyper.depth,
                "parameters": training["parameters"],
                "augment": hyper.augment,
            },
            "label_order": "alphabetical 19-class reBEN nomenclature (reference weights' order)",
            "training_data": describe_training_data(data),
            "command": training["command"],
            "export_command": command,
            "training": {
                key: training[key]
                for key in ("seed", "steps", "epochs", "seconds", "best_validation_ap_macro")
            },
            "metrics": metrics or {},
        },
    )
    graph = module.export_graph().eval()
    write_onnx(graph, len(contract.bands), PATCH_PIXELS, Path(out), contract, dynamic_size=False)
    worst = parity_check(graph, Path(out), len(contract.bands), PATCH_PIXELS, dynamic_size=False,
                         tolerance=PARITY_TOLERANCE, batches=(1, 3))  # random batches of 1 and 3 patches
    return {"path": str(out), "max_abs_diff": worst, "contract": contract}


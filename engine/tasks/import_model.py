"""Import model: a published checkpoint becomes a contract ONNX model (``python -m training import``).

The conversion rebuilds the authors' network in torch, so it runs in a child process of the engine's
interpreter with the training extras installed; the engine itself never imports torch. The child's
refusals (wrong checkpoint, truncated file, checksum mismatch) come back as the engine's errors, and
a cancel ends the child, whose scratch folder then goes with it: no model file is left half-written.
"""
from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from engine.errors import Cancelled, EngineError
from engine.pipeline import IsCancelled, Progress
from engine.tasks.parameters import PATH, DictOf

OPTION_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
POLL_S = 0.2


class ImportModel:
    name = "import_model"
    params = {
        "source": (str, True),
        "checkpoint": (PATH, True),
        "output": (PATH, True),
        "sha256": (str, False),
        # the source's own options, e.g. {"area": "agia_napa", "norm-param": "n.npy"}
        "options": (DictOf((str, float, bool)), False),
    }

    def run(self, params: dict, progress: Progress, cancelled: IsCancelled) -> dict:
        if importlib.util.find_spec("torch") is None:
            raise EngineError(
                f"importing a checkpoint needs torch, which the engine's Python ({sys.executable}) lacks: "
                "install the training extras (scripts/setup.sh --training, or pip install -e '.[training]')"
            )
        command = [sys.executable, "-m", "training", "import", "--source", params["source"],
                   "--checkpoint", params["checkpoint"], "--out", params["output"]]
        if params.get("sha256"):
            command += ["--sha256", params["sha256"]]
        for option, value in params.get("options", {}).items():
            if not OPTION_NAME.match(option):
                raise EngineError(f"import option {option!r} is not an option name (like 'norm-param')")
            command += [f"--{option}", str(value)]
        progress(0.05, f"converting {Path(params['checkpoint']).name} ({params['source']})")
        started = time.perf_counter()
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 cwd=Path(__file__).resolve().parents[2])
        while child.poll() is None:
            if cancelled():
                child.kill()
                child.wait()
                raise Cancelled("cancelled by the user; no model was written")
            time.sleep(POLL_S)
        out, err = child.communicate()
        if child.returncode != 0:
            lines = [line for line in err.splitlines() if line.strip()]
            refusal = next((line for line in reversed(lines) if line.startswith("import refused:")), None)
            raise EngineError(refusal or "import failed: " + " | ".join(lines[-3:]))
        result = json.loads(out[out.rfind("\n{") + 1:])  # the exporter's progress lines come first
        progress(1.0, "imported")
        return {**result, "seconds": round(time.perf_counter() - started, 2)}

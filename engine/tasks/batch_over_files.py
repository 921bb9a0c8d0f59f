"""Batch over files: run one task over many scenes on Ray, resumable, recorded in a manifest.

The scenes come from a glob, a folder, a list or a STAC ItemCollection (engine/batch_scenes.py); each is
one Ray task (engine/ray_batch.py) that runs the same task function a single run does, with outputs
named after the scene in ``output_dir`` and written atomically by the task itself. Every finished scene
is a line of ``output_dir/batch-manifest.jsonl`` (engine/batch_manifest.py): a second run skips the
finished ones, runs the failed ones again (or only reports them, with ``skip_failed``) and the new ones.

build_search_index builds one index, ``output_dir/index``: the workers embed the scenes and write each
scene's tile positions and embeddings beside the index (engine.tasks.search_index.index_entry, the
single-run code, keyed by the same cache key); then the driver alone merges them into the store and
commits the manifest (EmbeddingIndex.save), also when the run is cancelled, so that what finished is kept.
A scene already in the index with the same files, model and tiling is not embedded again.
"""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from engine.batch_manifest import BatchManifest, input_stamps, request_key
from engine.batch_scenes import EXTRA_OUTPUTS, Scene, find_scenes, output_path, scene_request
from engine.embedding_index import EmbeddingIndex, Entry, Manifest, cache_key
from engine.errors import EngineError
from engine.output_files import PARTIAL_MARKER, remove_stale_partials
from engine.pipeline import IsCancelled, Progress
from engine.ray_batch import Counts, ray_session, run_scenes
from engine.tasks.parameters import PATH, ListOf
from engine.tasks.search_index import BuildSearchIndex, embedding_model, index_entry, put_entry, tiling_of

INDEX_TASK = "build_search_index"
INDEX_FOLDER = "index"
PARTIAL_WAIT_S = 10.0  # for the worker of a cancelled scene to end, so that its temporaries can go


def batch_tasks() -> list[str]:
    """The tasks a batch can run: every raster task and the search index."""
    from engine.tasks import RASTER_TASKS  # the registry imports this module
    return [*RASTER_TASKS, INDEX_TASK]


def run_scene_task(task: str, request: dict) -> dict:
    """One scene in a Ray worker: the task's own function, as a single run calls it."""
    from engine.tasks import run_task
    result = run_task(task, request, lambda fraction, message: None, lambda: False)
    return {"device": result.get("device"), "outputs": [p for p in result["outputs"].values() if p],
            "warnings": result.get("warnings", [])}


def embed_scene(folder: str, name: str, files: list[str], params: dict) -> dict:
    """One scene of an index in a Ray worker: its tiles embedded and written beside the index, not yet merged."""
    model = embedding_model(BuildSearchIndex().model_path(params), params.get("device", "auto"), "image_embedding")
    contract = model.contract
    index = EmbeddingIndex(folder)
    unmerged = Manifest(contract.provenance["space"], int(contract.provenance["dim"]))  # the driver skips merged ones
    entry, _, warnings = index_entry(index, unmerged, name, "image", {"image": files}, model, params,
                                     lambda fraction, message: None, lambda: False)
    return {"device": model.provider, "entry": asdict(entry), "warnings": warnings,
            "outputs": [str(Path(folder) / f"{entry.id}.tiles.npy")]}


def remove_partials_when_stale(target: Path) -> None:
    """Remove ``target``'s temporaries once their writers have ended (a killed worker takes a moment to go)."""
    deadline = time.monotonic() + PARTIAL_WAIT_S
    while True:
        remove_stale_partials(target)
        if not any(target.parent.glob(f".{target.stem}{PARTIAL_MARKER}*")) or time.monotonic() > deadline:
            return
        time.sleep(0.1)


class BatchOverFiles:
    name = "batch_over_files"
    params = {
        "task": (str, True),
        "inputs": (str, True),  # glob pattern, folder, .txt list or STAC ItemCollection .json
        "output_dir": (PATH, True),
        "params": (dict, False),  # the task's own parameters, the same for every scene
        "extra_outputs": (ListOf(str), False),  # of EXTRA_OUTPUTS: also written, as <scene>.<kind>.tif
        "asset_bands": (str, False),  # STAC: 'asset=BAND,...'
        "ray_address": (str, False),  # empty: a local Ray
        "workers": (int, False),  # local Ray: scenes at once (default: the CPU count)
        "cpus_per_task": (float, False),
        "gpus_per_task": (float, False),
        "max_in_flight": (int, False),
        "skip_failed": (bool, False),  # report scenes that failed before instead of running them again
    }

    def run(self, params: dict, progress: Progress, cancelled: IsCancelled) -> dict:
        started = time.perf_counter()
        task = params["task"]
        if task not in batch_tasks():
            raise EngineError(f"batch_over_files runs one of {', '.join(batch_tasks())}; not {task!r}")
        extra = params.get("extra_outputs", [])
        if set(extra) - set(EXTRA_OUTPUTS):
            raise EngineError(f"extra_outputs may name {', '.join(EXTRA_OUTPUTS)}; "
                              f"not {sorted(set(extra) - set(EXTRA_OUTPUTS))}")
        output_dir = Path(params["output_dir"])
        if not output_dir.parent.is_dir():
            raise EngineError(f"folder {output_dir.parent} does not exist; create it or choose another output_dir")
        if output_dir.exists() and not output_dir.is_dir():
            raise EngineError(f"output_dir {output_dir} is a file; give a folder for the scenes' outputs")
        output_dir.mkdir(exist_ok=True)
        scenes = find_scenes(params["inputs"], task, params.get("asset_bands"))
        task_params = params.get("params", {})
        plan = IndexPlan(output_dir, task_params) if task == INDEX_TASK else None
        self._check_request(task, scenes[0], output_dir, task_params, extra, plan)
        manifest = BatchManifest(output_dir)
        key = request_key(task, {**task_params, "extra_outputs": extra, "asset_bands": params.get("asset_bands")})
        counts, work, reported, stamps = Counts(len(scenes)), [], [], {}
        for scene in scenes:
            stamps[scene.name] = input_stamps(scene.files)
            failed_before = manifest.failed(scene.name, key)
            if manifest.finished(scene.name, key, stamps[scene.name]) or (plan and plan.merged(scene)):
                counts.skipped += 1
            elif failed_before and params.get("skip_failed"):
                counts.skipped += 1
                reported.append({"scene": scene.name, "error": failed_before.get("error")})
            else:
                work.append((scene, *self._call(task, scene, output_dir, task_params, extra, plan)))
        new_records = []

        def record(scene: Scene, outcome: dict) -> None:
            entry = {"scene": scene.name, "input": scene.key,
                     "output": str(plan.folder) if plan else output_path(output_dir, scene, task),
                     "status": outcome["status"], "seconds": outcome["seconds"], "device": outcome.get("device"),
                     "error": outcome.get("error"), "worker": outcome["worker"], "outputs": outcome.get("outputs", []),
                     "request": key, "stamps": stamps[scene.name], "warnings": outcome.get("warnings", [])}
            if "entry" in outcome:
                entry["entry"] = outcome["entry"]
            manifest.append(entry)
            new_records.append(entry)

        def cleanup(scene: Scene) -> None:  # a cancelled scene's temporaries, once its killed worker is gone
            for path in scene_request(task, scene, output_dir, {}, extra).values():
                if isinstance(path, str) and path.startswith(str(output_dir)):
                    remove_partials_when_stale(Path(path))

        finished = True
        if work:  # nothing to do: Ray is not even started
            with ray_session(params.get("ray_address"), params.get("workers")) as ray:
                finished = run_scenes(ray, work, record, counts, progress, cancelled,
                                      cpus_per_task=params.get("cpus_per_task", 1),
                                      gpus_per_task=params.get("gpus_per_task", 0),
                                      max_in_flight=params.get("max_in_flight"), cleanup=cleanup)
        result = {
            "outputs": {"output_dir": str(output_dir), "manifest": str(manifest.path)},
            "task": task,
            "scenes": counts.total,
            "done": counts.done,
            "failed": counts.failed,
            "skipped": counts.skipped,
            "cancelled": not finished,
            "failed_scenes": reported + [{"scene": r["scene"], "error": r["error"]} for r in new_records
                                         if r["status"] == "failed"],
            "devices": sorted({r["device"] for r in new_records if r["device"]}),
            "workers": len({r["worker"] for r in new_records if r["worker"]}),
            "nodes": len({r["worker"].split(" node ")[1] for r in new_records if r["worker"]}),
            "scene_seconds": round(sum(r["seconds"] or 0 for r in new_records), 3),
            "warnings": [f"{r['scene']}: {w}" for r in new_records for w in r["warnings"]],
        }
        if plan:
            progress(counts.fraction(), "merging the embedded scenes into the index")
            result.update(plan.merge(manifest, new_records))
        result["seconds"] = round(time.perf_counter() - started, 3)
        result["scenes_per_s"] = round((counts.done + counts.failed) / result["seconds"], 3)
        return result

    @staticmethod
    def _call(task: str, scene: Scene, output_dir: Path, task_params: dict, extra: list[str],
              plan: IndexPlan | None) -> tuple:
        """The function a Ray worker runs for ``scene`` and its arguments; its output folders made."""
        if plan:
            return embed_scene, (str(plan.folder), scene.name, list(scene.files), {**task_params, **plan.bands(scene)})
        request = scene_request(task, scene, output_dir, task_params, extra)
        Path(request["output"]).parent.mkdir(parents=True, exist_ok=True)
        return run_scene_task, (task, request)

    @staticmethod
    def _check_request(task: str, scene: Scene, output_dir: Path, task_params: dict, extra: list[str],
                       plan: IndexPlan | None) -> None:
        """Refuse parameters the task does not take before any scene runs (the first scene's request)."""
        from engine.tasks import validate
        if plan:
            validate(INDEX_TASK, {**task_params, **plan.bands(scene), "input": list(scene.files),
                                  "index": str(plan.folder)})
            if extra:
                raise EngineError(f"{INDEX_TASK} writes no extra outputs; leave extra_outputs empty")
        else:
            validate(task, scene_request(task, scene, output_dir, task_params, extra))


class IndexPlan:
    """One search index built from many scenes: which are in it already, and the single writer's merge."""

    def __init__(self, output_dir: Path, params: dict):
        self.folder = output_dir / INDEX_FOLDER
        self.params = params
        self.model = embedding_model(BuildSearchIndex().model_path(params), "cpu", "image_embedding")
        contract = self.model.contract
        self.index = EmbeddingIndex(self.folder)
        self.manifest = self.index.open_for(contract.provenance["space"], int(contract.provenance["dim"]))
        self.folder.mkdir(exist_ok=True)
        self.tiling = tiling_of(contract, params)
        self.merged_ids = {e.id for e in self.manifest.entries if self.index.has_entry(e.id)}

    @staticmethod
    def bands(scene: Scene) -> dict:
        return {"bands": scene.bands} if scene.bands else {}

    def merged(self, scene: Scene) -> bool:
        """Whether the index holds ``scene`` with the same files, model and tiling (the single run's cache key)."""
        tiling = {**self.tiling, "bands": self.bands(scene).get("bands", self.tiling["bands"])}
        return cache_key(scene.name, {"image": list(scene.files)}, self.model.path, tiling) in self.merged_ids

    def merge(self, manifest: BatchManifest, new_records: list[dict]) -> dict:
        """Put every embedded scene not yet in the index (this run's, and those of a run that stopped before its
        merge) into the index's manifest and commit it once."""
        waiting = [Entry(**r["entry"]) for r in manifest.last.values()
                   if r["status"] == "done" and "entry" in r and r["entry"]["id"] not in self.merged_ids
                   and self.index.pending_path(r["entry"]["id"]).is_file()]
        if not waiting:
            return {"index": str(self.folder), "merged": 0, "store": None}
        for entry in waiting:
            put_entry(self.manifest, entry)
        store = self.index.save(self.manifest)
        return {"index": str(self.folder), "merged": len(waiting), "store": store,
                "index_tiles": sum(e.tiles for e in self.manifest.entries)}

"""Batch over files on Ray (issue #13): scenes/s of 1, 2 and 4 local Ray workers against the single-process
engine on the same scenes, the overhead per scene, and a two-node Ray cluster simulated on this machine.

Scenes: ``--scenes`` windows of ``--size`` px cut from sample_data/agia_napa_sim_s2.tif (simulated Sentinel-2
reflectance, EPSG:32636), each its own GeoTIFF; task: estimate_bathymetry with the shipped model
(models_onnx/bathymetry_s2_sim.onnx, quality layers on), the same for every row.

Rows, all in one run, each the fastest of ``ROUNDS`` rounds that run every row in turn (the machine is shared):
- single process: ``run_task`` over the scenes one after another in a fresh interpreter (what a loop of CLI
  runs does, less the interpreter starts), with onnxruntime's and numpy's own threads (one per core), and
  with the one thread a 1-CPU Ray worker gets (``OMP_NUM_THREADS=1`` from the start: numpy's BLAS and
  onnxruntime through engine.runtime.thread_budget);
- Ray, k workers: a local Ray of k CPUs (one scene per CPU), started before the clock (its start is shown
  apart), running ``batch_over_files``: scenes/s over the whole run, the mean seconds a scene took inside its
  worker, and the overhead per scene: wall time x workers / scenes - the mean in-worker seconds (what Ray,
  the driver and the manifest add, and idle workers at the end), and the driver's CPU milliseconds per scene
  (this process: Ray's calls, the manifest, progress);
- 32 px scenes, 2 workers: the fixed cost of a scene (model load, file open, dispatch) bounds scenes/s;
- two nodes: ``ray start --head`` and ``ray start --address`` as two processes of one CPU each on this
  machine (two raylets, two object stores: a cluster of two nodes as Ray sees it), reached by the driver
  through the Ray client (``ray://<this host>:<port>``), as a remote cluster is; the nodes that ran scenes.
  Ray 2.60 authenticates every connection with a token (``~/.ray/auth_token``): the processes and the driver
  run with ``RAY_AUTH_MODE=token`` so that they share this machine's token (a real cluster copies the token
  to every node and to the driver). With grpcio 1.85 the head's Ray client server aborts in gRPC's fork
  handlers ("Check failed: next_worker->state == KICKED") unless ``GRPC_ENABLE_FORK_SUPPORT=0``.
Outputs of every row are compared with the single-process ones (values and georeferencing).
Usage: python bench/batch.py [--scenes 24] [--size 256] [--workers 1 2 4] [--no-cluster]
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.tasks import run_task  # noqa: E402

SAMPLE = REPO / "sample_data" / "agia_napa_sim_s2.tif"
RAY_BIN = Path(sys.executable).parent / "ray"
ROUNDS = 2


def write_scenes(folder: Path, count: int, size: int) -> list[Path]:
    """``count`` windows of ``size`` px of the sample at spread offsets, flipped in turn (distinct scenes)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    paths = []
    with rasterio.open(SAMPLE) as sample:
        for number in range(count):
            row, col = (int(v) for v in rng.integers(0, sample.height - size + 1, 2))
            window = Window(col, row, size, size)
            data = sample.read(window=window)
            profile = {**sample.profile, "width": size, "height": size, "transform": sample.window_transform(window)}
            path = folder / f"scene_{number:03d}.tif"
            with rasterio.open(path, "w", **profile) as scene:
                scene.write(data[:, :, ::-1] if number % 2 else data)
                scene.descriptions = sample.descriptions
            paths.append(path)
    return paths


def single_process(scenes: list[Path], out: Path) -> float:
    """Seconds of ``run_task`` over ``scenes``, one after another, in this process."""
    out.mkdir()
    started = time.perf_counter()
    for path in scenes:
        run_task("estimate_bathymetry", {"input": str(path), "output": str(out / path.name)},
                 lambda fraction, message: None, lambda: False)
    return time.perf_counter() - started


def fresh_single_process(scenes: list[Path], out: Path, threads: int | None) -> float:
    """``single_process`` in a new interpreter, with ``OMP_NUM_THREADS=threads`` from its start when given (so
    that numpy's BLAS, read at import, and onnxruntime, engine.runtime.thread_budget, keep to it: what a Ray
    worker of ``threads`` CPUs gets); two scenes first as warm-up."""
    environment = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    if threads:
        environment["OMP_NUM_THREADS"] = str(threads)
    code = ("import sys, pathlib; sys.path.insert(0, 'bench'); from batch import single_process as run; "
            "paths = [pathlib.Path(p) for p in sys.argv[2:]]; out = pathlib.Path(sys.argv[1]); "
            "run(paths[:2], out.with_name(out.name + '_warm')); print(run(paths, out))")
    completed = subprocess.run([sys.executable, "-c", code, str(out), *map(str, scenes)], cwd=REPO, env=environment,
                               capture_output=True, text=True, check=True)
    return float(completed.stdout.strip().splitlines()[-1])


def ray_batch(scenes_glob: str, out: Path, **options) -> tuple[float, dict]:
    """Wall seconds and the result of one batch run; the result gains the driver's CPU ms per scene."""
    started, cpu = time.perf_counter(), time.process_time()
    result = run_task("batch_over_files", {"task": "estimate_bathymetry", "inputs": scenes_glob, "output_dir": str(out),
                                           **options}, lambda fraction, message: None, lambda: False)
    result["driver_cpu_ms"] = 1000 * (time.process_time() - cpu) / max(1, result["done"] + result["failed"])
    return time.perf_counter() - started, result


def local_ray(workers: int) -> float:
    """Start a local Ray of ``workers`` CPUs; the seconds it took."""
    import ray

    started = time.perf_counter()
    ray.init(address="local", num_cpus=workers, include_dashboard=False, object_store_memory=80 * 2**20,
             log_to_driver=False, logging_level="warning")
    return time.perf_counter() - started


def same_outputs(out: Path, reference: Path) -> bool:
    for path in sorted(reference.glob("*.tif")):
        with rasterio.open(path) as expected, rasterio.open(out / path.name) as got:
            if (got.crs, got.transform) != (expected.crs, expected.transform) or \
                    got.read().tobytes() != expected.read().tobytes():
                return False
    return True


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def two_node_cluster(work: Path) -> tuple[list[subprocess.Popen], str]:
    """A head and a worker node, one CPU each, as two ``ray start --block`` processes of this bench."""
    import ray

    host, port, client_port = ray.util.get_node_ip_address(), free_port(), free_port()
    common = ["--num-cpus=1", "--object-store-memory=100000000", "--disable-usage-stats", "--block"]
    head = subprocess.Popen([str(RAY_BIN), "start", "--head", f"--port={port}",
                             f"--ray-client-server-port={client_port}", "--include-dashboard=false", *common],
                            stdout=open(work / "head.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    time.sleep(8)
    worker = subprocess.Popen([str(RAY_BIN), "start", f"--address={host}:{port}", *common],
                              stdout=open(work / "worker.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    return [head, worker], f"ray://{host}:{client_port}"


def stop(processes: list[subprocess.Popen]) -> None:
    """Ctrl+C to each ``ray start --block`` (it stops the Ray processes it started); killed if it does not."""
    for process in reversed(processes):
        os.killpg(process.pid, signal.SIGINT)
    for process in processes:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def print_row(name: str, scenes: int, wall: float, single: float | None, workers: int, result: dict, ray_start: str,
              same: bool | None) -> None:
    in_worker = result["scene_seconds"] / max(1, result["done"])
    ratio = f"{single / wall:.2f}" if single else "-"
    print(f"{name:<26}{scenes / wall:>9.2f}{ratio:>9}{in_worker:>19.3f}{wall * workers / scenes - in_worker:>18.3f}"
          f"{result['driver_cpu_ms']:>21.1f}{ray_start:>12}{'-' if same is None else str(same):>6}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=24)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--no-cluster", action="store_true", help="skip the two-node cluster row")
    args = parser.parse_args()
    os.environ["RAY_AUTH_MODE"] = "token"  # one token for the local instances, the two nodes and the driver
    os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "0"  # else the head's Ray client server dies forking (grpcio 1.85)
    import ray

    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        scenes = write_scenes(work / "scenes", args.scenes, args.size)
        glob = str(work / "scenes" / "*.tif")
        single, single_one_thread, ray_rows = float("inf"), float("inf"), {}
        for round_number in range(ROUNDS):  # rows in turn, so that the load of other jobs falls on all of them
            single = min(single, fresh_single_process(scenes, work / f"single{round_number}", None))
            single_one_thread = min(single_one_thread,
                                    fresh_single_process(scenes, work / f"single1t{round_number}", 1))
            for workers in args.workers:
                ray_start = local_ray(workers)
                wall, result = ray_batch(glob, work / f"ray{workers}_{round_number}")
                ray.shutdown()
                if workers not in ray_rows or wall < ray_rows[workers][0]:
                    ray_rows[workers] = (wall, result, ray_start)
        print(f"{len(scenes)} scenes of {args.size} x {args.size} px, estimate_bathymetry (shipped model), "
              f"best of {ROUNDS} rounds")
        print(f"{'row':<26}{'scenes/s':>9}{'x single':>9}{'s/scene in worker':>19}{'overhead s/scene':>18}"
              f"{'driver CPU ms/scene':>21}{'Ray start s':>12}{'same':>6}")
        print(f"{'single process':<26}{len(scenes) / single:>9.2f}{1.0:>9.2f}{single / len(scenes):>19.3f}"
              f"{'-':>18}{'-':>21}{'-':>12}{'-':>6}")
        print(f"{'single process, 1 thread':<26}{len(scenes) / single_one_thread:>9.2f}"
              f"{single / single_one_thread:>9.2f}{single_one_thread / len(scenes):>19.3f}"
              f"{'-':>18}{'-':>21}{'-':>12}{'-':>6}")
        for workers, (wall, result, ray_start) in ray_rows.items():
            print_row(f"Ray, {workers} worker(s)", len(scenes), wall, single, workers, result, f"{ray_start:.1f}",
                      same_outputs(work / f"ray{workers}_0", work / "single0"))
        tiny = write_scenes(work / "tiny", 4 * len(scenes), 32)
        local_ray(2)
        wall, result = ray_batch(str(work / "tiny" / "*.tif"), work / "tiny_out")
        ray.shutdown()
        print_row(f"{len(tiny)} scenes of 32 px, 2 w.", len(tiny), wall, None, 2, result, "-", None)
        if not args.no_cluster:
            processes, address = two_node_cluster(work)
            try:
                time.sleep(5)
                wall, result = ray_batch(glob, work / "cluster", ray_address=address)
            finally:
                stop(processes)
            print_row("2 nodes x 1 CPU (client)", len(scenes), wall, single, 2, result, "-",
                      same_outputs(work / "cluster", work / "single0"))
            print(f"two-node run: {result['done']} done on {result['nodes']} Ray nodes, {result['workers']} workers; "
                  f"connect time included in its wall time")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

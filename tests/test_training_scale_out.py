"""Data-parallel training and evaluation (training/scale_out.py, training/trainer.py): two CPU processes
under DDP (gloo), launched with torchrun as README shows, one family per kind. A fit writes one
checkpoint, from rank 0, that exports and runs in the engine; evaluation over two processes gives the
metrics of one process on the same data (each sample is read once: the test splits have odd sizes, so
a sampler that pads the last shard would count a sample twice)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import rasterio
import torch
import torch.distributed as dist
import torch.multiprocessing
from torch.nn.parallel import DistributedDataParallel

from training.__main__ import main as training_cli
from training.datasets.ben_store import write_store
from training.simulation.bigearthnet_fixture import write_bigearthnet_fixture
from training.simulation.caption_fixtures import write_caption_fixtures
from training.simulation.caption_scenes import SIMULATED_LANDSCAPES, simulate_scene
from training.simulation.crop_phenology import write_pastis_r_fixture
from training.simulation.hyperspectral import write_hyspecnet_layout
from training.simulation.shallow_water import write_magicbathynet_layout
from training.text_search.retrieval import caption_clip_loss

pytestmark = pytest.mark.slow
TWO_PROCESSES = ["--accelerator", "cpu", "--devices", "2", "--distributed-strategy", "ddp"]


def torchrun(arguments: list[str], tmp_path) -> str:
    """``python -m training <arguments>`` in two processes on this machine; returns what they printed."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "training", *arguments]
    environment = os.environ | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


def one_and_two_processes(evaluate: list[str], tmp_path) -> tuple[dict, dict]:
    """The metrics of ``evaluate`` (an evaluate command line) in one process and in two."""
    single, double = tmp_path / "one.json", tmp_path / "two.json"
    training_cli([*evaluate, "--accelerator", "cpu", "--threads", "1", "--json-out", str(single)])
    printed = torchrun([*evaluate, *TWO_PROCESSES, "--json-out", str(double)], tmp_path)
    assert printed.count('"metrics"') == 1  # rank 0 prints, rank 1 does not
    return json.loads(single.read_text())["metrics"], json.loads(double.read_text())["metrics"]


def assert_one_checkpoint_of_two_processes(run_folder) -> None:
    assert [path.name for path in run_folder.glob("*.pt")] == ["checkpoint.pt"]
    provenance = torch.load(run_folder / "checkpoint.pt", weights_only=True)["provenance"]
    assert provenance["processes"] == 2 and provenance["steps"] == 2


def test_marine_bathymetry_under_ddp(tmp_path):
    """Segmentation / regression: MagicBathyNet bathymetry (the light U-Net)."""
    from engine.tasks import run_task

    root = tmp_path / "magicbathynet"
    write_magicbathynet_layout(root, "agia_napa", 15, 18, seed=3)
    run = tmp_path / "run"
    data = ["--task", "bathymetry", "--data", str(root)]
    torchrun(["fit", *data, "--max-steps", "2", "--batch-size", "2", "--base-channels", "4", "--out", str(run),
              *TWO_PROCESSES], tmp_path)
    assert_one_checkpoint_of_two_processes(run)

    one, two = one_and_two_processes(["evaluate", *data, "--checkpoint", str(run / "checkpoint.pt"),
                                      "--batch-size", "2"], tmp_path)
    assert one.keys() == two.keys() and one["pixels"] == two["pixels"] > 0
    assert one == pytest.approx(two, rel=1e-5, abs=1e-6)

    model = tmp_path / "bathymetry.onnx"
    training_cli(["export", "--task", "bathymetry", "--checkpoint", str(run / "checkpoint.pt"), "--out", str(model)])
    image = next(root.rglob("img_*.tif"))
    result = run_task("estimate_bathymetry", {"input": str(image), "output": str(tmp_path / "depth.tif"),
                                              "model": str(model), "device": "cpu"}, lambda f, m: None, lambda: False)
    assert result["kind"] == "regression"
    with rasterio.open(tmp_path / "depth.tif") as out, rasterio.open(image) as src:
        assert out.crs == src.crs and out.transform == src.transform and out.shape == src.shape


def test_scene_labels_under_ddp(tmp_path, capsys):
    """Multi-label: reBEN scene labels (a tiny ResNet-50, BatchNorm synchronised across the processes)."""
    ben_root, store = tmp_path / "ben", tmp_path / "store"
    write_bigearthnet_fixture(ben_root, 15, seed=2)  # 9 train, 3 validation, 3 test patches
    write_store(ben_root, store)
    run = tmp_path / "run"
    torchrun(["fit", "--task", "scene-labels", "--data", str(store), "--modalities", "s1,s2", "--model", "resnet50",
              "--model-width", "4", "--model-depth", "1", "--max-steps", "2", "--batch-size", "2",
              "--out", str(run), *TWO_PROCESSES], tmp_path)
    assert_one_checkpoint_of_two_processes(run)

    one, two = one_and_two_processes(["evaluate", "--data", str(store), "--checkpoint", str(run / "checkpoint.pt"),
                                      "--batch-size", "2"], tmp_path)
    assert set(one) == {f"{m}_{a}" for m in ("ap", "f1", "precision") for a in ("macro", "micro")}
    assert one == pytest.approx(two, rel=1e-5, abs=1e-6)

    training_cli(["export", "--checkpoint", str(run / "checkpoint.pt"), "--out", str(tmp_path / "scene.onnx")])
    assert "onnxruntime vs torch max abs diff" in capsys.readouterr().out  # export checks parity itself


def test_crop_maps_under_ddp(tmp_path):
    """Time series: TSViT crop maps on a PASTIS-R-format fixture (S2 and S1 series, early fusion)."""
    root = tmp_path / "pastis"
    write_pastis_r_fixture(root, patches=10, size=24, seed=3, tiles=2)
    run = tmp_path / "run"
    torchrun(["fit", "--task", "crop", "--data", str(root), "--modalities", "s1,s2", "--fusion", "early",
              "--max-steps", "2", "--batch-size", "2", "--max-dates-s2", "6", "--max-dates-s1", "6", "--tile-size", "8",
              "--patch-size", "4", "--tsvit-dim", "16", "--temporal-depth", "1", "--spatial-depth", "1",
              "--tsvit-heads", "2", "--tsvit-head-dim", "8", "--out", str(run), *TWO_PROCESSES], tmp_path)
    assert_one_checkpoint_of_two_processes(run)

    one, two = one_and_two_processes(["evaluate", "--data", str(root), "--checkpoint", str(run / "checkpoint.pt"),
                                      "--batch-size", "3"], tmp_path)
    assert set(one) == {"overall_accuracy", "mean_accuracy", "mean_iou"} and 0 < one["overall_accuracy"]
    assert one == pytest.approx(two, rel=1e-5, abs=1e-6)
    training_cli(["export", "--checkpoint", str(run / "checkpoint.pt"), "--out", str(tmp_path / "crop.onnx")])


def test_hycot_under_ddp(tmp_path):
    """Compression: HyCoT on simulated HySpecNet-11k-layout patches."""
    root = tmp_path / "hyspecnet"
    write_hyspecnet_layout(root, 30, 16, seed=4, patches_per_tile=3)  # 21 train, 6 validation, 3 test patches
    run, data = tmp_path / "run", ["--data", str(root)]
    torchrun(["fit", "--task", "hycot", "--cr", "16", *data, "--max-steps", "2", "--batch-size", "2",
              "--pixels-per-patch", "4", "--dim", "16", "--depth", "1", "--heads", "2", "--head-dim", "8",
              "--mlp-dim", "8", "--hidden-dim", "32", "--out", str(run), *TWO_PROCESSES], tmp_path)
    assert_one_checkpoint_of_two_processes(run)

    one, two = one_and_two_processes(["evaluate", *data, "--checkpoint", str(run / "checkpoint.pt"),
                                      "--batch-size", "1"], tmp_path)
    assert set(one) == {"psnr_db", "spectral_angle_deg"} and one["psnr_db"] > 0
    assert one == pytest.approx(two, rel=1e-5, abs=1e-6)
    # no export here: exporting even this tiny pair peaks at 12 GB (the receptive-field probe of
    # training/fully_convolutional.py); tests/test_hycot_training.py exports one


def contrastive_step(rank: int, world_size: int, port: int, batch: tuple, out) -> None:
    """One contrastive step of a linear image encoder on this process's share of ``batch`` under
    DDP (gloo) when ``world_size`` > 1; saves the loss and the weight gradient to ``out``."""
    if world_size > 1:
        os.environ |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        dist.init_process_group("gloo", rank=rank, world_size=world_size)
    torch.manual_seed(0)
    linear = torch.nn.Linear(6, 4)
    encoder = DistributedDataParallel(linear) if world_size > 1 else linear
    image, text, caption_set, choice = (tensor.chunk(world_size)[rank] for tensor in batch)
    embedding = torch.nn.functional.normalize(encoder(image), dim=1)
    loss = caption_clip_loss(embedding, text, caption_set, choice, torch.tensor(10.0))
    loss.backward()
    torch.save({"loss": loss.detach(), "gradient": linear.weight.grad}, f"{out}.{rank}")
    if world_size > 1:
        dist.destroy_process_group()


def test_contrastive_loss_under_ddp_sees_every_process_batch(tmp_path):
    """Contrastive (the text-search tasks' loss): two DDP processes with half a batch each get the loss
    and the gradient of one process with the whole batch (every process's items are negatives)."""
    generator = torch.Generator().manual_seed(1)
    caption_set = torch.randint(0, 5, (8, 2), generator=generator)  # repeated captions: several positives
    batch = (torch.randn(8, 6, generator=generator),
             torch.nn.functional.normalize(torch.randn(8, 4, generator=generator), dim=1), caption_set, caption_set[:, 0])
    contrastive_step(0, 1, 0, batch, tmp_path / "one")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    torch.multiprocessing.spawn(contrastive_step, args=(2, port, batch, tmp_path / "two"), nprocs=2)
    one = torch.load(tmp_path / "one.0", weights_only=True)
    for rank in range(2):
        two = torch.load(tmp_path / f"two.{rank}", weights_only=True)
        torch.testing.assert_close(two["loss"], one["loss"])
        torch.testing.assert_close(two["gradient"], one["gradient"])


def test_text_search_fit_under_ddp(tmp_path, capsys):
    """Contrastive, end to end: a locked-text image encoder fitted by 2 DDP processes writes one
    checkpoint, which evaluates (retrieval ranks one gallery, in one process) and exports."""
    scenes = [simulate_scene(landscape, 64, seed) for seed, landscape in enumerate(SIMULATED_LANDSCAPES)]
    write_caption_fixtures(tmp_path / "captions", scenes, 16, train_stride=16, change_pairs_per_scene=2, seed=0)
    data, run = tmp_path / "captions" / "gaia", tmp_path / "run"
    torchrun(["fit", "--task", "locked-text", "--data", str(data), "--max-steps", "2", "--batch-size", "4",
              "--embedding-width", "8", "--out", str(run), *TWO_PROCESSES], tmp_path)
    assert_one_checkpoint_of_two_processes(run)
    training_cli(["evaluate", "--data", str(data), "--checkpoint", str(run / "checkpoint.pt"), "--threads", "1",
                  "--json-out", str(tmp_path / "metrics.json")])
    assert 0 <= json.loads((tmp_path / "metrics.json").read_text())["mean_recall"] <= 100
    training_cli(["export", "--checkpoint", str(run / "checkpoint.pt"), "--out", str(tmp_path / "search")])
    with pytest.raises(SystemExit, match="one process"):
        training_cli(["evaluate", "--data", str(data), "--checkpoint", str(run / "checkpoint.pt"), "--devices", "2"])

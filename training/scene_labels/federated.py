"""Federated scene-label training with FedAvg on Flower, across clients with non-IID labels.

Follows shared/papers.md section 5 (federated learning of multi-label scene classification with
MLP-Mixer, ConvMixer, PoolFormer and ResNet-50 on BigEarthNet, compared on robustness to label
heterogeneity and on the parameters communicated per round); aggregation is FedAvg (McMahan et
al., AISTATS 2017) from Flower's ``FedAvg`` strategy, run by Flower's ``Server`` round loop.

- Clients are ``SceneLabelsClient`` (a Flower ``NumPyClient``): they receive the global weights,
  train ``local_steps`` steps on their own patches (AdamW with the recipe's lr and weight decay,
  BCE, flips, optional CutMix; optimiser state reset every round) and return their weights and
  patch count. The same class serves a real Flower deployment (``client.to_client()`` in a
  ``ClientApp`` or ``flwr.client.start_client``). A client's random draws (batch order, flips,
  CutMix) start each round from a seed of (seed, round, client), and FedAvg sums the clients'
  weights in client order, so a federation gives the same global model whichever runtime runs
  its clients, in whatever order they finish.
- Client runtimes: ``in-process`` (the default, and CI's) runs the clients one after another in
  this process behind ``InProcessClientProxy``. ``ray`` runs them as actors of Flower's simulation
  engine on Ray (Moritz et al., OSDI 2018; ``flwr.simulation.run_simulation`` with a ``ServerApp``
  around the same ``Server`` and strategy, and a ``ClientApp`` that builds client ``partition-id``):
  as many clients train at once as the Ray cluster has ``client_cpus`` CPUs for, which is how a
  federation of many clients runs. A local Ray with this machine's CPUs, an existing cluster at
  ``ray_address`` (``auto``, ``ray://host:10001``; its nodes need this toolbox and the data at the
  same path), or a Ray the caller started (``ray.init`` in a test or notebook) as it is. Each actor
  reads the training split once and builds its clients from ``ClientSpec`` (plain values). Ray's
  start-up and the actors' imports cost tens of seconds, which only many or large clients repay.
  Flower 1.42 marks ``run_simulation`` deprecated in favour of its ``flwr run`` app runner (and says
  so when it starts); it runs as documented.
- The strategy counts the bytes of the serialised parameters that a network deployment would send
  (server -> client and back), whatever the runtime.
- Non-IID partition ``dirichlet:ALPHA``: every training patch gets a dominant class (its label
  that is rarest in the training split); the patches of each dominant class are shared among
  the clients with probabilities drawn from Dirichlet(ALPHA) (Hsu et al., 2019); small ALPHA
  gives clients few classes each. ``iid`` shuffles and deals patches evenly.
- After each round the global model is scored on a held-out split (macro AP by default on test).
"""
from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from flwr.client import NumPyClient
from flwr.common import (
    DisconnectRes,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    GetParametersIns,
    GetParametersRes,
    GetPropertiesIns,
    GetPropertiesRes,
    Parameters,
    ReconnectIns,
    ndarrays_to_parameters,
)
from flwr.server import Server, SimpleClientManager
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import FedAvg
from torch.utils.data import DataLoader, Dataset, Subset

from training.checkpoint import save_checkpoint
from training.datasets.ben_labels import CLASS_NAMES
from training.datasets.reben_format import METADATA_FILE, SPLITS
from training.scene_labels.cutmix import CUTMIX_PROBABILITY, cutmix
from training.scene_labels.data import SceneLabelsData, scene_label_dataset
from training.scene_labels.fit import TASK
from training.scene_labels.module import SceneLabelsTask, reben_task, scene_label_metrics
from training.trainer import CHECKPOINT_NAME

CLIENT_RUNTIMES = ("in-process", "ray")


def parse_partition(spec: str) -> float | None:
    """``"iid"`` -> None, ``"dirichlet:0.5"`` -> 0.5."""
    if spec == "iid":
        return None
    name, _, alpha = spec.partition(":")
    if name != "dirichlet" or not alpha or float(alpha) <= 0:
        raise ValueError(f"non-IID split must be 'iid' or 'dirichlet:ALPHA' with ALPHA > 0, got {spec!r}")
    return float(alpha)


def split_labels(data: Path, split: str) -> np.ndarray:
    """Multi-hot labels [patches, 19] of ``split`` in dataset order, from the metadata."""
    metadata = pd.read_parquet(Path(data) / METADATA_FILE, columns=["labels", "split"])
    rows = metadata.loc[metadata["split"] == SPLITS[split], "labels"]
    labels = np.zeros((len(rows), len(CLASS_NAMES)), dtype=bool)
    for row, names in enumerate(rows):
        labels[row, [CLASS_NAMES.index(name) for name in names]] = True
    return labels


def partition(labels: np.ndarray, clients: int, alpha: float | None, seed: int = 0) -> list[np.ndarray]:
    """Patch indices of each client; every client gets at least one patch."""
    rng = np.random.default_rng(seed)
    if len(labels) < clients:
        raise ValueError(f"{len(labels)} training patches cannot feed {clients} clients")
    if alpha is None:
        return [np.sort(part) for part in np.array_split(rng.permutation(len(labels)), clients)]
    frequency = labels.sum(axis=0)
    rarity = np.where(labels, frequency, np.inf)
    dominant = np.where(labels.any(axis=1), rarity.argmin(axis=1), -1)
    for _ in range(100):
        owner = np.empty(len(labels), dtype=int)
        for value in np.unique(dominant):
            members = np.flatnonzero(dominant == value)
            owner[members] = rng.choice(clients, size=len(members), p=rng.dirichlet(np.full(clients, alpha)))
        shares = [np.flatnonzero(owner == client) for client in range(clients)]
        if all(len(share) for share in shares):
            return shares
    raise ValueError(f"no Dirichlet({alpha}) draw gave every one of {clients} clients a patch; raise ALPHA")


def model_arrays(module: torch.nn.Module) -> list[np.ndarray]:
    return [value.detach().cpu().numpy() for value in module.state_dict().values()]


def load_arrays(module: torch.nn.Module, arrays: list[np.ndarray]) -> None:
    state = module.state_dict()
    module.load_state_dict(
        {key: torch.as_tensor(array, dtype=state[key].dtype) for key, array in zip(state, arrays, strict=True)}
    )


def scene_label_scores(module: SceneLabelsTask, dataset: Dataset, batch_size: int) -> tuple[float, dict[str, float]]:
    """(BCE loss, the paper's metrics) of ``module`` on ``dataset``."""
    metrics = scene_label_metrics(len(CLASS_NAMES))
    loss, patches = 0.0, 0
    module.eval()
    with torch.no_grad():
        for batch in DataLoader(dataset, batch_size=batch_size):
            logits = module(batch["image"])
            loss += float(module.loss(logits, batch["label"])) * len(logits)
            patches += len(logits)
            metrics.update(torch.sigmoid(logits), batch["label"].long())
    return loss / patches, {name: float(value) for name, value in metrics.compute().items()}


def round_seed(seed: int, server_round: int, partition: int) -> int:
    """The seed of one client's local training in one round."""
    return int(np.random.SeedSequence((seed, server_round, partition)).generate_state(1)[0])


class SceneLabelsClient(NumPyClient):
    """One federation member (client ``partition``): a model and its own training patches."""

    def __init__(self, module: SceneLabelsTask, dataset: Dataset, local_steps: int, batch_size: int,
                 seed: int = 0, partition: int = 0) -> None:
        self.module = module
        self.dataset = dataset
        self.local_steps = local_steps
        self.batch_size = batch_size
        self.seed, self.partition = seed, partition

    def get_parameters(self, config: dict) -> list[np.ndarray]:
        return model_arrays(self.module)

    def fit(self, parameters: list[np.ndarray], config: dict) -> tuple[list[np.ndarray], int, dict]:
        load_arrays(self.module, parameters)
        torch.manual_seed(round_seed(self.seed, int(config["server_round"]), self.partition))
        hyper = self.module.hparams
        optimiser = torch.optim.AdamW(self.module.parameters(), lr=hyper.lr, weight_decay=hyper.weight_decay)
        loader = DataLoader(self.dataset, batch_size=self.batch_size, shuffle=True)
        self.module.train()
        steps, loss_sum = 0, 0.0
        while steps < self.local_steps:
            for batch in loader:
                if hyper.augment != "none" and torch.rand(()) < CUTMIX_PROBABILITY:
                    batch = cutmix(batch, hyper.augment)
                loss = self.module.loss(self.module(batch["image"]), batch["label"])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                steps, loss_sum = steps + 1, loss_sum + loss.item()
                if steps == self.local_steps:
                    break
        return model_arrays(self.module), len(self.dataset), {"train_loss": loss_sum / steps, "partition": self.partition}

    def evaluate(self, parameters: list[np.ndarray], config: dict) -> tuple[float, int, dict]:
        load_arrays(self.module, parameters)
        loss, metrics = scene_label_scores(self.module, self.dataset, self.batch_size)
        return loss, len(self.dataset), {"ap_macro": metrics["ap_macro"]}


def parameters_bytes(parameters: Parameters) -> int:
    return sum(len(tensor) for tensor in parameters.tensors)


@dataclass(frozen=True)
class ClientSpec:
    """What the clients are built from, in plain values (Ray ships it to its actors): the data, the
    model and recipe, and each client's patch indices into the training split."""

    data: str
    modalities: str
    model: str
    width: int | None
    depth: int | None
    augment: str
    lr: float
    local_steps: int
    batch_size: int
    seed: int
    shares: tuple[tuple[int, ...], ...]

    def client(self, partition: int) -> SceneLabelsClient:
        module = reben_task(self.modalities, model=self.model, width=self.width, depth=self.depth,
                            augment=self.augment, lr=self.lr)
        patches = Subset(training_split(self.data, self.modalities), list(self.shares[partition]))
        return SceneLabelsClient(module, patches, self.local_steps, self.batch_size, self.seed, partition)


@functools.cache
def training_split(data: str, modalities: str) -> Dataset:
    """The training split with flips, read once per process (a Ray actor serves many clients)."""
    return scene_label_dataset(Path(data), "train", modalities, flips=True)


class CountingFedAvg(FedAvg):
    """FedAvg that tells each client the round, sums the clients' weights in client order (not in the
    order they finished) and counts the bytes of the parameters sent to the clients and back."""

    def __init__(self, **options) -> None:
        super().__init__(on_fit_config_fn=lambda server_round: {"server_round": server_round}, **options)
        self.bytes_to_clients = 0
        self.bytes_from_clients = 0

    def configure_fit(self, server_round: int, parameters: Parameters,
                      client_manager: ClientManager) -> list[tuple[ClientProxy, FitIns]]:
        instructions = super().configure_fit(server_round, parameters, client_manager)
        self.bytes_to_clients += sum(parameters_bytes(ins.parameters) for _, ins in instructions)
        return instructions

    def aggregate_fit(self, server_round: int, results: list[tuple[ClientProxy, FitRes]], failures: list):
        results = sorted(results, key=lambda result: result[1].metrics["partition"])
        self.bytes_from_clients += sum(parameters_bytes(result.parameters) for _, result in results)
        return super().aggregate_fit(server_round, results, failures)


class InProcessClientProxy(ClientProxy):
    """Flower's client proxy for a client in this process."""

    def __init__(self, cid: str, client: NumPyClient) -> None:
        super().__init__(cid)
        self.client = client.to_client()

    def get_properties(self, ins: GetPropertiesIns, timeout, group_id) -> GetPropertiesRes:
        return self.client.get_properties(ins)

    def get_parameters(self, ins: GetParametersIns, timeout, group_id) -> GetParametersRes:
        return self.client.get_parameters(ins)

    def fit(self, ins: FitIns, timeout, group_id) -> FitRes:
        return self.client.fit(ins)

    def evaluate(self, ins: EvaluateIns, timeout, group_id) -> EvaluateRes:
        return self.client.evaluate(ins)

    def reconnect(self, ins: ReconnectIns, timeout, group_id) -> DisconnectRes:
        return DisconnectRes(reason="in-process client")


@dataclass(frozen=True)
class RoundReport:
    round: int
    ap_macro: float
    ap_micro: float
    loss: float
    client_train_loss: float  # patch-weighted mean over clients of their local training loss
    bytes_to_clients: int
    bytes_from_clients: int
    seconds: float


def run_federated(
    data: Path,
    clients: int,
    rounds: int,
    non_iid: str = "dirichlet:1.0",
    modalities: str = "s1,s2",
    model: str = "resnet50",
    width: int | None = None,
    depth: int | None = None,
    augment: str = "none",
    local_steps: int = 10,
    batch_size: int = 16,
    lr: float = 1e-3,
    evaluate_split: str = "test",
    seed: int = 0,
    report: Callable[[RoundReport], None] | None = None,
    out: Path | None = None,
    command: str = "",
    client_runtime: str = "in-process",
    client_cpus: float = 1.0,
    ray_address: str | None = None,
) -> dict:
    """FedAvg over ``clients`` for ``rounds`` rounds; returns partition sizes and per-round reports
    (round 0 = the initial global model). ``client_runtime``: ``in-process`` or ``ray`` (actors of
    ``client_cpus`` CPUs each, on a local Ray or the cluster at ``ray_address``). With ``out``, the
    final global model is written as ``<out>/checkpoint.pt``, a scene-label checkpoint like ``fit``'s
    (``export`` takes it); its ``steps`` are each client's optimiser steps over all rounds."""
    if client_runtime not in CLIENT_RUNTIMES:
        raise ValueError(f"client runtime must be one of {CLIENT_RUNTIMES}, got {client_runtime!r}")
    torch.manual_seed(seed)
    splits = SceneLabelsData(data, modalities, batch_size)
    evaluation_set = scene_label_dataset(data, evaluate_split, modalities)
    labels = split_labels(data, "train")
    shares = partition(labels, clients, parse_partition(non_iid), seed)
    spec = ClientSpec(str(data), modalities, model, width, depth, augment, lr, local_steps, batch_size, seed,
                      tuple(tuple(int(index) for index in share) for share in shares))
    global_module = reben_task(modalities, model=model, width=width, depth=depth, augment=augment, lr=lr)
    reports: list[RoundReport] = []
    latest_train_loss = {"value": float("nan")}
    started = time.monotonic()

    def aggregate_train_loss(results: list[tuple[int, dict]]) -> dict:
        patches = sum(count for count, _ in results)
        latest_train_loss["value"] = sum(count * metrics["train_loss"] for count, metrics in results) / patches
        return {"train_loss": latest_train_loss["value"]}

    def evaluate_global(server_round: int, arrays: list[np.ndarray], config: dict) -> tuple[float, dict]:
        load_arrays(global_module, arrays)
        loss, metrics = scene_label_scores(global_module, evaluation_set, batch_size)
        sent = strategy.bytes_to_clients - sum(r.bytes_to_clients for r in reports)
        received = strategy.bytes_from_clients - sum(r.bytes_from_clients for r in reports)
        round_report = RoundReport(
            server_round, metrics["ap_macro"], metrics["ap_micro"], loss, latest_train_loss["value"], sent, received,
            round(time.monotonic() - started, 2),
        )
        reports.append(round_report)
        if report:
            report(round_report)
        return loss, metrics

    strategy = CountingFedAvg(
        fraction_fit=1.0,
        fraction_evaluate=0.0,
        min_fit_clients=clients,
        min_available_clients=clients,
        evaluate_fn=evaluate_global,
        fit_metrics_aggregation_fn=aggregate_train_loss,
        initial_parameters=ndarrays_to_parameters(model_arrays(global_module)),
    )
    server = Server(client_manager=SimpleClientManager(), strategy=strategy)
    if client_runtime == "ray":
        run_on_ray(server, spec, rounds, client_cpus, ray_address)
    else:
        for index in range(clients):
            server.client_manager().register(InProcessClientProxy(str(index), spec.client(index)))
        server.set_max_workers(1)  # clients train one after another: CPU-friendly
        server.fit(num_rounds=rounds, timeout=None)
    result = {
        "clients": clients,
        "non_iid": non_iid,
        "client_runtime": client_runtime,
        "client_patches": [len(share) for share in shares],
        "client_classes": [int(labels[share].any(axis=0).sum()) for share in shares],
        "parameters": sum(parameter.numel() for parameter in global_module.parameters()),
        "evaluate_split": evaluate_split,
        "rounds": [report.__dict__ for report in reports],
    }
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        provenance = {
            "command": command, "seed": seed, "steps": rounds * local_steps, "epochs": 0,
            "seconds": round(time.monotonic() - started, 1), "best_validation_ap_macro": None,
            "parameters": result["parameters"],
            "federated": {key: result[key] for key in ("clients", "non_iid", "client_patches", "evaluate_split")}
            | {"rounds": rounds, "local_steps": local_steps, "final_ap_macro": reports[-1].ap_macro},
        }
        save_checkpoint(out / CHECKPOINT_NAME, TASK, global_module, splits.description(seed), provenance)
        result["checkpoint"] = str(out / CHECKPOINT_NAME)
    return result


def run_on_ray(server: Server, spec: ClientSpec, rounds: int, client_cpus: float, address: str | None) -> None:
    """``rounds`` of ``server`` with its clients as actors of Flower's simulation engine on Ray: a
    ``ServerApp`` around ``server`` (Flower registers a proxy of each simulated node with its client
    manager) and a ``ClientApp`` that builds client ``partition-id`` of ``spec`` in the actor."""
    from flwr.clientapp import ClientApp
    from flwr.server import ServerAppComponents, ServerConfig
    from flwr.serverapp import ServerApp
    from flwr.simulation import run_simulation

    from engine.ray_batch import ray_session

    def server_components(context) -> ServerAppComponents:
        return ServerAppComponents(server=server, config=ServerConfig(num_rounds=rounds))

    def build_client(context):
        return spec.client(int(context.node_config["partition-id"])).to_client()

    with ray_session(address, None):
        run_simulation(ServerApp(server_fn=server_components), ClientApp(client_fn=build_client),
                       num_supernodes=len(spec.shares),
                       backend_config={"client_resources": {"num_cpus": client_cpus, "num_gpus": 0.0}})

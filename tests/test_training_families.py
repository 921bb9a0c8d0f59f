"""The shape of training/: every family is a package with the same files and command-line functions,
`python -m training` lists them, datasets never import simulators or families, and the scale-out
strategies refuse what Lightning cannot run here."""
from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import lightning
import pytest
import torch

from training import families
from training.__main__ import main as training_cli
from training.simulation.shallow_water import write_magicbathynet_layout
from training.trainer import FamilyData

ROOT = Path(__file__).resolve().parents[1]
ROLE_FILES = ("data.py", "model.py", "module.py", "cli.py", "fit.py", "evaluate.py", "export.py", "importers.py")
CLI_FUNCTIONS = ("add_data_arguments", "add_fit_arguments", "add_import_arguments", "add_commands", "run_fit", "run_evaluate", "run_export")


def test_python_m_training_lists_every_family_with_its_tasks():
    listed = subprocess.run([sys.executable, "-m", "training"], cwd=ROOT, capture_output=True, text=True, check=True)
    for family in families.FAMILIES:
        line = next(line for line in listed.stdout.splitlines() if line.strip().startswith(family.name + " "))
        assert line.split("tasks:")[1].strip() == ", ".join(family.tasks)
        assert family.reproduce in listed.stdout and (ROOT / family.reproduce).is_file()


@pytest.mark.parametrize("family", families.FAMILIES, ids=lambda family: family.name)
def test_every_family_has_the_same_files_and_functions(family):
    package = ROOT / "training" / family.package
    assert [name for name in ROLE_FILES if not (package / name).is_file()] == []
    cli = family.cli()
    for name in CLI_FUNCTIONS + (("record_statistics",) if family.records_statistics else ()):
        assert callable(getattr(cli, name, None)), f"{family.package}/cli.py has no {name}"
    assert sorted(inspect.signature(cli.run_export).parameters) == ["args", "metrics"]
    assert set(family.tasks) == set(__import__(f"training.{family.package}.module", fromlist=["MODULES"]).MODULES)
    for task in family.tasks:
        assert issubclass(family.module_class(task), lightning.LightningModule)
    data = __import__(f"training.{family.package}.data", fromlist=["*"])
    modules = [value for value in vars(data).values()
               if isinstance(value, type) and issubclass(value, FamilyData) and value is not FamilyData]
    assert modules, f"training/{family.package}/data.py defines no FamilyData (LightningDataModule)"


def test_a_task_names_one_family_and_an_unknown_one_is_refused():
    assert [families.family_of(task).name for task in ("bathymetry", "hycot", "crop")] == ["marine", "hycot", "crop-maps"]
    assert len(set(families.TASK_NAMES)) == len(families.TASK_NAMES)
    with pytest.raises(ValueError, match="no family trains task 'depth'; tasks: bathymetry, seabed"):
        families.family_of("depth")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return names | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}


def test_datasets_import_neither_simulators_nor_families_and_simulators_no_families():
    family_packages = tuple(f"training.{family.package}" for family in families.FAMILIES)
    for path in sorted((ROOT / "training" / "datasets").glob("*.py")):
        wrong = {name for name in _imports(path) if name.startswith(("training.simulation",) + family_packages)}
        assert wrong == set(), f"{path.name} imports {wrong}"
    for path in sorted((ROOT / "training" / "simulation").glob("*.py")):
        wrong = {name for name in _imports(path) if name.startswith(family_packages)}
        assert wrong == set(), f"{path.name} imports {wrong}"


def test_fsdp_without_a_gpu_is_refused_with_the_fix(tmp_path, capsys):
    write_magicbathynet_layout(tmp_path / "data", "agia_napa", 6, 32, seed=1)
    with pytest.raises(SystemExit) as refused:
        training_cli(["fit", "--task", "bathymetry", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"),
                      "--max-steps", "1", "--accelerator", "cpu", "--distributed-strategy", "fsdp"])
    assert "fsdp shards the model over GPUs" in str(refused.value)
    assert "on CPUs use --distributed-strategy ddp" in str(refused.value)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


@pytest.mark.parametrize("command", ["evaluate", "export"])
def test_a_file_that_is_not_our_checkpoint_is_refused_in_one_line(command, tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    arguments = {"evaluate": ["--data", str(tmp_path)], "export": ["--out", str(tmp_path / "model.onnx")]}[command]
    with pytest.raises(SystemExit) as refused:
        training_cli([command, "--checkpoint", str(tmp_path / "other.pt"), *arguments])
    assert str(refused.value) == (f"{command} refused: {tmp_path / 'other.pt'} is not a checkpoint written by "
                                  "`python -m training fit`")
    assert not (tmp_path / "model.onnx").exists()
